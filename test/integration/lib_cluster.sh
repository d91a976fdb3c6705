# shellcheck shell=bash
# Sourced by integration tests that need several hosts: a cluster made by tools/mows-cluster
# (a storage host serving a model over sshfs at 400 Mbit/s, nodes running mows-fuse on
# /mnt/model). Source it after lib.sh (it also works alone). The cluster is removed on any
# exit, before lib.sh's own cleanup runs; when the test fails, the last lines of every node's
# log are shown first (and copied to $MOWS_ARTIFACTS when set).
#
#   cluster_need                     fail unless root and the tools the cluster needs are here
#   cluster_model DIR [SHARDS MIB]   a generated Hugging Face-shaped model (genmodel.py)
#   cluster_up ARGS...               mows-cluster up ARGS... (fails the test with its message)
#   cluster_run FILE -- CMD...       CMD on every node at once; timings as JSON in FILE
#   cluster_exec NODE -- CMD...      CMD on one node, output passed through
#   cluster_storage_bytes VAR        bytes the storage host has sent so far
#   cluster_json VAR FILE KEY        a number from a cluster_run file: p50_ms, max_ms, failed,
#                                    node2.ms, node2.exit
#   assert_between LO VALUE HI WHAT  integer LO <= VALUE <= HI
#
# Peers (nodes are given as N or nodeN; every wait has a deadline and fails the test with
# what each node saw when it passes):
#   cluster_ctl NODE ARGS...         mowsctl against NODE's daemon
#   cluster_get VAR NODE status|peers EXPR
#                                    a value from `mowsctl status|peers --json` on NODE: EXPR is
#                                    Python over j (the JSON) and peer(ID) (that peer's entry)
#   cluster_sum VAR EXPR NODE...     the sum of a status EXPR over nodes
#   cluster_wait_up SECS NODE PEER... until NODE sees every PEER up
#   cluster_wait_mesh SECS NODE...   until every NODE sees every other one up
#   cluster_wait_ownership SECS NODE...  until every NODE ranks with one ownership map for them all
#   cluster_evict SECS NODE...       mowsctl evict /mnt/model on each, then waits until neither
#                                    mows nor the kernel's page cache holds any of it
#   cluster_sums DIR FILE            sha256 of every file under DIR, as the readers print them
#   cluster_read FILE LIST           every node of LIST (1-3,5) reads every file under
#                                    /mnt/model at once (sha256); timings as JSON in FILE
#   cluster_check_sums WANT LIST     fails unless every node of LIST printed WANT
#   cluster_list LIST                1-3,5 -> one index per line
#   cluster_model_bytes VAR DIR      bytes in the regular files under DIR
#   CLUSTER_PEER_ARGS                short heartbeat, peer and request timeouts for --mows-args
#
# Globals: MOWS_CLUSTER (the tool), CLUSTER (this test's cluster name, "it" + pid unless set),
# CLUSTER_STATE (its state dir: logs nodeN.log, nodeN.sshfs.log, sshd.log; run-nodeN.out).

MOWS_CLUSTER=${MOWS_CLUSTER:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)/tools/mows-cluster}
CLUSTER=${CLUSTER:-it$$}
CLUSTER_STATE=/run/mows-cluster/$CLUSTER
_CLUSTER_MADE=0
_CLUSTER_ROOT=$(cd "$(dirname "$MOWS_CLUSTER")/.." && pwd)
_CLUSTER_PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || _CLUSTER_PY=python3
# shellcheck disable=SC2034 # for the tests
CLUSTER_PEER_ARGS="--heartbeat=200ms --peer-timeout=2s --request-timeout=3s"
# What every reader runs: every byte of every file, in a fixed order, with its sha256.
CLUSTER_READER="cd /mnt/model && find . -type f -print0 | sort -z | xargs -0 sha256sum"

_cluster_fail() {
	if declare -F fail >/dev/null; then fail "$@"; fi
	printf 'FAIL: %s: %s\n' "$(basename "$0" .sh)" "$*" >&2
	exit 1
}

_cluster_skip() {
	if declare -F skip >/dev/null; then skip "$@"; fi
	printf 'SKIP: %s: %s\n' "$(basename "$0" .sh)" "$*"
	exit 77
}

mows_cluster() { "$MOWS_CLUSTER" -n "$CLUSTER" "$@"; }

cluster_need() {
	local c
	[ "$(id -u)" -eq 0 ] || _cluster_fail "a cluster needs root"
	[ -x "$MOWS_CLUSTER" ] || _cluster_fail "$MOWS_CLUSTER is missing"
	for c in ip tc nsenter unshare sshfs ssh-keygen ss flock setsid; do
		command -v "$c" >/dev/null 2>&1 || _cluster_fail "a cluster needs '$c', not installed (make deps installs it)"
	done
	[ -x /usr/sbin/sshd ] || _cluster_fail "a cluster needs sshd (openssh-server; make deps installs it)"
	[ -c /dev/fuse ] || _cluster_fail "needs /dev/fuse"
}

cluster_model() { # DIR [SHARDS] [MIB]
	local py
	py=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || py=python3
	mkdir -p "$1"
	"$py" "$(dirname "$MOWS_CLUSTER")/genmodel.py" "$1" --shards "${2:-2}" \
		--shard-mib "${3:-64}" >/dev/null || _cluster_fail "genmodel.py $1 failed"
}

cluster_up() {
	local out
	_CLUSTER_MADE=1
	out=$(mows_cluster up "$@" 2>&1) || _cluster_fail "mows-cluster up $*: $out"
}

cluster_run() { # FILE -- CMD...: status 1 if any node failed (FILE is written either way)
	local file=$1
	shift
	[ "${1:-}" = -- ] && shift
	mows_cluster run --json -- "$@" >"$file"
}

cluster_exec() { # NODE -- CMD...
	local node=$1
	shift
	[ "${1:-}" = -- ] && shift
	mows_cluster exec "$node" -- "$@"
}

cluster_storage_bytes() { # VAR
	local _b
	_b=$(mows_cluster storage-bytes 2>&1) || _cluster_fail "mows-cluster storage-bytes: $_b"
	printf -v "$1" '%s' "$_b"
}

cluster_json() { # VAR FILE KEY
	local _v py
	py=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || py=python3
	_v=$("$py" - "$2" "$3" <<-'PY' 2>&1
		import json, sys
		d = json.load(open(sys.argv[1]))
		key = sys.argv[2]
		if "." in key:
		    node, field = key.split(".", 1)
		    rows = [r for r in d["nodes"] if r["node"] == node]
		    if not rows:
		        sys.exit(f"no {node} in {sys.argv[1]}")
		    print(rows[0][field])
		else:
		    print(d[key])
	PY
	) || _cluster_fail "cluster_json $2 $3: $_v"
	printf -v "$1" '%s' "$_v"
}

# ---- peers ------------------------------------------------------------------------------

_cluster_idx() { echo "${1#node}"; }

cluster_ctl() { # NODE ARGS...
	local i
	i=$(_cluster_idx "$1")
	shift
	"$_CLUSTER_ROOT/mowsctl" -s "$CLUSTER_STATE/node$i.sock" "$@"
}

# Evaluates EXPR over JSON on stdin; peer(ID) is the entry of that peer in a peers report.
_CLUSTER_JSON_PY='
import json, sys
j = json.load(sys.stdin)
def peer(node_id):
    for p in j.get("peers", []):
        if p["node_id"] == node_id:
            return p
    raise SystemExit("no peer %s in %s" % (node_id, json.dumps(j)))
v = eval(sys.argv[1])
print(json.dumps(v) if isinstance(v, (bool, dict, list)) or v is None else v)
'

# (Locals have prefixed names: printf -v would set a caller's variable of the same name.)
cluster_get() { # VAR NODE status|peers EXPR
	local _cg_out _cg_v
	_cg_out=$(cluster_ctl "$2" "$3" --json 2>&1) ||
		_cluster_fail "mowsctl $3 on $2 failed: $_cg_out"
	_cg_v=$("$_CLUSTER_PY" -c "$_CLUSTER_JSON_PY" "$4" <<<"$_cg_out" 2>&1) ||
		_cluster_fail "$2: $4 in mowsctl $3 --json: $_cg_v"
	printf -v "$1" '%s' "$_cg_v"
}

cluster_sum() { # VAR EXPR NODE...
	local _cs_var=$1 _cs_expr=$2 _cs_n _cs_v _cs_t=0
	shift 2
	for _cs_n; do
		cluster_get _cs_v "$_cs_n" status "$_cs_expr"
		_cs_t=$((_cs_t + _cs_v))
	done
	printf -v "$_cs_var" '%s' "$_cs_t"
}

# Whether NODE sees every PEER (N or nodeN) up.
cluster_peers_up() { # NODE PEER...
	local node=$1 out p
	local -a ids=()
	shift
	for p; do ids+=("node${p#node}"); done
	out=$(cluster_ctl "$node" peers --json 2>/dev/null) || return 1
	"$_CLUSTER_PY" -c '
import json, sys
j = json.load(sys.stdin)
state = {p["node_id"]: p["state"] for p in j["peers"]}
sys.exit(any(state.get(n) != "up" for n in sys.argv[1:]))' \
		"${ids[@]}" <<<"$out"
}

_cluster_peers_text() { # NODE...: every node's peers report, for a failure message
	local n
	for n; do
		printf '\n  node%s: %s' "$(_cluster_idx "$n")" \
			"$(cluster_ctl "$n" peers --json 2>&1 | head -c 1500)"
	done
}

cluster_wait_up() { # SECS NODE PEER...
	local secs=$1 node=$2 end=$((SECONDS + $1))
	shift 2
	until cluster_peers_up "$node" "$@"; do
		[ $SECONDS -ge $end ] &&
			_cluster_fail "node$(_cluster_idx "$node") does not see $* up after ${secs}s:$(_cluster_peers_text "$node")"
		sleep 0.1
	done
}

# cluster_wait_ownership SECS NODE...: until every NODE ranks chunks with one ownership map
# built for all of them (the same nonzero digest and member count in mowsctl peers); sets
# CLUSTER_OWNERSHIP to "DIGEST/MEMBERS".
cluster_wait_ownership() {
	local secs=$1 end=$(($1 + SECONDS)) n _wo_d digests
	shift
	while :; do
		digests=$(for n; do
			cluster_get _wo_d "$n" peers 'j["ownership_digest"] + "/" + str(j["ownership_members"])'
			echo "$_wo_d"
		done | sort -u)
		if [ "$(wc -l <<<"$digests")" -eq 1 ] && [[ $digests == */$# ]] &&
			[[ $digests != 0000000000000000/* ]]; then
			CLUSTER_OWNERSHIP=$digests
			return 0
		fi
		[ $SECONDS -ge $end ] &&
			_cluster_fail "nodes $* do not agree on one ownership map for $# members within ${secs}s: $(echo $digests)"
		sleep 0.2
	done
}

cluster_wait_mesh() { # SECS NODE...
	local secs=$1 end=$((SECONDS + $1)) n m ok
	shift
	local -a others
	while :; do
		ok=1
		for n; do
			others=()
			for m; do [ "$m" != "$n" ] && others+=("$m"); done
			cluster_peers_up "$n" "${others[@]}" || { ok=0; break; }
		done
		[ $ok -eq 1 ] && return 0
		[ $SECONDS -ge $end ] &&
			_cluster_fail "nodes $* do not all see each other up after ${secs}s:$(_cluster_peers_text "$@")"
		sleep 0.1
	done
}

# Pages of the files under /mnt/model in NODE's page cache.
_cluster_cached_pages() { # NODE
	cluster_exec "node$(_cluster_idx "$1")" -- sh -c \
		'cd /mnt/model && find . -type f -exec fincore -n -b -o PAGES {} +' 2>/dev/null |
		awk '{ n += $1 } END { print n + 0 }'
}

cluster_evict() { # SECS NODE...
	local secs=$1 end=$((SECONDS + $1)) n out cached pages
	shift
	for n; do
		out=$(cluster_exec "node$(_cluster_idx "$n")" -- "$_CLUSTER_ROOT/mowsctl" \
			-s "$CLUSTER_STATE/node$(_cluster_idx "$n").sock" evict /mnt/model 2>&1) ||
			_cluster_fail "mowsctl evict /mnt/model on node$n failed: $out"
	done
	for n; do
		while :; do
			cluster_get cached "$n" status 'j["chunks"]["cached"]'
			pages=$(_cluster_cached_pages "$n")
			[ "$cached" -eq 0 ] && [ "$pages" -eq 0 ] && break
			[ $SECONDS -ge $end ] &&
				_cluster_fail "node$n still holds $cached chunks and $pages page-cache pages of /mnt/model ${secs}s after mowsctl evict"
			sleep 0.1
		done
	done
}

cluster_sums() { # DIR FILE
	(cd "$1" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$2" ||
		_cluster_fail "cannot checksum $1"
}

cluster_read() { # FILE LIST: status 1 if a reader failed (FILE is written either way)
	mows_cluster run --nodes "$2" --timeout 120 --json -- sh -c "$CLUSTER_READER" >"$1"
}

# cluster_list LIST: 1-3,5 -> one index per line.
cluster_list() {
	local part
	local -a parts
	IFS=, read -ra parts <<<"${1//node/}"
	for part in "${parts[@]}"; do
		if [[ $part =~ ^([0-9]+)-([0-9]+)$ ]]; then
			seq "${BASH_REMATCH[1]}" "${BASH_REMATCH[2]}"
		else
			echo "$part"
		fi
	done
}

cluster_check_sums() { # WANT LIST
	local want=$1 i d
	for i in $(cluster_list "$2"); do
		d=$(diff "$want" "$CLUSTER_STATE/run-node$i.out" 2>&1) ||
			_cluster_fail "node$i read other bytes than the backing holds (< backing, > node$i):
$(head -n 20 <<<"$d")"
	done
}

cluster_model_bytes() { # VAR DIR
	local _b
	_b=$(find "$2" -type f -printf '%s\n' | awk '{ n += $1 } END { print n + 0 }')
	printf -v "$1" '%s' "$_b"
}

# cluster_model_sums DIR SHARDS MIB: a model of SHARDS shards of MIB MiB with crc32.txt in
# DIR; sets WANT (a file of its checksums) and MODEL (its bytes).
cluster_model_sums() {
	cluster_model "$1" "$2" "$3"
	mows_make_manifest "$1"
	WANT=$SCRATCH/want.sums
	cluster_sums "$1" "$WANT"
	cluster_model_bytes MODEL "$1"
}

# cluster_owned_chunk DIR NODE N MINSIZE: sets REL, K and NCHUNKS to a chunk that nodeNODE
# owns among node1..nodeN under plain rendezvous (ownership = rendezvous, chunk_size = 1M,
# all N up), neither the first nor the last of its file, in a file under DIR larger than
# MINSIZE (find -size), from the file identities as node1 sees them over sshfs.
cluster_owned_chunk() {
	local files pick
	mapfile -t files < <(cd "$1" && find . -type f -size +"$4" -printf '%P\n' | sort)
	pick=$(mows_cluster exec node1 --timeout 30 -- "$PYTHON" "$MOWS_IT/rendezvous_owner.py" \
		/mnt/mows-backing "$MiB" "$2" "$3" "${files[@]}" 2>&1) ||
		_cluster_fail "cannot find a chunk node$2 owns: $pick"
	read -r REL K NCHUNKS <<<"$pick"
}

# cluster_warm_two DIR FANOUT: the warm cluster a join starts from. Makes a model of 2 shards
# (16 MiB) with crc32.txt in DIR, sets WANT (its checksums) and MODEL (its bytes), starts 2
# nodes (100 Mbit/s links, so joiners ask for each chunk at about the same time; 1 MiB chunks;
# swarm_fanout FANOUT) that read it all, and waits until they count as older than a joiner.
cluster_warm_two() {
	local m=$1 fanout=$2
	cluster_model_sums "$m" 2 16
	cluster_up --nodes 2 --model "$m" --storage-rate 400mbit --node-rate 100mbit \
		--mows-args "--max-memory=96M --chunk-size=1M --swarm-fanout=$fanout $CLUSTER_PEER_ARGS"
	cluster_wait_mesh 20 1 2
	cluster_read "$SCRATCH/warm.json" 1-2 ||
		_cluster_fail "warm: a reader failed: $(cat "$SCRATCH/warm.json")"
	cluster_check_sums "$WANT" 1-2
	sleep 3 # the joiners find node1 and node2 older than PEER_OLDER_MS (3 s): a warm cluster
}

assert_between() { # LO VALUE HI WHAT
	if [ "$1" -gt "$2" ] || [ "$2" -gt "$3" ]; then
		_cluster_fail "$4: expected $1 <= $2 <= $3"
	fi
}

# Lines no daemon may ever log: each is a defect in mows itself, whatever the test does.
CLUSTER_NEVER_LOGGED=(
	"cannot watch its connection" # net/serve_io.c lost a link from its epoll set
)

# Whether the nodes' logs are free of CLUSTER_NEVER_LOGGED (prints the lines found).
_cluster_logs_clean() {
	local pat found
	for pat in "${CLUSTER_NEVER_LOGGED[@]}"; do
		found=$(grep -H -F -- "$pat" "$CLUSTER_STATE"/node*.log 2>/dev/null | grep -v sshfs | head -n 5)
		if [ -n "$found" ]; then
			printf 'FAIL: %s: a daemon logged what it never should:\n%s\n' "$MOWS_TEST" "$found" >&2
			return 1
		fi
	done
	return 0
}

# Removes the cluster, then hands over to lib.sh's cleanup with the test's status.
_cluster_on_exit() {
	local rc=$? log
	trap - EXIT
	if [ "$_CLUSTER_MADE" -eq 1 ]; then
		if [ "$rc" -eq 0 ] && ! _cluster_logs_clean; then
			rc=1
		fi
		if [ "$rc" -ne 0 ] && [ "$rc" -ne 77 ]; then
			for log in "$CLUSTER_STATE"/*.log; do
				[ -s "$log" ] || continue
				echo "---- last lines of $(basename "$log") (cluster $CLUSTER) ----" >&2
				tail -n 10 "$log" >&2
				if [ -n "${MOWS_ARTIFACTS:-}" ]; then
					mkdir -p "$MOWS_ARTIFACTS" && cp "$log" "$MOWS_ARTIFACTS/$CLUSTER-${log##*/}"
				fi
			done
		fi
		if ! "$MOWS_CLUSTER" -n "$CLUSTER" down >/dev/null 2>"${TMPDIR:-/tmp}/down.$$"; then
			echo "cleanup: mows-cluster -n $CLUSTER down failed: $(cat "${TMPDIR:-/tmp}/down.$$")" >&2
			[ "$rc" -eq 0 ] && rc=1
		fi
		rm -f "${TMPDIR:-/tmp}/down.$$"
	fi
	if declare -F _mows_cleanup >/dev/null; then
		(exit "$rc")
		_mows_cleanup # reads the status from $? and exits with it
	fi
	exit "$rc"
}
trap _cluster_on_exit EXIT
