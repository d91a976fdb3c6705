#!/usr/bin/env bash
# The swarm (net/swarm.h), in a simulated cluster (tools/mows-cluster): two nodes read the
# model warm, then four nodes join at once and read it together, with swarm_fanout = 1 so
# that four joiners are enough to fill a tree (an owner serves one requester of a chunk
# itself and hands the others on):
#   a. every joiner takes the running cluster's metadata snapshot at once (from a node that
#      ran before it when its parent in the snapshot tree is another joiner); the joiners
#      get the right bytes and read at most 0.05x the model from storage;
#   b. owners answered requests with REDIRECT, the requesters got those chunks from the
#      holders named (GET WAIT served by a node that is not the chunk's owner), and what the
#      holders served adds up on both ends;
#   c. node1 turns into an owner that corrupts every chunk it sends (with the CRC of the
#      right bytes); the five others read cold at once: the holders it named get its bad
#      chunks and relay them while they arrive, so a relay must stop before its last byte;
#      every reader still gets the right bytes, and only node1 is ever charged a bad CRC.
# SWARM_FANOUT=0 runs it with the swarm off: then b must fail (the test can fail).
# timeout: 240
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

FANOUT=${SWARM_FANOUT:-1}
M=$SCRATCH/model
cluster_warm_two "$M" "$FANOUT"
note "model: $(wc -l <"$WANT") files, $MODEL bytes; swarm_fanout $FANOUT"

# ---- four nodes join at once ----
out=$(mows_cluster add-node --count 4 2>&1) || fail "mows-cluster add-node --count 4: $out"
cluster_wait_mesh 30 1 2 3 4 5 6
# Every joiner took the running cluster's metadata snapshot at once, even when another
# joiner ranks as its parent or as the lister (it asks node1 or node2 then), never waiting
# for the member set to settle nor listing the store.
for i in 3 4 5 6; do
	grep -q "took the running cluster's snapshot" "$CLUSTER_STATE/node$i.log" ||
		fail "node$i did not take the running cluster's snapshot at once:$(grep metadata: "$CLUSTER_STATE/node$i.log" | head -n 3)"
done
note "joiners' metadata: $(grep -h "took the running cluster's snapshot" "$CLUSTER_STATE"/node[3-6].log | sed 's/.*from node/from node/' | tr '\n' ';')"
cluster_wait_ownership 20 1 2 3 4 5 6
sleep 3 # PEER_OLDER_MS: the joiners must see the warm two as older than themselves
cluster_storage_bytes sb0
cluster_read "$SCRATCH/join.json" 3-6 || fail "a: a joiner's reader failed: $(cat "$SCRATCH/join.json")"
cluster_check_sums "$WANT" 3-6
cluster_storage_bytes sb1
cluster_sum backing 'j["bytes_from_backing"]' 3 4 5 6
cluster_json slowest "$SCRATCH/join.json" max_ms
note "a: 4 joiners read the model in at most $slowest ms; bytes_from_backing summed $backing" \
	"($(awk -v a="$backing" -v b="$MODEL" 'BEGIN { printf "%.3f", a / b }')x the model);" \
	"the storage host sent $((sb1 - sb0)) bytes"
assert_le "$backing" $((MODEL / 20)) "a: bytes_from_backing summed over the 4 joiners (model $MODEL)"

# ---- b. the swarm's counters ----
swarm_sum() { # VAR KEY: the sum of peers --json .swarm.KEY over all six nodes
	local var=$1 key=$2 i v total=0
	for i in 1 2 3 4 5 6; do
		cluster_get v "$i" peers "j[\"swarm\"][\"$key\"]"
		total=$((total + v))
	done
	printf -v "$var" '%s' "$total"
}
swarm_sum sent redirects_sent
swarm_sum redirected redirected
swarm_sum from_holder from_holder
swarm_sum fallbacks fallbacks
swarm_sum as_holder served_as_holder
swarm_sum relayed relayed
swarm_sum parked holder_parked
swarm_sum misses holder_misses
swarm_sum owner_relayed owner_relayed
note "b: owners sent $sent REDIRECTs, requesters got $redirected; $from_holder chunks came" \
	"from the holders named ($as_holder served as holder, $parked of them parked on a fill" \
	"first, $relayed relayed while they arrived; $misses misses), $fallbacks went back to the owner;" \
	"owners relayed $owner_relayed chunks their own fill was receiving"
[ "$sent" -gt 0 ] || fail "b: no owner answered REDIRECT (swarm_fanout $FANOUT): the swarm is off"
assert_eq "$sent" "$redirected" "b: REDIRECTs received (sent: $sent)"
[ "$from_holder" -gt 0 ] || fail "b: no chunk came from a holder an owner named"
# A holder's answer that came after its requester gave up counts on the holder's side only.
assert_le "$from_holder" "$as_holder" "b: chunks received from holders vs served as holder"
assert_eq "$redirected" $((from_holder + fallbacks)) "b: REDIRECTs = chunks from holders + fallbacks"

# ---- c. an owner that corrupts what it sends ----
out=$(mows_cluster kill node1 2>&1) || fail "c: mows-cluster kill node1: $out"
out=$(mows_cluster start node1 --env MOWS_TEST_CORRUPT_SENDS=1 2>&1) ||
	fail "c: mows-cluster start node1 --env MOWS_TEST_CORRUPT_SENDS=1: $out"
grep -q "MOWS_TEST_CORRUPT_SENDS=1: this node corrupts" "$CLUSTER_STATE/node1.log" ||
	fail "c: node1 did not start with the corruption fault"
cluster_wait_mesh 30 1 2 3 4 5 6
cluster_wait_ownership 20 1 2 3 4 5 6
cluster_evict 20 2 3 4 5 6
swarm_sum relayed0 relayed
swarm_sum stopped0 relays_stopped
cluster_read "$SCRATCH/c.json" 2-6 || fail "c: a reader failed: $(cat "$SCRATCH/c.json")"
cluster_check_sums "$WANT" 2-6
swarm_sum relayed1 relayed
swarm_sum stopped1 relays_stopped
charged=0
for i in 2 3 4 5 6; do
	cluster_get v "$i" peers 'peer("node1")["bad_crc"]'
	charged=$((charged + v))
	for k in 2 3 4 5 6; do
		[ "$k" -eq "$i" ] && continue
		cluster_get v "$i" peers "peer(\"node$k\")[\"bad_crc\"]"
		assert_eq 0 "$v" "c: bad CRCs node$i charged to node$k, which only relays"
	done
done
note "c: nodes 2-6 read the right bytes; they charged node1 $charged bad CRCs and nobody" \
	"else; $((relayed1 - relayed0)) chunks were relayed whole meanwhile and" \
	"$((stopped1 - stopped0)) relays were broken off before their last byte"
[ "$charged" -gt 0 ] || fail "c: nobody charged node1, which corrupts every chunk it sends"
note "pass"
