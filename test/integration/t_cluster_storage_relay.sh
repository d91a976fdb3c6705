#!/usr/bin/env bash
# Owners relay their storage reads while they arrive (cache/backing.c backing_read): three
# nodes start cold at once on a slow storage link (40 Mbit/s, 1 MiB chunks), so each owner
# is still reading a chunk from storage when the other two ask it for that chunk.
#   a. crc32.txt only: no CRC of a chunk is known before its last byte, so an owner sends a
#      chunk from storage only once its fill checked it: no storage read is relayed
#      (swarm.owner_relayed stays 0 on every node).
#   b. with crc32.chunks: the owners announce the sidecar's CRC and relay each storage read
#      piece by piece as it lands (owner_relayed > 0); every node reads the right bytes and
#      storage sends at most 1.1x the model.
#   c. an owner whose storage flips a bit of a chunk (MOWS_TEST_FLIP) relays what it reads,
#      but its fill fails the sidecar, so no relay sends that chunk's last byte: the other two
#      nodes, reading at once, still read the right bytes and charge the owner no bad CRC
#      (the owner's own reader would get EIO for that file: t_cluster_poison).
#   d. node2 reads alone: every storage read of a chunk nodes 1 and 3 own is a fill the
#      reader asked for (the owner reads none of it itself), and the owner still sends its
#      bytes while they arrive (net/serve.c serve_fill(): owner_relayed > 0 on nodes 1 and 3);
#      node2 reads none of their chunks from storage itself (swarm.storage_unowned 0).
# timeout: 240
# shellcheck disable=SC2154 # variables set by cluster_get, cluster_sum, ... (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

M=$SCRATCH/model
cluster_model_sums "$M" 2 8
# Plain rendezvous ownership: c picks a chunk node3 owns by that definition (the balanced map
# would move owners when crc32.chunks joins the file list in b).
ARGS="--max-memory=64M --chunk-size=1M $CLUSTER_PEER_ARGS --ownership=rendezvous"
cluster_up --nodes 3 --model "$M" --storage-rate 40mbit --node-rate 400mbit --mows-args "$ARGS"
cluster_wait_mesh 20 1 2 3

restart_all() { # [ENV for node3]
	local i out
	for i in 1 2 3; do
		out=$(mows_cluster kill "node$i" 2>&1) || fail "mows-cluster kill node$i: $out"
	done
	for i in 1 2; do
		out=$(mows_cluster start "node$i" 2>&1) || fail "mows-cluster start node$i: $out"
	done
	out=$(mows_cluster start node3 ${1:+--env "$1"} 2>&1) ||
		fail "mows-cluster start node3 ${1:-}: $out"
	cluster_wait_mesh 20 1 2 3
}
peers_sum() { # VAR EXPR NODE...: EXPR of peers --json summed over NODEs
	local _var=$1 _expr=$2 _t=0 _v i
	shift 2
	for i in "$@"; do
		cluster_get _v "$i" peers "$_expr"
		_t=$((_t + _v))
	done
	printf -v "$_var" '%s' "$_t"
}

cold_read() { # PHASE [LIST]: LIST (1-3) read at once; sets relayed, stopped, sent (storage bytes)
	local sb0 sb1
	cluster_storage_bytes sb0
	cluster_read "$SCRATCH/$1.json" "${2:-1-3}" || fail "$1: a reader failed: $(cat "$SCRATCH/$1.json")"
	cluster_check_sums "$WANT" "${2:-1-3}"
	cluster_storage_bytes sb1
	sent=$((sb1 - sb0))
	peers_sum relayed 'j["swarm"]["owner_relayed"]' 1 2 3
	peers_sum stopped 'j["swarm"]["relays_stopped"]' 1 2 3
}
# sshfs keeps its listing of the model for up to 20 s: every node must list the sidecar
# before its reader runs (the sums include it).
wait_listed() {
	local i end
	for i in 1 2 3; do
		end=$((SECONDS + 60))
		until cluster_exec "node$i" -- ls /mnt/model 2>/dev/null | grep -qx crc32.chunks; do
			[ $SECONDS -lt $end ] || fail "node$i does not list crc32.chunks after 60 s"
			cluster_ctl "node$i" refresh >/dev/null 2>&1 || true
			sleep 1
		done
	done
}

# ---- a. crc32.txt only ----
cold_read a
note "a: crc32.txt only: 3 nodes read the model right; storage sent $sent bytes" \
	"(model $MODEL); owners relayed $relayed storage reads"
assert_eq 0 "$relayed" "a: chunks an owner relayed while its fill ran, with no CRC known before the last byte"

# ---- b. with crc32.chunks ----
"$MOWS_CRC32" --chunks --chunk-size 1M "$M" 2>/dev/null || fail "b: mows-crc32 --chunks $M failed"
cluster_sums "$M" "$WANT"
cluster_model_bytes MODEL "$M"
restart_all
wait_listed
cold_read b
note "b: with crc32.chunks: 3 nodes read the model right; storage sent $sent bytes" \
	"($(awk -v a="$sent" -v b="$MODEL" 'BEGIN { printf "%.2f", a / b }')x the model);" \
	"owners relayed $relayed chunks while storage still sent them"
[ "$relayed" -gt 0 ] || fail "b: no owner relayed a chunk while its storage read ran (owner_relayed 0 on all three)"
assert_le "$sent" $((MODEL * 11 / 10)) "b: bytes the storage host sent (model $MODEL)"

# ---- c. an owner's storage flips a bit ----
cluster_owned_chunk "$M" 3 3 2M # a chunk node3 owns, not its file's first or last
OFF=$((K * MiB + 12345))
restart_all "MOWS_TEST_FLIP=$REL:$OFF"
wait_listed
cold_read c 1-2
grep -q "MOWS_TEST_FLIP: flipped" "$CLUSTER_STATE/node3.log" ||
	fail "c: node3 never read chunk $K of $REL from its storage (the fault never fired)"
peers_sum charged 'peer("node3")["bad_crc"]' 1 2
note "c: node3's storage flips byte $OFF of $REL (chunk $K); nodes 1-2 read the model right;" \
	"$stopped relays were broken off before their last byte; nodes 1-2 charged node3 $charged bad CRCs"
assert_eq 0 "$charged" "c: bad CRCs charged to node3 (no relay sends a chunk that failed its check)"

# ---- d. the owners read only for a peer ----
restart_all
wait_listed
cold_read d 2
peers_sum by_owners 'j["swarm"]["owner_relayed"]' 1 3
note "d: node2 reads alone: storage sent $sent bytes; nodes 1 and 3 relayed $by_owners of the" \
	"chunks node2 asked them to fill while storage still sent them"
[ "$by_owners" -gt 0 ] || fail "d: nodes 1 and 3 sent every chunk node2 asked them to fill only once whole (owner_relayed 0)"
cluster_get unowned 2 peers 'j["swarm"]["storage_unowned"]'
assert_eq 0 "$unowned" "d: chunks node2 read from storage although nodes 1 or 3 own them (a second read of each)"
assert_le "$sent" $((MODEL * 11 / 10)) "d: bytes the storage host sent (model $MODEL)"
note "pass"
