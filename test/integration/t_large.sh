#!/usr/bin/env bash
# A file far larger than the cache (200 MiB through 64 MiB of 1 MiB chunks) reads back
# correctly with read() and with mmap(), and the daemon's memory stays within max_memory.
# timeout: 240
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
size=$((200 * MiB + 12345))
max=$((64 * MiB))
rand_file "$B/large.bin" $size
want=$(sha256sum <"$B/large.bin" | cut -d' ' -f1)

mows_mount "$B" "$M" --max-memory=64M --chunk-size=1M

# Samples memory.used every 0.2 s while a reader runs; the worst is checked afterwards.
sample_memory() { # OUT
	while :; do
		"$MOWS_CTL" -s "$MOWS_SOCK" status --json 2>/dev/null |
			"$PYTHON" -c 'import json, sys; print(json.load(sys.stdin)["memory"]["used"])' 2>/dev/null >>"$1"
		sleep 0.2
	done
}
sample_memory "$SCRATCH/used.txt" &
sampler=$!
mows_track_pid $sampler

got=$(py sha256 "$M/large.bin" 2>&1) || fail "read(): $got"
assert_eq "$want" "$got" "sha256 of large.bin read with read()"

drop_caches
got=$(py sha256 --mmap "$M/large.bin" 2>&1) || fail "mmap: $got"
assert_eq "$want" "$got" "sha256 of large.bin read through mmap"
kill $sampler
wait $sampler 2>/dev/null

[ -s "$SCRATCH/used.txt" ] || fail "no memory.used sample from mowsctl status --json during the reads"
worst=$(sort -n "$SCRATCH/used.txt" | tail -n 1)
note "memory.used peaked at $worst of $max over $(wc -l <"$SCRATCH/used.txt") samples"
assert_le "$worst" $max "memory.used sampled during the reads vs max_memory"

mows_status_json "$SCRATCH/st.json"
jget mmax "$SCRATCH/st.json" 'j["memory"]["max"]'
jget used "$SCRATCH/st.json" 'j["memory"]["used"]'
jget csize "$SCRATCH/st.json" 'j["chunks"]["size"]'
jget slots "$SCRATCH/st.json" 'j["chunks"]["slots"]'
jget cached "$SCRATCH/st.json" 'j["chunks"]["cached"]'
jget frombacking "$SCRATCH/st.json" 'j["bytes_from_backing"]'
assert_eq $max "$mmax" "memory.max"
assert_le "$used" "$mmax" "memory.used vs memory.max"
assert_eq $MiB "$csize" "chunks.size"
assert_le "$cached" "$slots" "chunks.cached vs chunks.slots"
assert_le $((slots * csize)) "$mmax" "chunks.slots * chunks.size vs memory.max"
# Two full passes over a file three times the cache cannot come from the cache alone.
assert_le $((size + size / 2)) "$frombacking" "bytes_from_backing after two passes"

mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
