# Sourced by the cluster benchmarks (cluster.sh, fleet.sh): helpers over tools/mows-cluster.
# The caller sets ROOT, TOOL, TIMEOUT, BENCH_NAME and CLUSTER first; this sets STATE, READER,
# PY, log/die and the traps, and checks for root. The caller sets WORK once it made its work
# dir and CLUSTER_MADE=1 while a cluster is up.
# shellcheck shell=bash

STATE=/run/mows-cluster/$CLUSTER
READER='cd /mnt/model && find . -type f -print0 | sort -z | xargs -0 cat >/dev/null'
log() { echo "[$BENCH_NAME +${SECONDS}s] $*" >&2; }
die() { echo "[$BENCH_NAME] error: $*" >&2; exit 1; }
PY=$(python3 -c 'import sys; print(sys.executable)' 2>/dev/null) || PY=python3

WORK=""
CLUSTER_MADE=0
# EXIT trap: removes the cluster (saving its logs) and the work dir (kept on failure or
# with KEEP=1).
bench_cleanup() {
	local rc=$?
	trap - EXIT INT TERM HUP
	set +e
	if [ "$CLUSTER_MADE" = 1 ]; then
		save_logs final
		"$TOOL" -n "$CLUSTER" down >/dev/null 2>&1 ||
			{ log "mows-cluster -n $CLUSTER down failed; run it again by hand"; rc=1; }
	fi
	if [ -n "$WORK" ] && [ -d "$WORK" ]; then
		if [ "${KEEP:-0}" = 1 ] || [ "$rc" -ne 0 ]; then
			log "work directory kept (model, node logs): $WORK"
		else
			rm -rf --one-file-system "$WORK"
		fi
	fi
	exit "$rc"
}
trap bench_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP
[ "$(id -u)" -eq 0 ] || die "needs root (network and mount namespaces, FUSE)"

size_bytes() { # 512M -> bytes
	local v=${1%[bB]} mult=1
	case $v in
	*[kK]) mult=1024 ;; *[mM]) mult=$((1024 ** 2)) ;; *[gG]) mult=$((1024 ** 3)) ;;
	esac
	v=${v%[kKmMgG]}
	[[ $v =~ ^[0-9]+$ ]] || die "MOWS_BENCH_CLUSTER_SIZE '$1': expected a size such as 512M or 1G"
	echo $((v * mult))
}

rate_bits() { # 400mbit -> bits/s
	[[ $1 =~ ^([0-9]+)(kbit|mbit|gbit)$ ]] || die "rate '$1': expected a tc rate such as 400mbit"
	case ${BASH_REMATCH[2]} in
	kbit) echo $((BASH_REMATCH[1] * 1000)) ;;
	mbit) echo $((BASH_REMATCH[1] * 1000000)) ;;
	gbit) echo $((BASH_REMATCH[1] * 1000000000)) ;;
	esac
}

calc() { awk "BEGIN { $1 }"; }

mc() { "$TOOL" -n "$CLUSTER" "$@"; }

ctl() { # NODE ARGS...
	local i=$1
	shift
	"$ROOT/mowsctl" -s "$STATE/node$i.sock" "$@"
}

# jfield JSON EXPR: Python EXPR over j.
jfield() { "$PY" -c 'import json, sys; j = json.loads(sys.argv[1]); print(eval(sys.argv[2]))' "$1" "$2"; }

# wait_up SECS NODE PEER...: until NODE sees every PEER up.
wait_up() {
	local secs=$1 node=$2 end=$(($1 + SECONDS)) out
	shift 2
	while :; do
		out=$(ctl "$node" peers --json 2>/dev/null) || out='{"peers": []}'
		"$PY" -c '
import json, sys
state = {p["node_id"]: p["state"] for p in json.loads(sys.argv[1])["peers"]}
sys.exit(any(state.get("node" + n) != "up" for n in sys.argv[2:]))' "$out" "$@" && return 0
		[ $SECONDS -ge $end ] && die "node$node does not see nodes $* up after ${secs}s: $out"
		sleep 0.2
	done
}

# cpu_snap / cpu_idle_since SNAP: how idle the CPUs were (percent) between a snapshot of
# /proc/stat and now. Other work on the machine moves these numbers: 8 nodes' daemons, sshfs,
# ssh and readers need about a core of their own.
cpu_snap() {
	local -a a
	read -ra a </proc/stat
	echo "$((a[4] + a[5])) $((a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7] + a[8]))"
}
cpu_idle_since() {
	local i0 t0 i1 t1
	read -r i0 t0 <<<"$1"
	read -r i1 t1 <<<"$(cpu_snap)"
	calc "printf \"%.0f\", 100 * ($i1 - $i0) / ($t1 - $t0 + ($t1 == $t0))"
}

save_logs() { # PHASE: node logs of the cluster into WORK/logs/PHASE
	if [ -z "$WORK" ] || [ ! -d "$STATE" ]; then return 0; fi
	mkdir -p "$WORK/logs/$1"
	cp "$STATE"/*.log "$STATE"/run-node*.out "$WORK/logs/$1/" 2>/dev/null || true
}

down() {
	save_logs "$1"
	mc down >/dev/null || die "mows-cluster -n $CLUSTER down failed"
	CLUSTER_MADE=0
}

# timed_run JSONFILE [--nodes LIST]: the reader on the nodes at once; the run report as JSON.
timed_run() {
	local out=$1
	shift
	mc run "$@" --timeout "$TIMEOUT" --json -- sh -c "$READER" >"$out" ||
		die "a reader failed: $(cat "$out"); outputs in $STATE/run-node*.out"
}
