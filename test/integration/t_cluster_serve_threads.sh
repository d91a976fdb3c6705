#!/usr/bin/env bash
# Serving threads do not grow with inbound peers (issue 7 item 2): authenticated inbound links
# are read by one epoll loop and a fixed pool of readers (net/serve_io.c), not a thread each.
# A 16-node cluster (tools/mows-cluster) reads a small model on every node but node1, so each
# peer holds links to node1; then 8 peers are killed and their links to node1 end. node1's
# inbound links must drop by at least 8 while its thread count moves by at most 3 (with a
# thread per link it would drop by at least as much as the links).
# Measured: 30 inbound links, 29 threads; 14 links, 29 threads. The commit before (a thread
# per link): 30 links, 54 threads; 14 links, 38 threads (fails here).
# timeout: 300
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

M=$SCRATCH/model
cluster_model "$M" 2 8
WANT=$SCRATCH/want.sums
cluster_sums "$M" "$WANT"

cluster_up --nodes 16 --model "$M" --storage-rate 400mbit \
	--mows-args "--max-memory=32M --chunk-size=1M --fill-threads=4 $CLUSTER_PEER_ARGS"
cluster_wait_up 90 1 $(seq 2 16)
cluster_read "$SCRATCH/read.json" 2-16 || fail "a reader failed: $(cat "$SCRATCH/read.json")"
cluster_check_sums "$WANT" 2-16

PID1=$(cat "$CLUSTER_STATE/node1.mows.pid")
links() { # inbound established links on node1's peer port
	mows_cluster exec node1 -- ss -Htn state established "( sport = :7070 )" | wc -l
}
threads() { find "/proc/$PID1/task" -mindepth 1 -maxdepth 1 | wc -l; }

links1=$(links)
threads1=$(threads)
note "16 nodes: node1 has $links1 inbound peer links and $threads1 threads"
assert_le 15 "$links1" "15 <= node1's inbound peer links (15 peers read from it)"

for n in $(seq 9 16); do
	out=$(mows_cluster kill "node$n" 2>&1) || fail "mows-cluster kill node$n: $out"
done
end=$((SECONDS + 30))
until [ "$(links)" -le $((links1 - 8)) ]; do
	[ $SECONDS -ge $end ] && fail "node1 still has $(links) inbound links 30 s after 8 peers were killed (had $links1)"
	sleep 0.2
done
sleep 1 # the readers end the links they saw close
links2=$(links)
threads2=$(threads)
note "8 nodes killed: node1 has $links2 inbound peer links and $threads2 threads"
diff=$((threads1 - threads2))
[ "$diff" -lt 0 ] && diff=$((-diff))
assert_le "$diff" 3 "change in node1's threads while its inbound links went from $links1 to $links2"
note "pass"
