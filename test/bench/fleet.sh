#!/bin/bash
# mows fleet benchmark (part of make bench-cluster): the burst shapes of an elastic fleet on a
# cluster simulated by tools/mows-cluster, with node links rate-limited so that links, not this
# machine's two cores, are the limit (the CPU left idle is reported for every phase):
#
#   1. join: W nodes read the model cold, then K more nodes join the warm cluster at the same
#      moment and each reads the whole model. Goal: storage sends <= 0.05x the model for the
#      joiners, the slowest joiner <= 1.3x (model / node link).
#   2. cold N: N nodes (16, then 32) start at once and each reads the whole model. Goal for 16:
#      storage sends <= 1.1x the model, the slowest node <= 1.2x the storage-bound ideal
#      (model / storage link); 32 is reported.
#
# The join also prints a link timeline (test/bench/link_timeline.py: every node's uplink and
# downlink busy % during the read, a digit per 0.2 s, and where the slowest joiner's downlink
# lost time: start, middle, file ends, tail) and TCP retransmits per node: where the next
# bottleneck is.
#
# Prints a markdown table and saves it to test/bench/fleet-results.md. Run as root; every
# cluster is removed on any exit.
#
# Environment (defaults in brackets):
#   MOWS_BENCH_FLEET_SIZE [104M]          model size
#   MOWS_BENCH_FLEET_SHARDS [4]           shards the model is in (1: no file ends in the read)
#   MOWS_BENCH_FLEET_STORAGE_RATE [200mbit] tc rate of the storage host's link
#   MOWS_BENCH_FLEET_NODE_RATE [300mbit]  tc rate of every node's link
#   MOWS_BENCH_FLEET_WARM [2]             warm nodes before the join
#   MOWS_BENCH_FLEET_JOIN [6]             nodes that join at once
#   MOWS_BENCH_FLEET_COLD ["16 32"]       cluster sizes of the cold bursts ("none": the join only)
#   MOWS_BENCH_FLEET_MOWS_ARGS [--readahead-chunks=16 --fill-threads=8]
#   MOWS_BENCH_FLEET_TIMEOUT [600]        seconds one phase's readers may take
#   MOWS_BENCH_DIR [/var/tmp]             where the work dir is made
#   MOWS_BENCH_FLEET_TIMELINE [0]         1: log a storage/link timeline of each cold burst
#   MOWS_BENCH_FLEET_CHUNK_CRCS [1]       1: the model has crc32.chunks (mows-crc32 --chunks), so
#                                         owners relay storage reads while they arrive; 0: crc32.txt only
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOOL=$ROOT/tools/mows-cluster
RESULTS=$ROOT/test/bench/fleet-results.md
SIZE=${MOWS_BENCH_FLEET_SIZE:-104M}
STOR_RATE=${MOWS_BENCH_FLEET_STORAGE_RATE:-200mbit}
NODE_RATE=${MOWS_BENCH_FLEET_NODE_RATE:-300mbit}
WARM=${MOWS_BENCH_FLEET_WARM:-2}
SHARDS=${MOWS_BENCH_FLEET_SHARDS:-4}
JOIN=${MOWS_BENCH_FLEET_JOIN:-6}
COLD_SIZES=${MOWS_BENCH_FLEET_COLD:-16 32}
[ "$COLD_SIZES" = none ] && COLD_SIZES=""
EXTRA_ARGS=${MOWS_BENCH_FLEET_MOWS_ARGS:---readahead-chunks=16 --fill-threads=8}
TIMEOUT=${MOWS_BENCH_FLEET_TIMEOUT:-600}
BENCH_DIR=${MOWS_BENCH_DIR:-/var/tmp}
CLUSTER=bf$$
BENCH_NAME=bench-fleet
# shellcheck source=test/bench/lib_cluster_bench.sh
. "$ROOT/test/bench/lib_cluster_bench.sh"

for b in mows-fuse mowsctl mows-crc32; do
	[ -x "$ROOT/$b" ] || die "$ROOT/$b is not built; run make"
done
SIZE_B=$(size_bytes "$SIZE")
[[ $SHARDS =~ ^[1-9][0-9]*$ ]] || die "MOWS_BENCH_FLEET_SHARDS '$SHARDS': expected a count such as 4"
STOR_BITS=$(rate_bits "$STOR_RATE")
NODE_BITS=$(rate_bits "$NODE_RATE")
MAXMEM_MIB=$((SIZE_B / 1048576 + SIZE_B / 1048576 / 8 + 64))
HUGEPAGES=off # dozens of daemons: small pages, no hugetlb pool to share out

WORK=$(mktemp -d "$BENCH_DIR/mows-bench-fleet.XXXXXX")
M=$WORK/model
mib=$((SIZE_B / 1048576))
shard_mib=$(((mib - 6) / SHARDS))
[ "$shard_mib" -ge 1 ] || die "MOWS_BENCH_FLEET_SIZE '$SIZE' is too small"
"$PY" "$ROOT/tools/genmodel.py" "$M" --shards "$SHARDS" --shard-mib "$shard_mib" >/dev/null
CHUNK_CRCS=${MOWS_BENCH_FLEET_CHUNK_CRCS:-1}
case $CHUNK_CRCS in
0) "$ROOT/mows-crc32" "$M" >/dev/null ;;
1) "$ROOT/mows-crc32" --chunks "$M" >/dev/null ;;
*) die "MOWS_BENCH_FLEET_CHUNK_CRCS '$CHUNK_CRCS': expected 0 or 1" ;;
esac
MODEL_B=$(find "$M" -type f -printf '%s\n' | awk '{ n += $1 } END { print n }')
IDEAL_STOR=$(calc "printf \"%.2f\", $MODEL_B * 8 / $STOR_BITS")
IDEAL_NODE=$(calc "printf \"%.2f\", $MODEL_B * 8 / $NODE_BITS")
UP_ARGS=(--model "$M" --storage-rate "$STOR_RATE" --node-rate "$NODE_RATE")
MOWS_ARGS="--max-memory=${MAXMEM_MIB}M --hugepages=$HUGEPAGES${EXTRA_ARGS:+ $EXTRA_ARGS}"
f2() { calc "printf \"%.2f\", $1"; }
yes_no() { calc "print (($1) ? \"yes\" : \"**no**\")"; }
ROWS=()

# mesh_up N: waits until each of nodes 1..N sees all the others up.
mesh_up() {
	local n=$1 i k
	for ((i = 1; i <= n; i++)); do
		local -a others=()
		for ((k = 1; k <= n; k++)); do [ $k -ne $i ] && others+=("$k"); done
		wait_up 120 "$i" "${others[@]}"
	done
}

# sent_mb FIRST LAST: the MB nodes FIRST..LAST sent to peers so far (sum of bytes_out).
sent_mb() {
	local i out tot=0
	for ((i = $1; i <= $2; i++)); do
		out=$(ctl "$i" peers --json 2>/dev/null) || out='{"peers": []}'
		tot=$((tot + $(jfield "$out" 'sum(p["bytes_out"] for p in j["peers"])')))
	done
	calc "printf \"%.0f\", $tot / 1e6"
}

# swarm_sums FIRST LAST: the swarm counters of nodes FIRST..LAST, summed, as k=v.
swarm_sums() {
	local i
	for ((i = $1; i <= $2; i++)); do ctl "$i" peers --json 2>/dev/null || echo '{}'; done |
		"$PY" -c '
import json, sys
t = {}
for line in sys.stdin:
    for k, v in json.loads(line).get("swarm", {}).items():
        t[k] = t.get(k, 0) + v
print(" ".join("%s=%d" % kv for kv in sorted(t.items())))'
}

# backing_readers FIRST LAST: "nodeN MiB" for each node of FIRST..LAST that read from storage.
backing_readers() {
	local i out
	for ((i = $1; i <= $2; i++)); do
		out=$(ctl "$i" status --json 2>/dev/null) || continue
		jfield "$out" '"node'"$i"' %.1f MiB;" % (j["bytes_from_backing"] / 1048576) if j["bytes_from_backing"] else ""'
	done | tr '\n' ' ' | awk '{ for (i = 1; i < NF; i++) if ($(i + 1) == "MiB;") t += $i
	printf "%s in all %.1f MiB", $0, t }'
}

# daemon_ticks: CPU clock ticks (user + system) used so far by this cluster's mows-fuse daemons.
daemon_ticks() {
	local pid t=0
	for pid in $(pgrep -f -- "--control-socket $STATE/node"); do
		t=$((t + $(awk '{ print $14 + $15 }' "/proc/$pid/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

# Cold-burst timeline (MOWS_BENCH_FLEET_TIMELINE=1): samples the switch's interface counters
# every 200 ms while a cold burst reads, then logs, per 0.6 s, the storage link's Mbit/s
# (the storage host's sends), the nodes' mean and lowest receive rate and the nodes' sends:
# whether storage stays busy and whether distribution overlaps it. The samples are kept
# in WORK (KEEP=1).
cold_timeline_start() { # FILE
	[ "${MOWS_BENCH_FLEET_TIMELINE:-0}" = 1 ] || return 0
	# shellcheck disable=SC2016 # the inner sh expands them
	ip netns exec "mows-$CLUSTER-sw" sh -c \
		'while [ -e /run/netns/$0 ]; do echo "T $(date +%s.%N)"; cat /proc/net/dev; sleep 0.2; done' "mows-$CLUSTER-sw" >"$1" &
	TIMELINE_PID=$!
}
cold_timeline_stop() { # FILE
	[ -n "${TIMELINE_PID:-}" ] || return 0
	kill "$TIMELINE_PID" 2>/dev/null || true
	wait "$TIMELINE_PID" 2>/dev/null || true
	TIMELINE_PID=""
	"$PY" - "$1" <<-'PYEOF' >&2 || true
	import sys
	rows, cur = [], None
	for line in open(sys.argv[1]):
	    if line.startswith("T "):
	        cur = {"t": float(line.split()[1])}
	        rows.append(cur)
	    elif cur is not None and ":" in line:
	        name, rest = line.split(":", 1)
	        v = rest.split()
	        cur[name.strip()] = (int(v[0]), int(v[8]))  # (rx, tx) seen by the switch
	rows = [r for r in rows if "st" in r]
	if len(rows) < 2:
	    sys.exit(0)
	nodes = sorted(k for k in rows[0] if k.startswith("n") and k[1:].isdigit())
	t0, step, i = rows[0]["t"], 3, 0
	print("timeline: t(s) storage-Mbit/s | nodes rx Mbit/s mean min | nodes tx Mbit/s sum")
	while i + step < len(rows):
	    a, b = rows[i], rows[i + step]
	    dt = b["t"] - a["t"]
	    mbit = lambda x, y: (y - x) * 8 / dt / 1e6
	    st = mbit(a["st"][0], b["st"][0])
	    rx = [mbit(a[n][1], b[n][1]) for n in nodes if n in a and n in b]
	    tx = sum(mbit(a[n][0], b[n][0]) for n in nodes if n in a and n in b)
	    print("timeline: %5.1f %6.1f | %6.1f %6.1f | %7.1f" % (a["t"] - t0, st,
	          sum(rx) / max(1, len(rx)), min(rx or [0]), tx))
	    i += step
	PYEOF
}

# timeline_start FILE / timeline_stop: every node port's byte counters, sampled every 0.1 s
# in the switch namespace (outside the read) into FILE (test/bench/link_timeline.py).
TL_PID=""
timeline_start() {
	nsenter --net="/run/netns/mows-$CLUSTER-sw" -- "$PY" "$ROOT/test/bench/link_timeline.py" \
		sample "$1" --max-seconds "$((TIMEOUT + 60))" &
	TL_PID=$!
}
timeline_stop() {
	if [ -n "$TL_PID" ] && kill "$TL_PID" 2>/dev/null; then
		wait "$TL_PID" 2>/dev/null || true
	fi
	TL_PID=""
}
# timeline_summary FILE START RUN_JSON: where each link was busy during the read, and where
# the slowest reader's downlink lost time (kept in the bench output: it shows the next
# bottleneck).
timeline_summary() {
	"$PY" "$ROOT/test/bench/link_timeline.py" summary "$1" --start "$2" --run "$3" \
		--rate "$NODE_BITS" --model "$M" --old "$WARM" >&2 ||
		log "join: no link timeline ($1)"
}

# tcp_counters FIRST LAST: per node, "segments-sent retransmitted timeouts" of TCP so far (its
# network namespace's /proc/net/snmp and netstat), one line each.
tcp_counters() {
	local i
	for ((i = $1; i <= $2; i++)); do
		nsenter --net="/run/netns/mows-$CLUSTER-node$i" -- cat /proc/net/snmp /proc/net/netstat |
			awk -v n="$i" '$1 == "Tcp:" && $2 ~ /^[A-Z]/ { for (k = 2; k <= NF; k++) th[k] = $k; next }
				$1 == "Tcp:" { for (k = 2; k <= NF; k++) if (th[k] == "OutSegs") o = $k; else if (th[k] == "RetransSegs") r = $k; next }
				$1 == "TcpExt:" && $2 ~ /^[A-Z]/ { for (k = 2; k <= NF; k++) eh[k] = $k; next }
				$1 == "TcpExt:" { for (k = 2; k <= NF; k++) if (eh[k] == "TCPTimeouts") t = $k }
				END { print n, o + 0, r + 0, t + 0 }'
	done
}
# tcp_delta BEFORE AFTER: "nodeN retrans R of S segments, T timeouts" for each node.
tcp_delta() {
	join <(echo "$1") <(echo "$2") |
		awk '{ printf "node%d %d/%d retransmitted, %d timeouts; ", $1, $6 - $3, $5 - $2, $7 - $4 }'
}

# slowest JSON: the slowest node's seconds in a run report.
slowest() { jfield "$(cat "$1")" 'max(n["ms"] for n in j["nodes"]) / 1000'; }

# ---- 1. join ------------------------------------------------------------------------------

log "1. join: $WARM nodes read cold, then $JOIN join at once (ideal per joiner: $IDEAL_NODE s)"
CLUSTER_MADE=1
mc up --nodes "$WARM" "${UP_ARGS[@]}" --mows-args "$MOWS_ARGS" >/dev/null
mesh_up "$WARM"
timed_run "$WORK/warm.json"
mc add-node --count "$JOIN" >/dev/null
t_added=$SECONDS
LAST=$((WARM + JOIN))
for ((i = WARM + 1; i <= LAST; i++)); do # every joiner sees every node up
	others=()
	for ((k = 1; k <= LAST; k++)); do [ $k -ne $i ] && others+=("$k"); done
	wait_up 120 "$i" "${others[@]}"
done
# A joiner's mount answers once it has the cluster's metadata (net/meta_share.h); the read
# is timed from then, and the wait is reported on its own (it is not the fetch path).
mc run --nodes "$((WARM + 1))-$LAST" --timeout 120 --json -- \
	sh -c 'until stat /mnt/model/crc32.txt >/dev/null 2>&1; do sleep 0.05; done' \
	>"$WORK/ready.json" || die "a joiner's mount did not answer in 120 s: $(cat "$WORK/ready.json")"
log "join: every joiner saw every node up and its mount answered $((SECONDS - t_added)) s after add-node (the last mount $(f2 "$(slowest "$WORK/ready.json")") s after the mesh was up)"
b0=$(mc storage-bytes)
old0=$(sent_mb 1 "$WARM")
new0=$(sent_mb "$((WARM + 1))" "$LAST")
snap=$(cpu_snap)
ticks0=$(daemon_ticks)
tcp0=$(tcp_counters 1 "$LAST")
timeline_start "$WORK/join.links"
t_read=$(date +%s.%N)
timed_run "$WORK/join.json" --nodes "$((WARM + 1))-$LAST"
timeline_stop
idle=$(cpu_idle_since "$snap")
ticks1=$(daemon_ticks)
b1=$(mc storage-bytes)
jb=$((b1 - b0))
js=$(slowest "$WORK/join.json")
old1=$(sent_mb 1 "$WARM")
new1=$(sent_mb "$((WARM + 1))" "$LAST")
timeline_summary "$WORK/join.links" "$t_read" "$WORK/join.json"
log "join: TCP during the read: $(tcp_delta "$tcp0" "$(tcp_counters 1 "$LAST")")"
timed_run "$WORK/again.json" --nodes "$((WARM + 1))-$LAST" # the floor: every chunk cached
log "join: the same read again on the joiners, every chunk cached: slowest $(f2 "$(slowest "$WORK/again.json")") s"
log "join: the $((WARM + JOIN)) daemons used $(f2 "($ticks1 - $ticks0) / $(getconf CLK_TCK)") CPU seconds during the read; the machine was $idle% idle"
log "join: joiners $(jfield "$(cat "$WORK/join.json")" '" ".join("%.2f" % (n["ms"] / 1000) for n in j["nodes"])') s; the $WARM old nodes sent $((old1 - old0)) MB, the $JOIN joiners $((new1 - new0)) MB; swarm: $(swarm_sums 1 "$LAST")"
ROWS+=("| 1. $JOIN nodes join a warm $WARM-node cluster at once | slowest joiner $(f2 "$js") s = $(f2 "$js / $IDEAL_NODE")x model / node link ($IDEAL_NODE s) | storage $(f2 "$jb / $MODEL_B")x model | <= 1.3x and <= 0.05x | $(yes_no "$js <= 1.3 * $IDEAL_NODE && $jb <= 0.05 * $MODEL_B") | $idle% |")
down join

# ---- 2. cold bursts -----------------------------------------------------------------------

for n in $COLD_SIZES; do
	log "2. cold: $n nodes at once (storage-bound ideal: $IDEAL_STOR s)"
	CLUSTER_MADE=1
	# A cluster that cannot come up is a row that says why (with the failing node's sshfs
	# log in the bench output), not the end of the run.
	if ! up_err=$(mc up --keep --nodes "$n" "${UP_ARGS[@]}" --mows-args "$MOWS_ARGS" 2>&1 >/dev/null); then
		log "cold $n: mows-cluster up failed: $up_err"
		for f in "$STATE"/node*.sshfs.log; do
			[ -s "$f" ] && log "$(basename "$f"): $(tail -n 5 "$f")"
		done
		why=$(printf '%s\n' "$up_err" | grep -m1 -E '^ *mows-fuse:|^mows-cluster:' | sed 's/|/\\|/g')
		ROWS+=("| 2. $n nodes cold at once | not run: \`mows-cluster up\` failed: $why | | reported | - | |")
		mc down >/dev/null
		CLUSTER_MADE=0
		continue
	fi
	t_mesh=$SECONDS
	mesh_up "$n"
	log "cold $n: every node saw all $((n - 1)) others up $((SECONDS - t_mesh)) s after \`mows-cluster up\` returned"
	b0=$(mc storage-bytes)
	snap=$(cpu_snap)
	cold_timeline_start "$WORK/timeline$n.txt"
	timed_run "$WORK/cold$n.json"
	cold_timeline_stop "$WORK/timeline$n.txt"
	idle=$(cpu_idle_since "$snap")
	b1=$(mc storage-bytes)
	cb=$((b1 - b0))
	cs=$(slowest "$WORK/cold$n.json")
	log "cold $n: swarm: $(swarm_sums 1 "$n"); nodes that read storage: $(backing_readers 1 "$n")"
	if [ "$n" -le 16 ]; then
		goal="<= 1.2x and <= 1.1x"
		met=$(yes_no "$cs <= 1.2 * $IDEAL_STOR && $cb <= 1.1 * $MODEL_B")
	else
		goal="reported"
		met=-
	fi
	save_logs "cold$n"
	ROWS+=("| 2. $n nodes cold at once | slowest $(f2 "$cs") s = $(f2 "$cs / $IDEAL_STOR")x model / storage link ($IDEAL_STOR s) | storage $(f2 "$cb / $MODEL_B")x model | $goal | $met | $idle% |")
	mc down >/dev/null
	CLUSTER_MADE=0
done

{
	echo "## mows fleet benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "$(nproc) CPUs, Linux $(uname -r). Model $(calc "printf \"%.0f\", $MODEL_B / 1048576") MiB in $SHARDS shards with crc32.txt$([ "$CHUNK_CRCS" = 1 ] && echo " and crc32.chunks"); storage link $STOR_RATE, node links $NODE_RATE; mows $MOWS_ARGS."
	echo
	echo "| scenario | time | storage bytes | goal | met? | CPU idle |"
	echo "|---|---|---|---|---|---|"
	printf '%s\n' "${ROWS[@]}"
} >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
cat "$RESULTS"
