#!/usr/bin/env bash
# deploy/kubernetes and the Dockerfile:
#   a. every YAML parses, and the DaemonSet has what it must (k8s_manifests.py check:
#      privileged, /dev/fuse, Bidirectional host dir with the mount below its root, memory
#      request = limit = max_memory + overhead, readiness by mowsctl status, preStop unmount,
#      ulimit -l, peers = the headless Service, secret_file from the Secret with mode 0400,
#      the vLLM Deployment on the same host dir with HostToContainer);
#   b. every config key in the ConfigMap and every flag in the DaemonSet's args exists:
#      mows-fuse --check-config with the DaemonSet's exact args and the ConfigMap's text;
#   c. the Dockerfile is Debian 12, builds with `make deb` and names every -dev package
#      tools/deps.sh installs for building;
#   d. the DaemonSet's exact command (the /bin/sh -c wrapper and its args) starts a serving
#      mount on each node of a 2-node namespace cluster (tools/mows-cluster --no-mows: sshfs
#      backing only), the readiness probe passes, the nodes peer, the files read back right,
#      the daemon's memory above max_memory fits the limit's overhead, and the preStop
#      command unmounts with the daemon exiting 0.
# Substituted in d (and the paths in b), and nothing else:
#   /var/lib/mows        -> $SCRATCH/nodeN/var-lib-mows (the host directory, one per node)
#   /backing             -> /mnt/mows-backing (the node's sshfs mount of the storage host)
#   /etc/mows/mows.conf  -> $SCRATCH/k8s/mows.conf, the ConfigMap's text with secret_file ->
#                           $SCRATCH/k8s/secret/secret, max_memory -> 256M and (d only) peers
#                           -> the node addresses, which the headless Service name resolves to
#   $(NODE_NAME)         -> nodeN (Kubernetes expands it from spec.nodeName)
#   PATH                 -> $MOWS_ROOT first (the image has the programs in /usr/bin)
# timeout: 240
# shellcheck disable=SC2016 # $(NODE_NAME) is literal
. "$(dirname "$0")/lib.sh"
CLUSTER=k8s$$
. "$MOWS_IT/lib_cluster.sh"
need_cmd python3
python3 -c 'import yaml' 2>/dev/null || fail "needs python3-yaml: run 'make deps'"

K=$MOWS_ROOT/deploy/kubernetes
kpy() { python3 "$MOWS_IT/k8s_manifests.py" "$K" "$@"; }

# ---- a. parse and structure ----
out=$(kpy check 2>&1) || fail "the manifests: $out"
n=$(ls "$K"/*.yaml | wc -l)
note "a: $n YAML files parse; DaemonSet, Service, Secret, ConfigMap, Deployment checked"
# The checker can fail: a copy with the propagation, the probe and the memory limit broken.
mkdir "$SCRATCH/broken"
cp "$K"/*.yaml "$SCRATCH/broken/"
sed -i -e 's/mountPropagation: Bidirectional/mountPropagation: HostToContainer/' \
	-e 's/memory: 25088Mi/memory: 24Gi/' -e 's/"status"\]/"peers"]/' "$SCRATCH/broken/daemonset.yaml"
out=$(python3 "$MOWS_IT/k8s_manifests.py" "$SCRATCH/broken" check 2>&1) &&
	soft_fail "a: a broken DaemonSet passed the check"
for want in "not under a Bidirectional" "expected + 256Mi" "readiness probe"; do
	grep -qF "$want" <<<"$out" || soft_fail "a: the broken copy's report lacks '$want': $out"
done
MP=$(kpy get mountpoint) HOSTDIR=$(kpy get mnt_path) BACK=$(kpy get backing_path)
CONFP=$(kpy get config_path) OVERHEAD=$(kpy get overhead_bytes)

# ---- b. keys and flags exist: --check-config with the exact args ----
mkdir -p "$SCRATCH/k8s/secret" "$SCRATCH/backing"
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$SCRATCH/k8s/secret/secret"
chmod 600 "$SCRATCH/k8s/secret/secret"
kpy conf >"$SCRATCH/k8s/configmap.conf"
"$MOWS_FUSE" --list-keys | cut -f1 >"$SCRATCH/keys"
for key in $(sed -n 's/^\([A-Za-z_][A-Za-z0-9_-]*\) *=.*/\1/p' "$SCRATCH/k8s/configmap.conf"); do
	grep -qxF "${key//-/_}" "$SCRATCH/keys" || soft_fail "b: ConfigMap key '$key' is not a mows-fuse key"
done
# make_conf PEERS: the ConfigMap's text with the substitutions above, to $SCRATCH/k8s/mows.conf
make_conf() {
	sed -e "s|^secret_file = .*|secret_file = $SCRATCH/k8s/secret/secret|" \
		-e "s|^max_memory = .*|max_memory = 256M|" \
		${1:+-e "s|^peers = .*|peers = $1|"} "$SCRATCH/k8s/configmap.conf" >"$SCRATCH/k8s/mows.conf"
}
# subst ROOT NODE: each element of stdin (NUL-separated) with the path substitutions
subst() {
	local root=$1 node=$2 x
	while IFS= read -r -d '' x; do
		x=${x//"$HOSTDIR"/$root}
		x=${x//"$CONFP"/$SCRATCH/k8s/mows.conf}
		[ "$x" = "$BACK" ] && x=$3
		x=${x//'$(NODE_NAME)'/$node}
		printf '%s\0' "$x"
	done
}
make_conf ""
mapfile -d '' argv < <(kpy argv | subst "$SCRATCH/check" node1 "$SCRATCH/backing")
mkdir -p "$SCRATCH/check/$(basename "$MP")"
# argv: /bin/sh -c SCRIPT mows-fuse ARGS...: check ARGS (everything after $0).
[ "${argv[0]}" = /bin/sh ] && [ "${argv[1]}" = -c ] && [ "${argv[3]}" = mows-fuse ] ||
	fail "b: the DaemonSet command is not '/bin/sh -c SCRIPT mows-fuse ARGS...': ${argv[*]:0:4}"
args=("${argv[@]:4}")
"$MOWS_FUSE" --check-config "${args[@]}" >"$SCRATCH/check.out" 2>"$SCRATCH/check.err"
rc=$?
[ $rc -eq 0 ] || fail "b: mows-fuse --check-config ${args[*]} exited $rc: $(cat "$SCRATCH/check.err")"
grep -qxF "peers = $(sed -n 's/^peers = //p' "$SCRATCH/k8s/configmap.conf")" "$SCRATCH/check.out" ||
	soft_fail "b: --check-config does not show the ConfigMap's peers: $(grep peers "$SCRATCH/check.out")"
grep -qxF "node_id = node1" "$SCRATCH/check.out" || soft_fail "b: node_id is not the node name"
note "b: --check-config ${args[*]}: OK"

# ---- c. Dockerfile ----
D=$MOWS_ROOT/Dockerfile
grep -qE '^FROM debian:12(-slim)?( |$)' "$D" || soft_fail "c: the Dockerfile does not build FROM debian:12"
grep -q 'make deb' "$D" || soft_fail "c: the Dockerfile does not build the package with make deb"
for p in $(grep -o 'lib[a-z0-9.+-]*-dev' "$MOWS_ROOT/tools/deps.sh" | sort -u); do
	grep -qw -- "$p" "$D" || soft_fail "c: the Dockerfile's build stage lacks $p (tools/deps.sh has it)"
done
[ -f "$MOWS_ROOT/.dockerignore" ] || soft_fail "c: no .dockerignore"

# ---- d. the exact command line in a namespace cluster ----
cluster_need
M=$SCRATCH/model
cluster_model "$M" 2 16
cluster_sums "$M" "$SCRATCH/want.sums"
cluster_up --nodes 2 --model "$M" --no-mows
make_conf "198.18.1.1:7070,198.18.1.2:7070"
declare -a daemons=()
for i in 1 2; do
	root=$SCRATCH/node$i/var-lib-mows
	mkdir -p "$root"
	mapfile -d '' argv < <(kpy argv | subst "$root" "node$i" /mnt/mows-backing)
	printf '%q ' "${argv[@]}" >"$SCRATCH/node$i.cmd"
	mows_cluster exec "node$i" --timeout 200 -- env PATH="$MOWS_ROOT:$PATH" "${argv[@]}" \
		>"$SCRATCH/node$i.log" 2>&1 &
	daemons[i]=$!
	mows_track_pid "${daemons[i]}"
	_MOWS_LOGS+=("$SCRATCH/node$i.log")
done
note "d: node1 runs: $(cat "$SCRATCH/node1.cmd")"
# Readiness: the probe's exact command, every second, as the kubelet would (20 s deadline).
for i in 1 2; do
	mapfile -d '' probe < <(kpy probe | subst "$SCRATCH/node$i/var-lib-mows" "node$i" /mnt/mows-backing)
	end=$((SECONDS + 20))
	until cluster_exec "node$i" -- env PATH="$MOWS_ROOT:$PATH" "${probe[@]}" >/dev/null 2>&1; do
		pid_alive "${daemons[i]}" || fail "d: node$i: the DaemonSet command exited: $(tail -n 5 "$SCRATCH/node$i.log")"
		[ $SECONDS -ge $end ] && fail "d: node$i: readiness probe '${probe[*]}' not passing after 20 s: $(tail -n 5 "$SCRATCH/node$i.log")"
		sleep 1
	done
done
note "d: both nodes ready (readiness probe passes)"
# The nodes find each other through the peers list and serve the model's bytes.
for i in 1 2; do
	mnt=$SCRATCH/node$i/var-lib-mows/$(basename "$MP")
	end=$((SECONDS + 20))
	until cluster_exec "node$i" -- "$MOWS_CTL" -m "$mnt" --json peers 2>/dev/null |
		python3 -c 'import json,sys; j=json.load(sys.stdin); sys.exit(0 if any(p.get("state")=="up" for p in j.get("peers", j if isinstance(j, list) else [])) else 1)'; do
		[ $SECONDS -ge $end ] && fail "d: node$i sees no peer up after 20 s: $(cluster_exec "node$i" -- "$MOWS_CTL" -m "$mnt" peers 2>&1 | head -n 5)"
		sleep 0.5
	done
	cluster_exec "node$i" -- sh -c "cd '$mnt' && find . -type f -print0 | sort -z | xargs -0 sha256sum" \
		>"$SCRATCH/node$i.sums" || soft_fail "d: node$i: reading the mount failed"
	cmp -s "$SCRATCH/want.sums" "$SCRATCH/node$i.sums" ||
		soft_fail "d: node$i read different bytes: $(diff "$SCRATCH/want.sums" "$SCRATCH/node$i.sums" | head -n 4)"
	# Memory beyond max_memory (256M here) must fit the overhead the limit leaves.
	for p in $(pgrep -x mows-fuse); do
		grep -qF "$mnt" "/proc/$p/cmdline" 2>/dev/null || continue
		rss=$(awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$p/status")
		hwm=$(awk '/^VmHWM:/ { print $2 * 1024 }' "/proc/$p/status")
		extra=$((hwm - 256 * MiB))
		note "d: node$i: mows-fuse RSS $((rss / MiB)) MiB, peak $((hwm / MiB)) MiB with max_memory 256M: $((extra / MiB)) MiB over; the limit allows $((OVERHEAD / MiB)) MiB over"
		[ "$extra" -lt "$OVERHEAD" ] || soft_fail "d: node$i: peak RSS is $((extra / MiB)) MiB over max_memory, more than the manifest's $((OVERHEAD / MiB)) MiB"
	done
done
note "d: both nodes serve the model's bytes and peer with each other"
# preStop, exactly: the daemon unmounts and exits 0.
for i in 1 2; do
	mapfile -d '' pre < <(kpy prestop | subst "$SCRATCH/node$i/var-lib-mows" "node$i" /mnt/mows-backing)
	cluster_exec "node$i" -- env PATH="$MOWS_ROOT:$PATH" "${pre[@]}" ||
		soft_fail "d: node$i: preStop '${pre[*]}' failed"
	wait_pid_gone "${daemons[i]}" 15 || fail "d: node$i: the daemon still runs 15 s after preStop"
	wait "${daemons[i]}"
	rc=$?
	[ $rc -eq 0 ] || soft_fail "d: node$i: the DaemonSet command exited $rc after preStop: $(tail -n 3 "$SCRATCH/node$i.log")"
	cluster_exec "node$i" -- grep -q " $SCRATCH/node$i/var-lib-mows/" /proc/self/mounts &&
		soft_fail "d: node$i: still mounted after preStop"
done
soft_done
note "ok"
