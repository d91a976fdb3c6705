#!/usr/bin/env bash
# crc32.chunks, the per-chunk sidecar (issue 8): a chunk whose storage bytes differ from the
# sidecar gives EIO for that chunk only, before any reader sees it, and `mowsctl verify`
# names it (index and byte range); mows-crc32 --check names it too. A sidecar written while
# mounted is picked up; one whose chunk size does not divide chunk_size is ignored, saying so.
# timeout: 180
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
rel=big.bin
mkdir -p "$B/sub"
rand_file "$B/$rel" $((9 * MiB + 7))
rand_file "$B/sub/other.bin" $((5 * MiB))
"$MOWS_CRC32" --chunks "$B" 2>"$SCRATCH/crc.err" || fail "mows-crc32 --chunks: $(cat "$SCRATCH/crc.err")"
[ -s "$B/crc32.chunks" ] || fail "mows-crc32 --chunks wrote no $B/crc32.chunks"
head -n 2 "$B/crc32.chunks" | grep -qx "mows-crc32-chunks 1 $((4 * MiB))" ||
	fail "crc32.chunks header is not 'mows-crc32-chunks 1 $((4 * MiB))': $(head -n 2 "$B/crc32.chunks")"
grep -q '^[0-9a-f]\{8\} big.bin$' "$B/crc32.txt" || fail "crc32.txt lost its format: $(cat "$B/crc32.txt")"

# dd_chunk FILE K: reads 4 MiB chunk K; prints OK with its sha256, or EIO.
dd_chunk() {
	local out
	out=$(timeout 30 dd if="$1" bs=4M skip="$2" count=1 status=none 2>"$SCRATCH/dd.err" | sha256sum)
	grep -q 'Input/output error' "$SCRATCH/dd.err" && { echo EIO; return; }
	echo "OK ${out%% *}"
}
want_chunk() { echo "OK $(dd if="$1" bs=4M skip="$2" count=1 status=none | sha256sum | cut -d' ' -f1)"; }

# 1. This node's storage flips a bit in chunk 1 of big.bin as it is read.
M=$SCRATCH/mnt
MOWS_TEST_FLIP=$rel:$((4 * MiB + 4321)) mows_mount "$B" "$M" --verify=file
assert_eq "$(want_chunk "$B/$rel" 0)" "$(dd_chunk "$M/$rel" 0)" "chunk 0 of $rel"
assert_eq EIO "$(dd_chunk "$M/$rel" 1)" "chunk 1 of $rel (its storage flips a bit)"
assert_eq "$(want_chunk "$B/$rel" 2)" "$(dd_chunk "$M/$rel" 2)" "chunk 2 of $rel"
assert_eq EIO "$(dd_chunk "$M/$rel" 1)" "chunk 1 of $rel, read again"
assert_cmp "$B/sub/other.bin" "$M/sub/other.bin"
grep -q "chunk 1 of $rel (bytes 4194304-8388607) fails crc32.chunks" "$MOWS_LOG" ||
	fail "daemon log does not name chunk 1 of $rel and its bytes: $(grep -i chunk "$MOWS_LOG" | tail -n 3)"
grep -q "MOWS_TEST_FLIP: flipped" "$MOWS_LOG" || fail "the test fault never fired"
# A file read whole through mmap: SIGBUS, never the flipped byte.
out=$(timeout 30 "$PYTHON" "$MOWS_IT/helpers.py" sha256 --mmap "$M/$rel" 2>&1)
rc=$?
[ $rc -eq 135 ] || fail "mmap read of $rel: status $rc, expected SIGBUS (135): $out"
out=$(mows_ctl verify "$M/$rel" 2>&1)
rc=$?
[ $rc -eq 1 ] || fail "mowsctl verify $rel: status $rc, expected 1: $out"
[[ $out == *"bad chunk 1 of $rel: bytes 4194304-8388607"* ]] ||
	fail "mowsctl verify does not name chunk 1 and its byte range: $out"
note "mowsctl verify: $(echo "$out" | tr '\n' '|')"
mows_ctl --json verify "$M/$rel" >"$SCRATCH/v.json" 2>&1
"$PYTHON" - "$SCRATCH/v.json" <<'PY' || fail "mowsctl --json verify: $(cat "$SCRATCH/v.json")"
import json, sys
line = [l for l in open(sys.argv[1]) if l.strip()][0]
v = json.loads(line[2:] if line.startswith(". ") else line)
b = v["bad_chunks"]
assert v["result"] == "mismatch" and len(b) == 1, v
assert b[0]["chunk"] == 1 and b[0]["first_byte"] == 4194304 and b[0]["last_byte"] == 8388607, b
PY
out=$(mows_ctl verify "$M/sub/other.bin" 2>&1) || fail "mowsctl verify of a good file: $out"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"

# 2. mows-crc32 --check names the chunk of a file that went bad on disk.
cp "$B/$rel" "$SCRATCH/orig.bin"
py flipbyte "$B/$rel" $((8 * MiB + 1))
out=$("$MOWS_CRC32" --check "$B" 2>&1)
rc=$?
[ $rc -eq 1 ] || fail "mows-crc32 --check after a flip: status $rc: $out"
[[ $out == *"FAILED $rel: chunk 2 (bytes 8388608-9437190)"* ]] ||
	fail "mows-crc32 --check does not name chunk 2 and its bytes: $out"

# 3. A sidecar written while mounted is used for files opened afterwards.
rm -f "$B/crc32.chunks"
cp "$SCRATCH/orig.bin" "$B/$rel"
"$MOWS_CRC32" "$B" 2>/dev/null || fail "mows-crc32 $B failed"
M=$SCRATCH/mnt2
mows_mount "$B" "$M" --verify=file
assert_cmp "$B/sub/other.bin" "$M/sub/other.bin"
"$MOWS_CRC32" --chunks "$B" 2>/dev/null || fail "mows-crc32 --chunks $B failed"
# Now the disk goes bad in chunk 0 of big.bin, after both manifests were written.
py flipbyte "$B/$rel" 17
assert_eq EIO "$(dd_chunk "$M/$rel" 0)" "chunk 0 of $rel after the sidecar was written while mounted"
assert_eq "$(want_chunk "$B/$rel" 1)" "$(dd_chunk "$M/$rel" 1)" "chunk 1 of $rel"
grep -q "crc32.chunks: 2 files in chunks of 4194304 bytes" "$MOWS_LOG" ||
	fail "the daemon did not log loading the new sidecar: $(grep -i chunks "$MOWS_LOG" | tail -n 3)"
mows_umount "$M"

# 4. Chunk sizes: a 1 MiB sidecar serves a 4 MiB daemon (combined); a 4 MiB one cannot
# serve a 1 MiB daemon and is ignored with a clear line (whole files are still checked).
cp "$SCRATCH/orig.bin" "$B/$rel"
"$MOWS_CRC32" --chunks --chunk-size 1M "$B" 2>/dev/null || fail "mows-crc32 --chunks --chunk-size 1M failed"
M=$SCRATCH/mnt3
MOWS_TEST_FLIP=$rel:$((6 * MiB)) mows_mount "$B" "$M" --verify=file
assert_eq EIO "$(dd_chunk "$M/$rel" 1)" "chunk 1 of $rel, 1 MiB sidecar, 4 MiB chunk_size"
assert_eq "$(want_chunk "$B/$rel" 0)" "$(dd_chunk "$M/$rel" 0)" "chunk 0 of $rel, 1 MiB sidecar"
grep -q "combined into chunk_size chunks" "$MOWS_LOG" || fail "no log line saying the 1 MiB sidecar was combined"
mows_umount "$M"
"$MOWS_CRC32" --chunks "$B" 2>/dev/null || fail "mows-crc32 --chunks failed"
M=$SCRATCH/mnt4
mows_mount "$B" "$M" --verify=file --chunk-size=1M
assert_cmp "$B/$rel" "$M/$rel"
grep -q "does not divide chunk_size 1048576.*per-chunk checks are off" "$MOWS_LOG" ||
	fail "no clear line for a sidecar whose chunk size does not divide chunk_size: $(grep -i chunks "$MOWS_LOG" | tail -n 3)"
mows_umount "$M"
