#!/usr/bin/env bash
# The fault matrix through a peer: two mows nodes in their own network namespaces
# (198.18.200.1 and .2), sharing chunks. Node A's storage is test/bin/faultfs over the
# clean files, with faults on every chunk of a file (EIO, early EOF, short reads, a flipped
# bit) or on the first two reads of a file (a 1 s stall, a 6 s stall; two, so that A's fill
# threads are free again soon); node B's storage is the clean files.
# Every read on B, with read() and with mmap, must give all bytes right (B's own storage is
# fine: a bad peer costs B a retry, never an error or a wrong byte), and no single read()
# or page touch on B may wait longer than fill_timeout (3 s) plus 1.5 s. Each file is read
# once B sees A up; A's faultfs log must show that A read (and faulted) the file for B.
# Flipped bits come in two setups (issue 8):
#   flipc  the file has a crc32.chunks entry: B checks each chunk from A against it, charges
#          A and takes the chunk from its own storage: all bytes right, no error.
#   flip   crc32.txt only: with verify = file, B hands its reader A's chunks before it can
#          have the whole-file CRC, so what is promised is that the reader never reaches
#          EOF with them: all bytes right, or EIO / SIGBUS before the end (read on past a
#          wrong byte, faultread.py through). Then B refills the file from its own storage
#          and charges A (BADCRC), and a second read on B is all right. verify = strict
#          checks the whole file before the first read returns: all bytes right.
# VERIFY=strict in the environment runs it with verify = strict (default file).
# timeout: 300
. "$(dirname "$0")/lib.sh"
need_cmd ip nsenter

FT=3
LIMIT=4.5
SRC=$SCRATCH/src
FF=$SCRATCH/ff
RULES=$SCRATCH/rules
NS_A=mowsti$$a
NS_B=mowsti$$b
IP_A=198.18.200.1
IP_B=198.18.200.2
nchunks=16 # A owns none of 16 chunks with odds 1/65536: every file goes through A
size=$((nchunks * MiB - 4321))
# stalls last: they hold A's fill threads. Flipped bits get A quarantined by B (3 bad
# chunks), so B starts afresh after each such case (a new B has no quarantine to remember).
faults=(eio eof short flipc flip stall1 stall)
modes=(read mmap)

_fp_exit() {
	local rc=$?
	ip netns del "$NS_A" 2>/dev/null
	ip netns del "$NS_B" 2>/dev/null
	(exit "$rc")
	_mows_cleanup
}
trap _fp_exit EXIT

ip netns add "$NS_A" || fail "ip netns add $NS_A failed"
ip netns add "$NS_B" || fail "ip netns add $NS_B failed"
ip link add "ti$$a" netns "$NS_A" type veth peer name "ti$$b" netns "$NS_B" ||
	fail "cannot make a veth pair between $NS_A and $NS_B"
ip -n "$NS_A" addr add "$IP_A/24" dev "ti$$a"
ip -n "$NS_B" addr add "$IP_B/24" dev "ti$$b"
for ns in "$NS_A" "$NS_B"; do
	ip -n "$ns" link set lo up
	ip -n "$ns" link set "ti$$${ns: -1}" up || fail "cannot bring up the veth in $ns"
done

mkdir -p "$SRC"
: >"$RULES.new"
for f in "${faults[@]}"; do
	for mode in "${modes[@]}"; do
		file=$f-$mode.bin
		rand_file "$SRC/$file" "$size"
		case $f in
		eio) echo "$file 0 - eio" ;;
		eof) echo "$file 0 - eof" ;;
		short) echo "$file 0 - short" ;;
		stall1) echo "$file 0 - stall 1 times=2" ;;
		stall) echo "$file 0 - stall 6 times=2" ;;
		flip | flipc) for ((k = 0; k < nchunks; k++)); do echo "$file $((k * MiB + 1000)) 1 flip"; done ;;
		esac >>"$RULES.new"
	done
done
mv "$RULES.new" "$RULES"
"$MOWS_CRC32" --chunks --chunk-size 1M "$SRC" >/dev/null || fail "mows-crc32 --chunks $SRC failed"
# flip-*.bin has only its crc32.txt line; flipc-*.bin keeps its crc32.chunks line too.
grep -v ' flip-' "$SRC/crc32.chunks" >"$SRC/crc32.chunks.new" && mv "$SRC/crc32.chunks.new" "$SRC/crc32.chunks"
grep -q ' flipc-read.bin ' "$SRC/crc32.chunks" && ! grep -q ' flip-read.bin ' "$SRC/crc32.chunks" ||
	fail "crc32.chunks does not list flipc-*.bin alone: $(cut -c1-60 "$SRC/crc32.chunks")"
head -c 32 /dev/urandom >"$SCRATCH/secret"
chmod 600 "$SCRATCH/secret"
faultfs_mount "$SRC" "$FF" "$RULES"

# mows-fuse in a node's network namespace only (the mount stays visible here).
real_fuse=$MOWS_FUSE
in_ns() { # NS: a mows-fuse that runs in the network namespace NS
	printf '#!/bin/sh\nexec nsenter --net=/run/netns/%s %s "$@"\n' "$1" "$real_fuse" >"$SCRATCH/fuse-$1"
	chmod +x "$SCRATCH/fuse-$1"
	MOWS_FUSE=$SCRATCH/fuse-$1
}
common=(--chunk-size=1M --max-memory=64M --fill-timeout=${FT}s --secret-file="$SCRATCH/secret" --verify="${VERIFY:-file}"
	--heartbeat=200ms --peer-timeout=2s --request-timeout=1s)
in_ns "$NS_A"
mows_mount "$FF" "$SCRATCH/mnt-a" "${common[@]}" --node-id=a --listen="$IP_A:7070" --peers="$IP_B:7070"
SOCK_A=$MOWS_SOCK
PID_A=$MOWS_PID
MB=$SCRATCH/mnt-b
start_b() {
	in_ns "$NS_B"
	mows_mount "$SRC" "$MB" "${common[@]}" --node-id=b --listen="$IP_B:7070" --peers="$IP_A:7070"
	SOCK_B=$MOWS_SOCK
	PID_B=$MOWS_PID
	MOWS_FUSE=$real_fuse
}
start_b

bad_crc() { # SOCK NODE: NODE's BADCRC as the node behind SOCK counts it
	"$MOWS_CTL" -s "$1" peers --json 2>/dev/null | "$PYTHON" -c '
import json, sys
j = json.load(sys.stdin)
print(next((p["bad_crc"] for p in j["peers"] if p["node_id"] == sys.argv[1]), -1))' "$2"
}
peer_state() { # SOCK NODE
	"$MOWS_CTL" -s "$1" peers --json 2>/dev/null | "$PYTHON" -c '
import json, sys
j = json.load(sys.stdin)
print(next((p["state"] for p in j["peers"] if p["node_id"] == sys.argv[1]), "none"))' "$2"
}
wait_up() {
	local end=$((SECONDS + 20))
	until [ "$(peer_state "$SOCK_B" a)" = up ] && [ "$(peer_state "$SOCK_A" b)" = up ]; do
		[ $SECONDS -ge $end ] && fail "the nodes do not see each other up within 20 s: B sees A '$(peer_state "$SOCK_B" a)', A sees B '$(peer_state "$SOCK_A" b)'"
		sleep 0.2
	done
	note "both nodes up"
}
wait_up
restart_b() {
	"$MOWS_CTL" -s "$SOCK_B" peers 2>&1 | while read -r l; do note "B peers: $l"; done
	mows_umount "$MB" "$PID_B"
	assert_eq 0 "$MOWS_EXIT" "node B's mows-fuse exit status"
	start_b
	wait_up
}

# flip with crc32.txt only (verify = file), after the first read of FILE on B: when it
# got wrong bytes (or an error), B must have charged A, and a second read is all right.
flip_after() { # FILE MODE OUTCOME BADCRC_BEFORE
	local file=$1 mode=$2 outcome=$3 bad0=$4 bad res end
	[ "$outcome" = ok ] && return
	end=$((SECONDS + 10))
	until bad=$(bad_crc "$SOCK_B" a); [ "$bad" -gt "$bad0" ] || [ $SECONDS -ge $end ]; do
		sleep 0.2
	done
	[ "$bad" -gt "$bad0" ] ||
		soft_fail "$file ($mode): B's reader got '$outcome' from A's flipped chunks, but B did not charge A (BADCRC $bad0 -> $bad)"
	note "$file ($mode): B charged A (BADCRC $bad0 -> $bad)"
	res=$("$PYTHON" "$MOWS_IT/faultread.py" "$mode" "$MB/$file" "$SRC/$file" "$LIMIT" 2>&1)
	note "$file ($mode) on B, read again: $res"
	[[ $res == "ok "* ]] || soft_fail "$file ($mode): B's second read after refilling from its own storage is not all right: $res"
}

for f in "${faults[@]}"; do
	for mode in "${modes[@]}"; do
		file=$f-$mode.bin
		# A's fill threads may still sit in the last file's 6 s stalls: let them end, or B
		# would get this file from its own storage without asking A.
		[ "$f" = stall ] && [ "$mode" != "${modes[0]}" ] && sleep 6
		through=
		[ "$f" = flip ] && [ "${VERIFY:-file}" = file ] && through=through
		bad0=$(bad_crc "$SOCK_B" a)
		res=$("$PYTHON" "$MOWS_IT/faultread.py" "$mode" "$MB/$file" "$SRC/$file" "$LIMIT" $through 2>&1)
		read -r outcome off wait _ <<<"$res"
		note "$file ($mode) on B, chunks from A's faulty storage: $res"
		grep -q " $file " "$FAULTFS_LOG" ||
			soft_fail "$file: A never read it from its faulty storage for B (B fetched no chunk from A)"
		[ -n "$through" ] && flip_after "$file" "$mode" "$outcome" "$bad0"
		case $outcome in
		ok) ;;
		wrong+eio | wrong+sigbus | eio | sigbus)
			[ -n "$through" ] ||
				soft_fail "$file ($mode, $f on A): B got '$outcome' at offset $off though its own storage is fine ($res)" ;;
		wrong) soft_fail "$file ($mode, $f on A): WRONG BYTE served on B at offset $off${through:+, and the reader on B reached EOF without an error}" ;;
		hang) soft_fail "$file ($mode, $f on A): a step on B waited more than ${LIMIT}s: $res"
			[[ $res == *"then wrong"* ]] && soft_fail "$file ($mode, $f): WRONG BYTE served after the wait: $res" ;;
		*) soft_fail "$file ($mode, $f on A): B got '$outcome' at offset $off though its own storage is fine ($res)" ;;
		esac
		[ "$outcome" = hang ] || awk -v w="$wait" -v l="$LIMIT" 'BEGIN { exit !(w <= l) }' ||
			soft_fail "$file ($mode, $f on A): a step on B waited ${wait}s, more than fill_timeout ${FT}s + slack"
		[ "$(peer_state "$SOCK_B" a)" = quarantined ] && restart_b
	done
done
"$MOWS_CTL" -s "$SOCK_B" peers 2>&1 | while read -r l; do note "B peers: $l"; done

soft_done
mows_umount "$MB"
assert_eq 0 "$MOWS_EXIT" "node B's mows-fuse exit status"
mows_umount "$SCRATCH/mnt-a" "$PID_A"
