#!/usr/bin/env bash
# mowsctl prefetch --cluster, in a simulated cluster (tools/mows-cluster) of four nodes:
#   a. run on node1 alone, it makes every node fill the chunks it owns: each node reads its
#      share from storage, the cluster reads the model from storage about once (<= 1.1x),
#      one progress bar covers the whole cluster and every node reports its share filled;
#   b. afterwards every node reads the whole model with the right bytes and 0 bytes from
#      storage (each chunk comes from the node that owns it);
#   c. run again (--json), nothing is read from storage and every share is already full.
# timeout: 180
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

M=$SCRATCH/model
cluster_model "$M" 3 16
mows_make_manifest "$M"
WANT=$SCRATCH/want.sums
cluster_sums "$M" "$WANT"
cluster_model_bytes MODEL "$M"
note "model: $(wc -l <"$WANT") files, $MODEL bytes"

cluster_up --nodes 4 --model "$M" \
	--mows-args "--max-memory=96M --chunk-size=1M $CLUSTER_PEER_ARGS"
cluster_wait_mesh 20 1 2 3 4

# Every node ranks chunks with the same ownership map before the command starts.
cluster_wait_ownership 15 1 2 3 4

pf() { # OUT ERR ARGS...: mowsctl on node1, inside its namespace (the paths are its mount's)
	local out=$1 err=$2
	shift 2
	timeout 120 "$MOWS_CLUSTER" -n "$CLUSTER" exec node1 -- "$_CLUSTER_ROOT/mowsctl" \
		-s "$CLUSTER_STATE/node1.sock" "$@" >"$out" 2>"$err"
}

# ---- a. one command warms every node's share ----
for i in 1 2 3 4; do
	cluster_get b "$i" status 'j["bytes_from_backing"]'
	assert_eq 0 "$b" "node$i bytes_from_backing before the prefetch"
done
t0=$EPOCHREALTIME
pf "$SCRATCH/a.out" "$SCRATCH/a.err" prefetch --cluster /mnt/model ||
	fail "a: mowsctl prefetch --cluster exited $?: $(cat "$SCRATCH/a.out" "$SCRATCH/a.err")"
ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
sed 's/^/  a: /' "$SCRATCH/a.out"
# One progress bar for the cluster (not a tty: its final line), at 100%.
grep -q '100%.*cluster of 4 nodes' "$SCRATCH/a.err" ||
	fail "a: no final progress line for the cluster of 4 nodes on stderr: $(cat "$SCRATCH/a.err")"
[ "$(grep -c '^node ' "$SCRATCH/a.out")" -eq 4 ] ||
	fail "a: expected one report line per node (4): $(cat "$SCRATCH/a.out")"
grep -q 'filled:' "$SCRATCH/a.out" && fail "a: a node reports an error: $(cat "$SCRATCH/a.out")"
total=0
for i in 1 2 3 4; do
	cluster_get b "$i" status 'j["bytes_from_backing"]'
	cluster_get c "$i" status 'j["chunks"]["cached"]'
	note "a: node$i read $b bytes of its share from storage; holds $c chunks"
	# A share is about a quarter of the model's chunks; every node must have filled some.
	[ "$b" -gt 0 ] || fail "a: node$i read nothing from storage: its share was not filled"
	assert_le "$b" $((MODEL / 2)) "a: node$i bytes_from_backing (a quarter share of $MODEL)"
	total=$((total + b))
done
note "a: prefetch --cluster took $ms ms; storage bytes over the cluster $total" \
	"($(awk -v a="$total" -v b="$MODEL" 'BEGIN { printf "%.3f", a / b }')x the model)"
[ "$total" -ge "$MODEL" ] ||
	fail "a: the nodes read $total bytes from storage, less than the model ($MODEL): a share was left out"
assert_le "$total" $((MODEL * 11 / 10)) "a: bytes_from_backing summed over 4 nodes (model $MODEL)"

# ---- b. every node reads everything, nothing from storage ----
cluster_read "$SCRATCH/b.json" 1-4 || fail "b: a reader failed: $(cat "$SCRATCH/b.json")"
cluster_check_sums "$WANT" 1-4
after=0
for i in 1 2 3 4; do
	cluster_get b "$i" status 'j["bytes_from_backing"]'
	cluster_get fp "$i" status 'j["sources"].get("peers", 0)'
	note "b: node$i: $fp bytes from peers"
	after=$((after + b))
done
assert_eq "$total" "$after" "b: storage bytes over the cluster after every node read the model (0 more)"

# ---- c. again, as JSON: every share is full already ----
pf "$SCRATCH/c.out" "$SCRATCH/c.err" --json prefetch --cluster /mnt/model ||
	fail "c: mowsctl --json prefetch --cluster exited $?: $(cat "$SCRATCH/c.out" "$SCRATCH/c.err")"
"$PYTHON" - "$SCRATCH/c.out" "$MODEL" <<'PY' || fail "c: JSON report: $(cat "$SCRATCH/c.out")"
import json, sys
j = json.load(open(sys.argv[1]))
model = int(sys.argv[2])
assert len(j["nodes"]) == 4, j
assert all(n["error"] is None and n["done"] == n["total"] > 0 for n in j["nodes"]), j
assert j["done"] == j["total"] == sum(n["total"] for n in j["nodes"]) == model, j
PY
cluster_sum again 'j["bytes_from_backing"]' 1 2 3 4
assert_eq "$total" "$again" "c: storage bytes over the cluster after a second prefetch --cluster"

# ---- bad use: a clear error, exit 2 ----
out=$("$_CLUSTER_ROOT/mowsctl" -s "$CLUSTER_STATE/node1.sock" status --cluster 2>&1)
rc=$?
[ $rc -eq 2 ] && [[ $out == *"--cluster goes with prefetch"* ]] ||
	fail "mowsctl status --cluster: exit $rc, '$out'; expected 2 and a message"
note "pass"
