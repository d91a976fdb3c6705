#!/usr/bin/env bash
# Storage in file order (storage_window, cache/cache.h), in a simulated cluster
# (tools/mows-cluster: two nodes, the storage host's link limited to 40 Mbit/s, 1 MiB chunks):
#   a. with storage_window = 1, node1 reads the model cold while node2 owns about half of its
#      chunks: node1's storage reads of its own chunks wait their turn (storage_waits counted
#      in mowsctl status) behind the chunks before them that node2 reads for it, and every
#      byte is right; the model crosses the storage link about once.
# (node2 waits too, when it reads for node1 two chunks in a row that it owns itself.)
# STORAGE_WINDOW=0 runs it with the turns off: then a must fail (the test can fail).
# timeout: 120
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_json, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

WINDOW=${STORAGE_WINDOW:-1}
M=$SCRATCH/model
cluster_model "$M" 2 12
mows_make_manifest "$M"
WANT=$SCRATCH/want.sums
cluster_sums "$M" "$WANT"
cluster_model_bytes MODEL "$M"
note "model: $(wc -l <"$WANT") files, $MODEL bytes; storage_window $WINDOW"

cluster_up --nodes 2 --model "$M" --storage-rate 40mbit \
	--mows-args "--max-memory=64M --chunk-size=1M --readahead-chunks=8 $CLUSTER_PEER_ARGS --storage-window=$WINDOW"
cluster_wait_mesh 20 1 2

# ---- a. node1 reads cold; node2 owns about half of the chunks ----
cluster_storage_bytes sb0
cluster_read "$SCRATCH/a.json" 1 || fail "a: node1's reader failed: $(cat "$SCRATCH/a.json")"
cluster_check_sums "$WANT" 1
cluster_storage_bytes sb1
cluster_get waits1 1 status 'j["storage_waits"]'
cluster_get wait_ms1 1 status 'j["storage_wait_ms"]'
cluster_get waits2 2 status 'j["storage_waits"]'
cluster_sum backing 'j["bytes_from_backing"]' 1 2
cluster_json ms "$SCRATCH/a.json" node1.ms
note "a: node1 read $MODEL bytes in $ms ms, every byte right; its storage reads waited their" \
	"turn $waits1 times ($wait_ms1 ms in all), node2's $waits2 times; the nodes filled $backing bytes from storage," \
	"the storage host sent $((sb1 - sb0))"
[ "$waits1" -ge 1 ] ||
	fail "a: node1's storage reads never waited for the chunk before them (storage_window $WINDOW)"
assert_le "$backing" $((MODEL * 11 / 10)) "a: bytes_from_backing summed over both nodes (model $MODEL)"
note "pass"
