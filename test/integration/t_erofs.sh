#!/usr/bin/env bash
# The mount is read-only: every kind of change fails with EROFS and the backing is untouched.
# timeout: 60
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
REF=$SCRATCH/reference
mows_make_tree "$B"
cp -a "$B" "$REF"
mows_mount "$B" "$M"

opts=$(mount_line "$M" | awk '{ print $4 }')
[[ ,$opts, == *,ro,* ]] || fail "/proc/mounts options for $M are '$opts', expected ro"

ro() { # WHAT CMD...
	local what=$1
	shift
	assert_fails_with "Read-only file system" "$what" -- "$@"
}
ro "echo > existing file" bash -c "echo x > '$M/one.bin'"
ro "echo >> existing file" bash -c "echo x >> '$M/one.bin'"
ro "touch new file" touch "$M/new-file"
ro "touch existing file" touch "$M/one.bin"
ro "mkdir" mkdir "$M/new-dir"
ro "rm" rm -f "$M/one.bin"
ro "rmdir" rmdir "$M/sub/empty-dir"
ro "rm of a symlink" rm -f "$M/links/to-file"
ro "mv" mv "$M/one.bin" "$M/two.bin"
ro "mv into a subdir" mv "$M/page.bin" "$M/sub/page.bin"
ro "ln -s" ln -s one.bin "$M/new-link"
ro "ln (hard link)" ln "$M/one.bin" "$M/hard-link"
ro "chmod" chmod 600 "$M/one.bin"
ro "chown" chown 1:1 "$M/one.bin"
ro "truncate" truncate -s 0 "$M/big.bin"
ro "truncate to grow" truncate -s 100M "$M/one.bin"
ro "mkfifo" mkfifo "$M/fifo"
ro "dd conv=notrunc" dd if=/dev/zero of="$M/big.bin" bs=1 count=1 conv=notrunc status=none
ro "open O_RDWR" "$PYTHON" -c "import os; os.open('$M/page.bin', os.O_RDWR)"
ro "setxattr" "$PYTHON" -c "import os; os.setxattr('$M/page.bin', 'user.x', b'1')"

assert_trees_equal "$REF" "$B"
assert_trees_equal "$REF" "$M"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
