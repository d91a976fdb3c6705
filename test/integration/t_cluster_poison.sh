#!/usr/bin/env bash
# A poisoned node (issue 8): in a four-node cluster (tools/mows-cluster), node4's storage
# flips one bit in one chunk of one file (the test-only fault MOWS_TEST_FLIP=REL:OFFSET),
# a chunk that node4 owns, so the other nodes ask node4 for it.
#   a. crc32.txt only: nodes 1-3 read the whole model at once. Without a sidecar nobody can
#      tell node4's chunk is wrong until the whole file is checked, so a reader may have had
#      it: such a reader gets EIO at the end of the file, never EOF with wrong bytes (every
#      first read is either all right bytes or EIO). Each node refills the file from its own
#      storage only and charges node4 (BADCRC in mowsctl peers); a second read everywhere is
#      all right bytes with no EIO; node4 itself, whose own storage fails, gets EIO.
#   b. with crc32.chunks: node4 catches the bad chunk before it is cached, served or sent;
#      nodes 1-3 read every byte right on the first read, nobody charges anyone.
# timeout: 300
# shellcheck disable=SC2154 # variables set by cluster_get (printf -v)
. "$(dirname "$0")/lib.sh"
. "$MOWS_IT/lib_cluster.sh"
cluster_need

M=$SCRATCH/model
cluster_model_sums "$M" 2 16

# Plain rendezvous ownership: the chunk node4 owns is picked below by that definition (the
# balanced map would move owners when crc32.chunks joins the file list in b).
ARGS="--max-memory=96M --chunk-size=1M $CLUSTER_PEER_ARGS --log-level=debug --ownership=rendezvous"
cluster_up --nodes 4 --model "$M" --mows-args "$ARGS"
cluster_wait_mesh 20 1 2 3 4

cluster_owned_chunk "$M" 4 4 4M # a chunk node4 owns, not its file's first or last
OFF=$((K * MiB + 54321))
note "node4's storage flips byte $OFF of $REL (chunk $K of $NCHUNKS, owned by node4)"

restart() { # NODE [ENV]
	local out
	out=$(mows_cluster kill "$1" 2>&1) || fail "mows-cluster kill $1: $out"
	out=$(mows_cluster start "$1" ${2:+--env "$2"} 2>&1) || fail "mows-cluster start $1 ${2:-}: $out"
}
# sums_right LIST: how many nodes of LIST printed the backing's sums.
sums_right() {
	local i n=0
	for i in $(cluster_list "$1"); do
		diff -q "$WANT" "$CLUSTER_STATE/run-node$i.out" >/dev/null && n=$((n + 1))
	done
	echo $n
}
bad_crc_of_node4() { # VAR: node4's BADCRC summed over nodes 1-3
	local _t=0 _v i
	for i in 1 2 3; do
		cluster_get _v "$i" peers 'peer("node4")["bad_crc"]'
		_t=$((_t + _v))
	done
	printf -v "$1" '%s' "$_t"
}

# ---- a. crc32.txt only ----
restart node4 "MOWS_TEST_FLIP=$REL:$OFF"
cluster_wait_mesh 20 1 2 3 4
cluster_evict 15 1 2 3 4
cluster_read "$SCRATCH/a1.json" 1-3
right1=0 eio1=0
for i in 1 2 3; do
	cluster_json rc "$SCRATCH/a1.json" "node$i.exit"
	if [ "$rc" -eq 0 ]; then
		diff -q "$WANT" "$CLUSTER_STATE/run-node$i.out" >/dev/null ||
			fail "a: node$i's first read reached EOF of every file with wrong bytes: $(diff "$WANT" "$CLUSTER_STATE/run-node$i.out" | head -n 4)"
		right1=$((right1 + 1))
	else
		grep -q "$REL: Input/output error" "$CLUSTER_STATE/run-node$i.out" ||
			fail "a: node$i's first read failed (status $rc), but not with EIO on $REL: $(head -c 600 "$CLUSTER_STATE/run-node$i.out")"
		# Every other file was read right.
		diff <(grep -v " ./$REL\$" "$WANT") <(grep -v "$REL" "$CLUSTER_STATE/run-node$i.out") >/dev/null ||
			fail "a: node$i read other files wrong: $(diff <(grep -v " ./$REL\$" "$WANT") <(grep -v "$REL" "$CLUSTER_STATE/run-node$i.out") | head -n 4)"
		eio1=$((eio1 + 1))
	fi
done
grep -q "MOWS_TEST_FLIP: flipped" "$CLUSTER_STATE/node4.log" ||
	fail "a: node4 never read chunk $K of $REL from its storage (the fault never fired)"
bad_crc_of_node4 charged
[ "$charged" -gt 0 ] || fail "a: nodes 1-3 read the model and nobody charged node4:$(_cluster_peers_text 1 2 3)"
for i in 1 2 3; do
	for n in node1 node2 node3; do
		[ "$n" = "node$i" ] && continue
		cluster_get v "$i" peers "peer(\"$n\")[\"bad_crc\"]"
		assert_eq 0 "$v" "a: bad CRCs node$i charged to $n, whose storage is fine"
	done
	grep -q "crc32 mismatch: $REL.*reading it again from this node's storage" "$CLUSTER_STATE/node$i.log" ||
		grep -q "verified $REL" "$CLUSTER_STATE/node$i.log" ||
		fail "a: node$i neither refilled nor verified $REL"
	grep -q "crc32 mismatch: $REL.*its reads fail with EIO" "$CLUSTER_STATE/node$i.log" &&
		fail "a: node$i turned $REL bad though its own storage is fine"
done
cluster_evict 15 1 2 3
cluster_read "$SCRATCH/a2.json" 1-3 || fail "a: second read failed: $(cat "$SCRATCH/a2.json")"
cluster_check_sums "$WANT" 1-3
# node4's own storage fails the manifest: its read of REL ends in EIO, never the bytes.
out=$(cluster_exec node4 -- sh -c "cat /mnt/model/$REL >/dev/null" 2>&1) &&
	fail "a: node4 read all of $REL though its storage flips a bit in it"
[[ $out == *"Input/output error"* ]] || fail "a: node4's read of $REL failed without EIO: $out"
note "a: first read: $right1 of 3 nodes all right, $eio1 EIO at the end of $REL (had node4's chunk), 0 wrong; second read right on 3 of 3 with no EIO; node4 charged $charged times; node4 itself gets EIO"

# ---- b. with crc32.chunks ----
"$MOWS_CRC32" --chunks --chunk-size 1M "$M" 2>/dev/null || fail "b: mows-crc32 --chunks $M failed"
# The logs go on from a's: look only at what each node logs from now on.
declare -A LINES
for i in 1 2 3 4; do LINES[$i]=$(wc -l <"$CLUSTER_STATE/node$i.log"); done
blog() { tail -n +$((LINES[$1] + 1)) "$CLUSTER_STATE/node$1.log"; }
for i in 1 2 3; do restart "node$i"; done
restart node4 "MOWS_TEST_FLIP=$REL:$OFF"
cluster_wait_mesh 20 1 2 3 4
bad_crc_of_node4 charged0
cluster_read "$SCRATCH/b.json" 1-3 || fail "b: a reader failed: $(cat "$SCRATCH/b.json")"
cluster_check_sums "$WANT" 1-3
blog 4 | grep -q "crc32.chunks: .* files in chunks of 1048576 bytes" ||
	fail "b: node4 did not load crc32.chunks"
blog 4 | grep -q "chunk $K of $REL (bytes $((K * MiB))-$(((K + 1) * MiB - 1))) fails crc32.chunks" ||
	fail "b: node4 did not catch chunk $K of $REL against crc32.chunks"
bad_crc_of_node4 charged
assert_eq 0 "$((charged - charged0))" "b: chunks charged to node4 (it never sent the bad one)"
for i in 1 2 3; do
	blog "$i" | grep -q "crc32 mismatch: $REL" &&
		fail "b: node$i saw a whole-file mismatch of $REL: the bad chunk reached it"
done
note "b: node4 caught chunk $K of $REL before serving it; nodes 1-3 read every byte right the first time"
note "pass"
