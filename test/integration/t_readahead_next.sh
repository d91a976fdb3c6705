#!/usr/bin/env bash
# Readahead that runs on into the next file (issue 7, item 4: the join's file ends). A reader
# that reads a directory's files one after another in name order (a model loader and its
# shards) finds the next file's first chunks filled before it opens it: when a sequential
# read's window (readahead_chunks) reaches past a file's end, the rest of the window goes to
# the next file by name, never more than the window, nothing after the last file. Seen from
# outside: `mowsctl status --json` readahead_next_file (chunk fills started in a next file),
# bytes_from_backing (the storage reads) and the next file's cached_bytes, all before the
# reader opens that file. Every byte read is compared with the backing file.
# timeout: 120
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
rand_file "$B/m/a.bin" $((2 * MiB))    # 2 chunks
rand_file "$B/m/b.bin" $((8 * MiB))    # 8 chunks
rand_file "$B/m/c.bin" $((3 * MiB))    # 3 chunks, the last file of m/
rand_file "$B/z.bin" $((2 * MiB))      # another directory: never read ahead
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
# settled WANT_AHEAD WANT_B WANT_C: the readahead's fills have landed.
settled() { status_of; [ "$ahead" = "$1" ] && [ "$b_cached" = "$2" ] && [ "$c_cached" = "$3" ]; }

status_of
assert_eq 0 "$ahead" "readahead_next_file before any read"
backing0=$backing

# 1. a.bin read to its end: its last chunk's window (4) runs 4 chunks past the end, into
#    b.bin's chunks 0-3, before anyone opens b.bin.
assert_cmp "$B/m/a.bin" "$M/m/a.bin"
retry_until 10 settled 4 $((4 * MiB)) 0 ||
	fail "after reading a.bin: readahead_next_file $ahead (want 4), b.bin cached $b_cached (want $((4 * MiB))), c.bin cached $c_cached (want 0): the window did not run on into b.bin's first 4 chunks"
assert_eq $((6 * MiB)) $((backing - backing0)) "bytes read from the backing for a.bin and b.bin's first 4 chunks (the window, no more)"
note "before b.bin was opened: readahead_next_file $ahead, b.bin cached $b_cached bytes"

# 2. b.bin (its first chunks are hits now), then c.bin the same way: the window past b.bin's
#    end fills all 3 chunks of c.bin, the last file of m/ (4 - 3: nothing after it).
assert_cmp "$B/m/b.bin" "$M/m/b.bin"
retry_until 10 settled 7 $((8 * MiB)) $((3 * MiB)) ||
	fail "after reading b.bin: readahead_next_file $ahead (want 7), c.bin cached $c_cached (want $((3 * MiB)))"
assert_eq $((13 * MiB)) $((backing - backing0)) "bytes read from the backing for a.bin, b.bin, c.bin"
assert_cmp "$B/m/c.bin" "$M/m/c.bin"
sleep 0.5
status_of
assert_eq 7 "$ahead" "readahead_next_file after c.bin, the last file of m/"
assert_eq $((13 * MiB)) $((backing - backing0)) "bytes read from the backing after c.bin (z.bin, in another directory, not read ahead)"
mows_umount "$M"
note "ok"
