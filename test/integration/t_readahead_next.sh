#!/usr/bin/env bash
# Readahead that runs on into the next file (issue 7, item 4: the join's file ends). A reader
# that reads a directory's files one after another in name order (a model loader and its
# shards) finds the next file's first chunks filled before it opens it: when a sequential
# read's window (readahead_chunks) reaches past a file's end, the rest of the window goes to
# the next file by name, never more than the window, nothing after the last file. Seen from
# outside: `mowsctl status --json` readahead_next_file (chunk fills started in a next file),
# bytes_from_backing (the storage reads) and the next file's cached_bytes, all before the
# reader opens that file. Where a symlink's order differs from the directory's (a Hugging
# Face cache), the order the reader took is followed. Every byte read is compared with the
# backing file.
# timeout: 120
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
rand_file "$B/m/a.bin" $((2 * MiB))    # 2 chunks
rand_file "$B/m/b.bin" $((8 * MiB))    # 8 chunks
rand_file "$B/m/c.bin" $((3 * MiB))    # 3 chunks, the last file of m/
rand_file "$B/z.bin" $((2 * MiB))      # another directory: never read ahead
# A Hugging Face cache: blobs named by hash, and a snapshot whose links name them in
# another order (link order b2 b1 b4 b3; the blobs' own order b1 b2 b3 b4).
for k in 1 2 3 4; do rand_file "$B/hub/blobs/b$k" $((6 * MiB)); done
mkdir -p "$B/hub/snapshots/r"
ln -s ../../blobs/b2 "$B/hub/snapshots/r/m1"
ln -s ../../blobs/b1 "$B/hub/snapshots/r/m2"
ln -s ../../blobs/b4 "$B/hub/snapshots/r/m3"
ln -s ../../blobs/b3 "$B/hub/snapshots/r/m4"
mows_mount "$B" "$M" --chunk-size=1M --readahead-chunks=4 --max-memory=64M
S=$SCRATCH/status.json

# status_of: readahead_next_file, bytes_from_backing, and cached_bytes of b.bin and c.bin.
status_of() {
	mows_status_json "$S"
	jget ahead "$S" 'j["readahead_next_file"]'
	jget backing "$S" 'j["bytes_from_backing"]'
	jget b_cached "$S" '(file("m/b.bin") or {}).get("cached_bytes", 0)'
	jget c_cached "$S" '(file("m/c.bin") or {}).get("cached_bytes", 0)'
}
# settled: the readahead's fills have landed (two samples 0.3 s apart agree, within 10 s).
# How far the window runs past a file's end depends on the last read the kernel hands over in
# order: FUSE workers may take two reads of the last chunks in either order, and a read out
# of order is not sequential, so a window may end a step short. The checks below allow that
# (at least 1 chunk carried, never more than the window) and are exact where it cannot vary.
settled() {
	local prev="" cur t
	for ((t = 0; t < 34; t++)); do
		status_of
		cur="$ahead $backing $b_cached $c_cached"
		[ "$cur" = "$prev" ] && return 0
		prev=$cur
		sleep 0.3
	done
	return 1
}

status_of
assert_eq 0 "$ahead" "readahead_next_file before any read"
backing0=$backing

# 1. a.bin read to its end: its last chunk's window (4) runs up to 4 chunks past the end,
#    into b.bin's first chunks, before anyone opens b.bin.
assert_cmp "$B/m/a.bin" "$M/m/a.bin"
settled || fail "after reading a.bin the cache never settled (last: readahead_next_file $ahead)"
assert_le 1 "$ahead" "readahead_next_file after a.bin: the window did not run on into b.bin"
assert_le "$ahead" 4 "readahead_next_file after a.bin (the window is 4 chunks)"
assert_eq $((ahead * MiB)) "$b_cached" "b.bin's bytes cached before it was opened (the chunks carried)"
assert_eq 0 "$c_cached" "c.bin's bytes cached after a.bin (the window reached b.bin only)"
assert_eq $((2 * MiB + b_cached)) $((backing - backing0)) "bytes read from the backing for a.bin and the chunks carried into b.bin (the window, no more)"
note "before b.bin was opened: readahead_next_file $ahead, b.bin cached $b_cached bytes"
ahead_a=$ahead

# 2. b.bin (its first chunks are hits now), then c.bin the same way: the window past b.bin's
#    end fills up to all 3 chunks of c.bin, the last file of m/ (nothing after it).
assert_cmp "$B/m/b.bin" "$M/m/b.bin"
settled || fail "after reading b.bin the cache never settled"
assert_eq $((8 * MiB)) "$b_cached" "b.bin's bytes cached after it was read"
assert_le "$MiB" "$c_cached" "c.bin's bytes cached after b.bin: the window did not run on into c.bin"
assert_le "$c_cached" $((3 * MiB)) "c.bin's bytes cached after b.bin"
assert_eq $((ahead_a + c_cached / MiB)) "$ahead" "readahead_next_file after b.bin"
assert_eq $((10 * MiB + c_cached)) $((backing - backing0)) "bytes read from the backing for a.bin, b.bin and what was carried into c.bin"
ahead_b=$ahead
assert_cmp "$B/m/c.bin" "$M/m/c.bin"
sleep 0.5
status_of
assert_eq "$ahead_b" "$ahead" "readahead_next_file after c.bin, the last file of m/"
assert_eq $((13 * MiB)) $((backing - backing0)) "bytes read from the backing after c.bin (z.bin, in another directory, not read ahead)"

# 3. The order readers take: a reader of the blobs in their own order (find | sort) reads
#    b1; the first guess follows the links (after b1's link m2 comes m3, so b4), and the
#    reader then starts b2, the directory's guess: from then on the directory's order is
#    followed, so at the end of b2 the window goes to b3 (the links' next, b1, is cached).
cached_of() { mows_status_json "$S"; jget "$1" "$S" "(file(\"hub/blobs/$2\") or {}).get(\"cached_bytes\", 0)"; }
assert_cmp "$B/hub/blobs/b1" "$M/hub/blobs/b1"
assert_cmp "$B/hub/blobs/b2" "$M/hub/blobs/b2"
b3_some() { cached_of got b3; [ "$got" -gt 0 ]; }
retry_until 10 b3_some ||
	fail "after reading blobs b1 then b2 in their own order: b3 has $got bytes cached (want 1 to 4 MiB): the readahead did not follow the order the reader took"
sleep 0.5
cached_of got b3
assert_le "$got" $((4 * MiB)) "b3's bytes read ahead (the window is 4 chunks)"
cached_of b4 b4
note "a find|sort reader of a Hugging Face layout: b4 (the links' first guess) $b4 bytes, b3 $got bytes read ahead"
assert_cmp "$B/hub/blobs/b3" "$M/hub/blobs/b3"
mows_umount "$M"
note "ok"
