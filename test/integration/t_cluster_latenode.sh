#!/usr/bin/env bash
# A node that starts long after its peers, in a simulated cluster of three nodes
# (tools/mows-cluster): the last node of a cold burst, or one whose storage mount came up
# late. Its peers have been probing its address and failing (connection refused) the whole
# time, so each of them backs off from it. When it starts, it connects to them and
# authenticates: that must end their backoff, so every peer sees it up within a few
# heartbeat rounds (here 2.5 s at 250 ms), not after the backoff (before this test: up to
# 64 rounds, 16 s here; a 32-node bench burst saw its last node stay half-connected 120 s).
# timeout: 150
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

M=$SCRATCH/model
cluster_model "$M" 1 2
cluster_up --nodes 3 --model "$M" \
	--mows-args "--max-memory=32M --chunk-size=1M --heartbeat=250ms --peer-timeout=1s --request-timeout=3s"
cluster_wait_mesh 20 1 2 3

out=$(mows_cluster kill node3 2>&1) || fail "mows-cluster kill node3: $out"
# 20 s of refused probes: six or more failures in a row at node1 and node2.
sleep 20
for n in 1 2; do
	cluster_get st "$n" peers 'peer("node3")["state"]'
	[ "$st" != up ] || fail "node$n still sees node3 up 20 s after it stopped"
done

out=$(mows_cluster start node3 2>&1) || fail "mows-cluster start node3: $out"
t0=$(date +%s%N)
cluster_wait_up 20 3 1 2
for n in 1 2; do
	cluster_wait_up 30 "$n" 3
	ms=$((($(date +%s%N) - t0) / 1000000))
	note "node$n sees node3 up $ms ms after node3's daemon started"
	assert_le "$ms" 2500 "ms until node$n sees the late node3 up (heartbeat 250 ms)"
done
note "pass"
