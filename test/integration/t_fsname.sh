#!/usr/bin/env bash
# A backing path with commas and a backslash: fsname= is escaped for libfuse's -o parser, so
# the path adds no mount options; the mount serves the files and /proc/mounts shows the path.
# timeout: 60
. "$(dirname "$0")/lib.sh"

B="$SCRATCH/models,allow_root,x-bogus=1\\x"
M=$SCRATCH/mnt
mkdir -p "$B"
rand_file "$B/w.bin" $((MiB + 9))
mows_mount "$B" "$M"
assert_cmp "$B/w.bin" "$M/w.bin"
src=$(awk -v m="$M" '$2 == m { print $1 }' /proc/mounts)
# /proc/mounts writes a backslash as \134.
assert_eq "$B" "$(printf '%b' "${src//\\134/\\\\}")" "mount source (fsname) in /proc/mounts"
opts=$(awk -v m="$M" '$2 == m { print $4 }' /proc/mounts)
[[ $opts == *allow_root* || $opts == *bogus* ]] && fail "the backing path added mount options: $opts"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
exit 0
