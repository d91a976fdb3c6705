#!/usr/bin/env bash
# Peers over TCP, in a simulated cluster (tools/mows-cluster: a storage host serving the model
# over sshfs through one 200 Mbit/s link, nodes with mows-fuse on /mnt/model):
#   a. four nodes reading every file at once get the backing's bytes, and together read the
#      model from storage about once (sum of bytes_from_backing <= 1.1x the model);
#   b. a fifth node joining the warm cluster reads everything from peers, nothing from storage;
#   c. a peer killed with SIGKILL in the middle of a cold load costs the readers nothing: every
#      read completes with the right bytes, and the others see the peer down.
# timeout: 180
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need
need_cmd fincore

M=$SCRATCH/model
cluster_model "$M" 3 16
mows_make_manifest "$M"
WANT=$SCRATCH/want.sums
cluster_sums "$M" "$WANT"
cluster_model_bytes MODEL "$M"
note "model: $(wc -l <"$WANT") files, $MODEL bytes"

# 200 Mbit/s: a cold load takes about 2.5 s, so that c's kill lands well inside it.
cluster_up --nodes 4 --model "$M" --storage-rate 200mbit \
	--mows-args "--max-memory=96M --chunk-size=1M $CLUSTER_PEER_ARGS --log-level=debug"
cluster_wait_mesh 20 1 2 3 4

# Balanced ownership: every node builds the same map for the 4 members and the model's files.
cluster_wait_ownership 15 1 2 3 4
note "ownership map agreed: $CLUSTER_OWNERSHIP"

# ---- a. four nodes, cold, at once ----
cluster_storage_bytes sb0
cluster_read "$SCRATCH/a.json" 1-4 ||
	fail "a: a reader failed: $(cat "$SCRATCH/a.json")"
cluster_check_sums "$WANT" 1-4
cluster_storage_bytes sb1
cluster_sum backing 'j["bytes_from_backing"]' 1 2 3 4
cluster_json p99 "$SCRATCH/a.json" p99_ms
note "a: 4 nodes read $MODEL bytes each in p99 $p99 ms; bytes_from_backing summed over nodes" \
	"$backing ($(awk -v a="$backing" -v b="$MODEL" 'BEGIN { printf "%.3f", a / b }')x the model);" \
	"the storage host sent $((sb1 - sb0)) bytes (with TCP and SFTP overhead)"
[ "$backing" -ge "$MODEL" ] ||
	fail "a: the nodes read $backing bytes from storage in all, less than the model ($MODEL): the counters are wrong"
assert_le "$backing" $((MODEL * 11 / 10)) "a: bytes_from_backing summed over 4 nodes (model $MODEL)"

# ---- b. a fifth node joins the warm cluster ----
out=$(mows_cluster add-node 2>&1) || fail "b: mows-cluster add-node: $out"
cluster_wait_up 20 5 1 2 3 4
cluster_read "$SCRATCH/b.json" 5 || fail "b: node5's reader failed: $(cat "$SCRATCH/b.json")"
cluster_check_sums "$WANT" 5
cluster_get from_backing 5 status 'j["bytes_from_backing"]'
cluster_get from_peers 5 status 'j["sources"].get("peers", 0)'
cluster_json ms "$SCRATCH/b.json" node5.ms
note "b: node5 read the model in $ms ms: $from_peers bytes from peers, $from_backing from storage"
assert_eq 0 "$from_backing" "b: bytes_from_backing of node5, which joined a warm cluster"
assert_eq "$MODEL" "$from_peers" "b: sources.peers of node5 (the model's bytes)"

# ---- c. a peer dies with SIGKILL in the middle of a cold load ----
cluster_evict 15 1 2 3 4 5
cluster_storage_bytes sb0
# node4 is killed by its pid, not through mows-cluster kill: that takes the lock every
# cluster on the host shares, and waiting for it (another cluster starting) let the load
# end before the kill.
pid4=$(cat "$CLUSTER_STATE/node4.mows.pid") && pid_alive "$pid4" ||
	fail "c: node4's mows-fuse is not running (pid file $CLUSTER_STATE/node4.mows.pid)"
mows_cluster run --nodes 1-3 --timeout 120 --json -- sh -c "$CLUSTER_READER" \
	>"$SCRATCH/c.json" 2>&1 &
reader=$!
t0=$EPOCHREALTIME
sleep 0.5
kill -KILL "$pid4" || fail "c: cannot SIGKILL node4's mows-fuse (pid $pid4)"
kill_ms=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }')
wait_pid_gone "$pid4" 10 || fail "c: node4's mows-fuse (pid $pid4) still runs 10 s after SIGKILL"
end=$((SECONDS + 150))
while kill -0 "$reader" 2>/dev/null; do
	[ $SECONDS -ge $end ] && fail "c: the readers did not finish within 150 s"
	sleep 0.1
done
wait "$reader" || fail "c: a reader failed after node4 was killed: $(cat "$SCRATCH/c.json")"
cluster_check_sums "$WANT" 1-3
cluster_storage_bytes sb1
for i in 1 2 3; do
	cluster_json ms "$SCRATCH/c.json" "node$i.ms"
	# A reader done before the kill proves nothing about it.
	[ "$ms" -gt "$kill_ms" ] ||
		fail "c: node$i read everything in $ms ms, before node4 was killed ($kill_ms ms in)"
done
errs=0
for i in 1 2 3; do
	cluster_get e "$i" peers 'peer("node4")["errors"]'
	errs=$((errs + e))
done
cluster_json p99 "$SCRATCH/c.json" p99_ms
note "c: node4 killed $kill_ms ms into the load; nodes 1-3 done in p99 $p99 ms, every byte right;" \
	"$errs failed requests to node4 went elsewhere; storage sent $((sb1 - sb0)) bytes"
# The others notice: heartbeats stop, and after peer_timeout (2 s) node4 leaves placement.
for i in 1 2 3; do
	end=$((SECONDS + 10))
	until cluster_get st "$i" peers 'peer("node4")["state"]' && [ "$st" = down ]; do
		[ $SECONDS -ge $end ] && fail "c: node$i sees killed node4 as '$st', not down, after 10 s"
		sleep 0.2
	done
done
grep -q "peer node4 .* is down" "$CLUSTER_STATE/node1.log" ||
	fail "c: node1's log does not say that node4 is down"
note "pass"
