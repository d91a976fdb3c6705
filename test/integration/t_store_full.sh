#!/usr/bin/env bash
# The cache tmpfs full (something else filled it): a fill that cannot take its memory fails
# with ENOSPC before any byte is written, so readers get EIO (never SIGBUS, never a wrong
# byte) and the daemon keeps running; once there is room again the same file reads right.
# timeout: 60
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
S=$SCRATCH/store
mkdir -p "$B"
rand_file "$B/a.bin" $((8 * MiB + 3))
mows_mount "$B" "$M" --chunk-size=1M --max-memory=32M --cache-dir="$S" --passthrough=off
mountpoint -q "$S" || fail "the cache tmpfs is not mounted at $S"
# Fill the store's tmpfs to the last byte.
dd if=/dev/zero of="$S/filler" bs=1M 2>/dev/null
avail=$(df --output=avail -B1 "$S" | tail -n 1)
[ "$avail" -lt $((1 * MiB)) ] || fail "could not fill $S ($avail bytes left)"
out=$(cat "$M/a.bin" 2>&1 >/dev/null) && fail "a read succeeded although the cache tmpfs is full"
[[ $out == *"Input/output error"* ]] || fail "expected EIO from a read with the cache tmpfs full, got: $out"
grep -q 'cannot take .* in the cache store' "$MOWS_LOG" || fail "no log line naming the full cache store"
pid_alive "$MOWS_PID" || fail "the daemon died with its cache tmpfs full"
rm -f "$S/filler"
assert_cmp "$B/a.bin" "$M/a.bin"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
exit 0
