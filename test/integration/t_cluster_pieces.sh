#!/usr/bin/env bash
# Answers in DATA_PIECEs (net/proto.h, PROTO_CAP_PIECES) next to nodes that take only whole
# DATA frames, in a simulated cluster (tools/mows-cluster): two nodes read the model warm,
# then four join at once and read it together (the swarm relays chunks while they arrive,
# in pieces between new nodes); two of the joiners run as old nodes (MOWS_TEST_NO_PIECES=1:
# no PIECES in their HELLO, and a DATA_PIECE breaks their link as it would an older
# build's). Every joiner gets the right bytes, and the old ones, like the new, read at most
# 0.05x the model from storage: a node that sent them pieces would break their links over
# and over and send them to storage. PIECES_OLD=0 runs it with no old node.
# timeout: 240
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

OLD=${PIECES_OLD:-2}
M=$SCRATCH/model
cluster_warm_two "$M" 1
note "model: $(wc -l <"$WANT") files, $MODEL bytes; $OLD old joiners"

out=$(mows_cluster add-node --count 4 2>&1) || fail "mows-cluster add-node --count 4: $out"
old_nodes=""
for ((i = 7 - OLD; i <= 6; i++)); do
	out=$(mows_cluster kill "node$i" 2>&1) || fail "mows-cluster kill node$i: $out"
	out=$(mows_cluster start "node$i" --env MOWS_TEST_NO_PIECES=1 2>&1) ||
		fail "mows-cluster start node$i --env MOWS_TEST_NO_PIECES=1: $out"
	grep -q "MOWS_TEST_NO_PIECES=1" "$CLUSTER_STATE/node$i.log" ||
		fail "node$i did not start as an old node (no MOWS_TEST_NO_PIECES line in its log)"
	old_nodes="$old_nodes $i"
done
cluster_wait_mesh 30 1 2 3 4 5 6
cluster_wait_ownership 20 1 2 3 4 5 6
sleep 3 # PEER_OLDER_MS: the joiners must see the warm two as older than themselves
cluster_read "$SCRATCH/join.json" 3-6 || fail "a joiner's reader failed: $(cat "$SCRATCH/join.json")"
cluster_check_sums "$WANT" 3-6
cluster_json slowest "$SCRATCH/join.json" max_ms
per=""
for i in 3 4 5 6; do
	cluster_get b "$i" status 'j["bytes_from_backing"]'
	per="$per node$i:$b"
	assert_le "$b" $((MODEL / 20)) "bytes_from_backing of node$i (model $MODEL; old nodes:$old_nodes)"
done
relayed=0
for i in 1 2 3 4 5 6; do
	cluster_get v "$i" peers 'j["swarm"]["relayed"]'
	relayed=$((relayed + v))
done
note "4 joiners (old:${old_nodes:- none}) read the right bytes in at most $slowest ms;" \
	"bytes from storage:$per; $relayed chunks relayed while they arrived"
note "pass"
