#!/bin/bash
# mows cluster benchmark (make bench-cluster): the scenario mows exists for, side by side in one
# run, on a cluster simulated by tools/mows-cluster (a storage host serving the model over
# sshfs through one rate-limited link; nodes on faster links, each its own network and mount
# namespace):
#
#   1. direct: every node reads the whole model straight from sshfs, all at once;
#   2. mows, cold: the same through mows-fuse with peers (each byte should cross the storage
#      link once, then travel between nodes);
#   3. scale-out: one more node joins the warm mows cluster and reads the whole model (from
#      peers only).
#
# A node's time is the wall time of one process reading every file under /mnt/model in order,
# every byte (cat > /dev/null); the model has a crc32.txt, so mows checks every file it serves
# (a wrong byte would be EIO, a failed reader). P50/P99 are nearest-rank over the nodes. The
# ideal for 1-2 is model bytes / storage rate (each byte crosses the storage link once); for 3
# model bytes / node rate. Prints a markdown table and saves it to test/bench/cluster-results.md.
# Run as root; the cluster is removed on any exit.
#
# Environment (defaults in brackets):
#   MOWS_BENCH_CLUSTER_SIZE [512M]          model size (0.5-1 GiB makes sense)
#   MOWS_BENCH_CLUSTER_NODES [8]            nodes in 1 and 2 (3 adds one more)
#   MOWS_BENCH_CLUSTER_STORAGE_RATE [400mbit] tc rate of the storage host's link
#   MOWS_BENCH_CLUSTER_NODE_RATE [2gbit]    tc rate of every node's link
#   MOWS_BENCH_CLUSTER_SHARDS [4]           safetensors shards
#   MOWS_BENCH_CLUSTER_MOWS_ARGS [--readahead-chunks=16 --fill-threads=8] mows-fuse options
#   MOWS_BENCH_CLUSTER_LOG_LEVEL [info]     mows-fuse --log-level (debug to investigate)
#   MOWS_BENCH_CLUSTER_HUGEPAGES [auto]     mows-fuse --hugepages; auto becomes off when the
#                                           machine has a hugetlb pool (someone else's); for
#                                           on, reserve a pool first: nodes+1 daemons of
#                                           max_memory (size * 9/8 + 64M) in 2 MiB pages
#   MOWS_BENCH_CLUSTER_TIMEOUT [900]        seconds one phase's readers may take
#   MOWS_BENCH_CLUSTER_KEEP [0]             1 keeps the work dir (model, node logs)
#   MOWS_BENCH_DIR [/var/tmp]               where the work dir is made
set -euo pipefail
export LC_ALL=C

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TOOL=$ROOT/tools/mows-cluster
RESULTS=$ROOT/test/bench/cluster-results.md
SIZE=${MOWS_BENCH_CLUSTER_SIZE:-512M}
NODES=${MOWS_BENCH_CLUSTER_NODES:-8}
STOR_RATE=${MOWS_BENCH_CLUSTER_STORAGE_RATE:-400mbit}
NODE_RATE=${MOWS_BENCH_CLUSTER_NODE_RATE:-2gbit}
SHARDS=${MOWS_BENCH_CLUSTER_SHARDS:-4}
EXTRA_ARGS=${MOWS_BENCH_CLUSTER_MOWS_ARGS:---readahead-chunks=16 --fill-threads=8}
LOG_LEVEL=${MOWS_BENCH_CLUSTER_LOG_LEVEL:-info}
HUGEPAGES=${MOWS_BENCH_CLUSTER_HUGEPAGES:-auto}
TIMEOUT=${MOWS_BENCH_CLUSTER_TIMEOUT:-900}
KEEP=${MOWS_BENCH_CLUSTER_KEEP:-0}
BENCH_DIR=${MOWS_BENCH_DIR:-/var/tmp}
CLUSTER=bc$$
BENCH_NAME=bench-cluster
# shellcheck source=test/bench/lib_cluster_bench.sh
. "$ROOT/test/bench/lib_cluster_bench.sh"


# ---- set-up -------------------------------------------------------------------------------

for t in ip tc nsenter unshare sshfs ssh-keygen ss flock setsid; do
	command -v "$t" >/dev/null || die "needs '$t'; run make deps"
done
for b in mows-fuse mowsctl mows-crc32; do
	[ -x "$ROOT/$b" ] || die "$ROOT/$b is not built; run make"
done
if ! [[ $NODES =~ ^[0-9]+$ ]] || [ "$NODES" -lt 2 ]; then
	die "MOWS_BENCH_CLUSTER_NODES '$NODES': expected 2 or more"
fi
SIZE_B=$(size_bytes "$SIZE")
STOR_BITS=$(rate_bits "$STOR_RATE")
NODE_BITS=$(rate_bits "$NODE_RATE")
if [ "$HUGEPAGES" = auto ] && [ "$(awk '/^HugePages_Total/ { print $2 }' /proc/meminfo)" -gt 0 ]; then
	HUGEPAGES=off
	HP_NOTE="hugetlb pool present (not ours): --hugepages=off so the daemons leave it alone"
else
	HP_NOTE="--hugepages=$HUGEPAGES"
fi
# Every node holds the whole model (the scale-out node reads it all from peers).
MAXMEM_MIB=$((SIZE_B / 1048576 + SIZE_B / 1048576 / 8 + 64))
need_kb=$(((NODES + 1) * (MAXMEM_MIB + SIZE_B / 1048576) * 1024))
avail_kb=$(awk '/^MemAvailable/ { print $2 }' /proc/meminfo)
[ "$avail_kb" -gt "$need_kb" ] ||
	die "needs about $((need_kb / 1048576)) GiB of available memory ($((NODES + 1)) daemons of ${MAXMEM_MIB}M and their page caches); $((avail_kb / 1048576)) GiB available; try a smaller MOWS_BENCH_CLUSTER_SIZE"

WORK=$(mktemp -d "$BENCH_DIR/mows-bench-cluster.XXXXXX")
M=$WORK/model
mib=$((SIZE_B / 1048576))
shard_mib=$(((mib - SHARDS * (SHARDS - 1) / 2) / SHARDS)) # genmodel makes shard s (mib + s) MiB
[ "$shard_mib" -ge 1 ] || die "MOWS_BENCH_CLUSTER_SIZE '$SIZE' is too small for $SHARDS shards"
log "generating a $SIZE model in $M"
"$PY" "$ROOT/tools/genmodel.py" "$M" --shards "$SHARDS" --shard-mib "$shard_mib" >/dev/null
"$ROOT/mows-crc32" "$M" >/dev/null
MODEL_B=$(find "$M" -type f -printf '%s\n' | awk '{ n += $1 } END { print n }')
NFILES=$(find "$M" -type f | wc -l)

IDEAL_STOR=$(calc "printf \"%.2f\", $MODEL_B * 8 / $STOR_BITS")
IDEAL_NODE_COLD=$(calc "printf \"%.2f\", $MODEL_B * ($NODES - 1) / $NODES * 8 / $NODE_BITS")
IDEAL_NODE=$(calc "printf \"%.2f\", $MODEL_B * 8 / $NODE_BITS")
IDEAL_DIRECT=$(calc "printf \"%.2f\", $NODES * $MODEL_B * 8 / $STOR_BITS")
UP_ARGS=(--nodes "$NODES" --model "$M" --storage-rate "$STOR_RATE" --node-rate "$NODE_RATE")
MOWS_ARGS="--max-memory=${MAXMEM_MIB}M --hugepages=$HUGEPAGES --log-level=$LOG_LEVEL${EXTRA_ARGS:+ $EXTRA_ARGS}"
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
declare -A IDLE

# ---- 1. direct --------------------------------------------------------------------------

log "1. direct: $NODES nodes read the model from sshfs at once (bound: $IDEAL_DIRECT s)"
CLUSTER_MADE=1
mc up "${UP_ARGS[@]}" --direct >/dev/null
b0=$(mc storage-bytes)
snap=$(cpu_snap)
timed_run "$WORK/direct.json"
IDLE[direct]=$(cpu_idle_since "$snap")
b1=$(mc storage-bytes)
DIRECT_BYTES=$((b1 - b0))
down direct

# ---- 2. mows, cold ----------------------------------------------------------------------

log "2. mows cold: $NODES nodes through mows-fuse with peers (ideal: $IDEAL_STOR s)"
CLUSTER_MADE=1
mc up "${UP_ARGS[@]}" --mows-args "$MOWS_ARGS" >/dev/null
t_mesh=$SECONDS
for ((i = 1; i <= NODES; i++)); do
	peers=()
	for ((k = 1; k <= NODES; k++)); do
		if [ $k -ne $i ]; then peers+=("$k"); fi
	done
	wait_up 60 "$i" "${peers[@]}"
done
log "every node sees the $((NODES - 1)) others up ($((SECONDS - t_mesh)) s after up)"
b0=$(mc storage-bytes)
snap=$(cpu_snap)
timed_run "$WORK/cold.json"
IDLE[cold]=$(cpu_idle_since "$snap")
b1=$(mc storage-bytes)
COLD_BYTES=$((b1 - b0))
COLD_NODES=""
cold_backing=0 cold_errors=0
for ((i = 1; i <= NODES; i++)); do
	st=$(ctl "$i" status --json)
	pe=$(ctl "$i" peers --json)
	fb=$(jfield "$st" 'j["bytes_from_backing"]')
	fp=$(jfield "$st" 'j["sources"].get("peers", 0)')
	fe=$(jfield "$st" 'j["fill_errors"]')
	er=$(jfield "$pe" 'sum(p["errors"] for p in j["peers"])')
	ms=$(jfield "$(cat "$WORK/cold.json")" "[n['ms'] for n in j['nodes'] if n['node'] == 'node$i'][0]")
	cold_backing=$((cold_backing + fb))
	cold_errors=$((cold_errors + er))
	COLD_NODES+="node$i ${ms} ms (backing $((fb >> 20)) MiB, peers $((fp >> 20)) MiB, peer errors $er, fill errors $fe); "
done

# ---- 3. scale-out -----------------------------------------------------------------------

NEW=$((NODES + 1))
log "3. scale-out: node$NEW joins the warm cluster and reads the model (ideal: $IDEAL_NODE s)"
mc add-node >/dev/null
peers=()
for ((k = 1; k <= NODES; k++)); do peers+=("$k"); done
wait_up 60 "$NEW" "${peers[@]}"
b0=$(mc storage-bytes)
snap=$(cpu_snap)
timed_run "$WORK/scale.json" --nodes "$NEW"
IDLE[scale]=$(cpu_idle_since "$snap")
b1=$(mc storage-bytes)
SCALE_BYTES=$((b1 - b0))
st=$(ctl "$NEW" status --json)
SCALE_BACKING=$(jfield "$st" 'j["bytes_from_backing"]')
SCALE_PEERS=$(jfield "$st" 'j["sources"].get("peers", 0)')

# Spot check, outside the timings: node1 and the new node hold the backing's bytes.
(cd "$M" && find . -type f -print0 | sort -z | xargs -0 sha256sum) >"$WORK/want.sums"
for i in 1 "$NEW"; do
	mc run --nodes "$i" --timeout 300 -- sh -c \
		'cd /mnt/model && find . -type f -print0 | sort -z | xargs -0 sha256sum' >/dev/null ||
		die "sha256 over node$i's /mnt/model failed"
	cmp -s "$WORK/want.sums" "$STATE/run-node$i.out" ||
		die "node$i read other bytes than the backing holds (see $STATE/run-node$i.out)"
done
down mows

# ---- table ------------------------------------------------------------------------------

jr() { jfield "$(cat "$WORK/$1.json")" "$2"; }
D50=$(jr direct 'j["p50_ms"] / 1000') D99=$(jr direct 'j["p99_ms"] / 1000')
C50=$(jr cold 'j["p50_ms"] / 1000') C99=$(jr cold 'j["p99_ms"] / 1000')
S99=$(jr scale 'j["p99_ms"] / 1000')
f2() { calc "printf \"%.2f\", $1"; }
yes_no() { calc "print (($1) ? \"yes\" : \"**no**\")"; }
mib() { calc "printf \"%.0f MiB\", $1 / 1048576"; }
nodes_line() { jr "$1" "'; '.join('%s %.2f s' % (n['node'], n['ms'] / 1000) for n in j['nodes'])"; }

COLD_RATIO=$(f2 "$C99 / $IDEAL_STOR")
SPEEDUP=$(f2 "$D99 / $C99")
SCALE_RATIO=$(f2 "$S99 / $IDEAL_NODE")
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
{
	echo "## mows cluster benchmark, $(date -u '+%Y-%m-%d %H:%M UTC')"
	echo
	echo "Machine: $(nproc) CPUs ($cpu), $(awk '/^MemTotal/ { printf "%.1f", $2 / 1048576 }' /proc/meminfo) GiB RAM, Linux $(uname -r); load average $LOAD0 before, $(cut -d' ' -f1-3 /proc/loadavg) after; CPU idle during each phase (anything above 0 means the cluster was not short of CPU): direct ${IDLE[direct]}%, cold ${IDLE[cold]}%, scale-out ${IDLE[scale]}%."
	echo "Cluster (tools/mows-cluster): storage link $STOR_RATE, node links $NODE_RATE, $NODES nodes (+1 for scale-out). Model: $(mib "$MODEL_B") ($MODEL_B bytes) in $NFILES files, $SHARDS safetensors shards, with crc32.txt."
	echo "mows: $MOWS_ARGS (other settings default; $HP_NOTE). Reader: one process per node, every file in order, cat > /dev/null."
	echo
	echo "| scenario | P50 | P99 | storage bytes | ideal | ratio to ideal | goal | met? |"
	echo "|---|---|---|---|---|---|---|---|"
	echo "| 1. direct: $NODES nodes read sshfs at once | $(f2 "$D50") s | $(f2 "$D99") s | $(mib "$DIRECT_BYTES") | $IDEAL_STOR s | $(f2 "$D99 / $IDEAL_STOR")x | baseline ($NODES x model over the storage link: $IDEAL_DIRECT s) | - |"
	echo "| 2. mows cold: $NODES nodes at once, peers | $(f2 "$C50") s | $(f2 "$C99") s | $(mib "$COLD_BYTES") | $IDEAL_STOR s | ${COLD_RATIO}x | P99 <= 1.3x ideal | $(yes_no "$C99 <= 1.3 * $IDEAL_STOR") |"
	echo "| 2. mows cold vs direct | | ${SPEEDUP}x faster | $(f2 "$DIRECT_BYTES / $COLD_BYTES")x fewer | | | >= 6x faster | $(yes_no "$SPEEDUP >= 6") |"
	echo "| 2. node-link bound of the cold load (each node receives $((NODES - 1))/$NODES of the model) | | | | $IDEAL_NODE_COLD s | $(f2 "$C99 / $IDEAL_NODE_COLD")x | info | - |"
	echo "| 3. scale-out: node$NEW joins the warm cluster | $(f2 "$S99") s | $(f2 "$S99") s | $(mib "$SCALE_BYTES") | $IDEAL_NODE s (model / node link) | ${SCALE_RATIO}x | <= 1.3x ideal | $(yes_no "$S99 <= 1.3 * $IDEAL_NODE") |"
	echo "| 3. scale-out: node$NEW's bytes from backing | | | $SCALE_BACKING bytes | 0 | | 0 | $(yes_no "$SCALE_BACKING == 0") |"
	echo
	echo "- Per node, direct: $(nodes_line direct)."
	echo "- Storage link use: direct $(calc "printf \"%.0f\", $DIRECT_BYTES * 8 / $D99 / 1e6") Mbit/s, mows cold $(calc "printf \"%.0f\", $COLD_BYTES * 8 / $C99 / 1e6") Mbit/s over the P99 time (the link is $STOR_RATE)."
	echo "- Per node, mows cold: ${COLD_NODES%; }. bytes_from_backing summed over nodes: $(mib "$cold_backing") ($(f2 "$cold_backing / $MODEL_B")x the model); failed peer requests summed over nodes: $cold_errors."
	echo "- Scale-out: node$NEW got $(mib "$SCALE_PEERS") from peers and $SCALE_BACKING bytes from the backing; the storage host sent $SCALE_BYTES bytes meanwhile (sshfs keepalives)."
	echo "- Storage bytes are the storage host's eth0 tx_bytes, headers included (with GSO they add well under 1%): direct sent $(f2 "$DIRECT_BYTES / $NODES / $MODEL_B")x $NODES times the model, mows cold $(f2 "$COLD_BYTES / $MODEL_B")x the model (its daemons asked the backing for $(f2 "$cold_backing / $MODEL_B")x; more is read by the backing mounts' own readahead past each chunk). Ideal = model bytes x 8 / link rate, at the nominal tc rate (TCP goodput through tbf is about 96% of it)."
	echo "- node1 and node$NEW then read the model again with sha256sum: equal to the backing's."
} >"$RESULTS.tmp"
mv "$RESULTS.tmp" "$RESULTS"
cat "$RESULTS"
log "saved to $RESULTS"
