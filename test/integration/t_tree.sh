#!/usr/bin/env bash
# The mount mirrors the backing tree: same names, types, sizes, symlink targets and bytes,
# nested and large directories included; random preads across chunk edges match too.
# timeout: 120
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
mows_make_tree "$B"
# Names that trip up path handling, and a directory big enough to need several readdirs.
rand_file "$B/with space.bin" 100
rand_file "$B/ünï cødé.bin" 200
rand_file "$B/-dash" 3
mkdir -p "$B/many"
for i in $(seq -w 1 400); do printf '%s' "$i" >"$B/many/entry-with-a-longish-name-$i"; done

check_mount() { # MNT CHUNK
	local m=$1 chunk=$2 f st_b st_m
	assert_trees_equal "$B" "$m"
	[ "$(ls "$m/many" | wc -l)" -eq 400 ] || fail "ls $m/many shows $(ls "$m/many" | wc -l) entries, expected 400"
	assert_eq "$(ls -la "$B/sub/a" | awk 'NR > 1 { print substr($1, 1, 1), $NF }' | grep -v ' \.\.\?$')" \
		"$(ls -la "$m/sub/a" | awk 'NR > 1 { print substr($1, 1, 1), $NF }' | grep -v ' \.\.\?$')" \
		"ls -la of sub/a (types and names)"
	for f in empty.bin one.bin page-1.bin page.bin chunk+1.bin big.bin sub/a/b/c/shard.bin; do
		st_b=$(stat -c '%s %F' "$B/$f")
		st_m=$(stat -c '%s %F' "$m/$f")
		assert_eq "$st_b" "$st_m" "stat of $f"
		assert_ok "cmp $f" -- cmp "$B/$f" "$m/$f"
	done
	# Through the symlinks: the HF snapshot and the links/ dir resolve inside the mount.
	assert_cmp "$B/$HF_SNAPSHOT/model.safetensors" "$m/$HF_SNAPSHOT/model.safetensors"
	assert_cmp "$B/$HF_SNAPSHOT/tok/tokenizer.json" "$m/$HF_SNAPSHOT/tok/tokenizer.json"
	assert_eq "$(readlink "$B/$HF_SNAPSHOT/config.json")" "$(readlink "$m/$HF_SNAPSHOT/config.json")" "readlink config.json"
	assert_eq "$(realpath "$m/$HF_SNAPSHOT/model.safetensors")" \
		"$m/hub/models--acme--tiny/blobs/$(readlink "$B/$HF_SNAPSHOT/model.safetensors" | sed 's,.*/,,')" \
		"realpath of the snapshot link"
	assert_cmp "$B/sub/a/sibling.bin" "$m/links/to-dir/sibling.bin"
	[ -L "$m/links/dangling" ] || fail "links/dangling is not a symlink in the mount"
	[ -e "$m/links/dangling" ] && fail "links/dangling resolves in the mount but not in the backing"
	[ -e "$m/no-such-file" ] && fail "$m/no-such-file exists"
	assert_fails_with "No such file" "open of a missing name" -- cat "$m/no-such-file"
	for f in big.bin chunk+1.bin sub/a/b/c/shard.bin; do
		assert_ok "random preads of $f" -- py preads "$m/$f" "$B/$f" 300 "$RANDOM" "$chunk"
	done
}

mows_mount "$B" "$SCRATCH/mnt"
line=$(mount_line "$SCRATCH/mnt")
assert_eq fuse.mows "$(awk '{ print $3 }' <<<"$line")" "fstype in /proc/mounts"
check_mount "$SCRATCH/mnt" $((4 * MiB))
mows_umount "$SCRATCH/mnt"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status after fusermount3 -u"

# Small chunks and a small cache: many chunk edges, eviction while walking the tree.
mows_mount "$B" "$SCRATCH/mnt2" --chunk-size=64K --max-memory=4M
check_mount "$SCRATCH/mnt2" $((64 << 10))
mows_umount "$SCRATCH/mnt2"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status after fusermount3 -u"
