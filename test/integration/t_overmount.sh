#!/usr/bin/env bash
# Without --backing, mows-fuse mounts over its own backing directory: the mount shadows the
# dir, serves the files it held, and after unmounting the originals are untouched.
# timeout: 120
. "$(dirname "$0")/lib.sh"

D=$SCRATCH/models
REF=$SCRATCH/reference
mows_make_tree "$D"
cp -a "$D" "$REF"
dev_before=$(stat -c %d "$D")

mows_mount "" "$D"
assert_mounted "$D"
[ "$(stat -c %d "$D")" != "$dev_before" ] || fail "$D has the same device number mounted as before: not shadowed"
assert_trees_equal "$REF" "$D"
assert_cmp "$REF/$HF_SNAPSHOT/model.safetensors" "$D/$HF_SNAPSHOT/model.safetensors"
# Writes land on the read-only mount, not in the dir underneath.
assert_fails_with "Read-only file system" "create a file in the overmounted dir" -- touch "$D/new-file"
drop_caches
assert_trees_equal "$REF" "$D"

mows_umount "$D"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
assert_not_mounted "$D"
assert_eq "$dev_before" "$(stat -c %d "$D")" "device number of $D after unmounting"
assert_trees_equal "$REF" "$D"
[ -e "$D/new-file" ] && fail "$D/new-file appeared in the dir underneath the mount"
exit 0
