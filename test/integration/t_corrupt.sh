#!/usr/bin/env bash
# One byte of a backing file goes bad after crc32.txt was written. --verify=file serves it
# at most until the whole file is cached, then gives EIO and logs the mismatch; strict gives
# EIO on the first read; off serves the bytes as they are. Other files always read fine.
# timeout: 180
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
rel=sub/a/b/c/shard.bin
mows_make_tree "$B"
mows_make_manifest "$B"
manifest_crc good "$B" "$rel"
size=$(stat -c %s "$B/$rel")
# The bad byte sits in the file's last chunk, so nothing short of reading it all finds it.
py flipbyte "$B/$rel" $((size - 3))
bad=$(py crc32 "$B/$rel")
[ "$bad" != "$good" ] || fail "flipping a byte did not change the CRC"
want_line="crc32 mismatch: $rel: manifest $good, computed $bad"

# check_log LOG: the error line names the relpath and both CRCs, 8 hex digits each.
check_log() {
	grep -qiF -- "$want_line" "$1" && return 0
	local near
	near=$(grep -i 'crc32 mismatch' "$1" | head -n 3)
	[ -n "$near" ] || fail "daemon log has no 'crc32 mismatch' line; wanted '$want_line'"
	fail "daemon log's mismatch line is not '$want_line': $near"
}

read_gives_eio() { [ "$(py read "$1")" = EIO ]; }

others_ok() { # MNT: every other file, and the tree listing, match the backing
	assert_trees_equal "$B" "$1" --exclude "$rel"
}

# --verify=file: a read may succeed while chunks are still being checked, then EIO.
M=$SCRATCH/mnt-file
mows_mount "$B" "$M" --verify=file
others_ok "$M"
r=$(py read "$M/$rel")
note "first full read with --verify=file: $r"
try_eio() { drop_caches; read_gives_eio "$M/$rel"; }
retry_until 10 try_eio || fail "--verify=file: reading $rel (one byte corrupted) still gives '$(py read "$M/$rel")' after 10 s; expected EIO"
# It keeps failing, and nothing else is affected.
drop_caches
read_gives_eio "$M/$rel" || fail "--verify=file: a later read of $rel gave '$(py read "$M/$rel")', expected EIO again"
assert_fails_with "Input/output error" "cat of the corrupted file" -- cat "$M/$rel"
others_ok "$M"
check_log "$MOWS_LOG"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status (--verify=file)"

# --verify=strict: the very first read fails.
M=$SCRATCH/mnt-strict
mows_mount "$B" "$M" --verify=strict
r=$(py first-read "$M/$rel")
[ "$r" = EIO ] || [ "$r" = open:EIO ] || fail "--verify=strict: first 4 KiB read of $rel gave '$r', expected EIO"
r=$(py read "$M/$rel")
assert_eq EIO "$r" "--verify=strict: full read of $rel"
assert_cmp "$B/big.bin" "$M/big.bin"
assert_cmp "$B/$HF_SNAPSHOT/model.safetensors" "$M/$HF_SNAPSHOT/model.safetensors"
others_ok "$M"
check_log "$MOWS_LOG"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status (--verify=strict)"

# --verify=off: the bytes are served as the backing holds them.
M=$SCRATCH/mnt-off
mows_mount "$B" "$M" --verify=off
assert_cmp "$B/$rel" "$M/$rel"
others_ok "$M"
grep -qi 'crc32 mismatch' "$MOWS_LOG" && fail "--verify=off logged a crc32 mismatch"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status (--verify=off)"
