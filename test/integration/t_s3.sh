#!/usr/bin/env bash
# mows over an object store: Debian's s3fs mounting a bucket of a local S3 server (s3rver),
# as ossfs or s3fs sit under mows in production. The mount serves the tree's exact bytes and
# symlinks; a warm pass over the model costs the store nothing (0 requests: no LIST, no
# HEAD), and s3fs keeps no temporary copies of the files mows has completed.
# timeout: 180
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_s3.sh"

SRC=$SCRATCH/src
mkdir -p "$SRC"
rand_file "$SRC/model-00001-of-00002.safetensors" $((9 * MiB + 7))
rand_file "$SRC/model-00002-of-00002.safetensors" $((5 * MiB + 3))
rand_file "$SRC/tok/tokenizer.json" 54321
printf '{"architectures": ["Tiny"]}\n' >"$SRC/config.json"
mows_make_manifest "$SRC"

s3_up "$SRC"
assert_trees_equal "$SRC" "$S3_MNT"

M=$SCRATCH/mnt
mows_mount "$S3_MNT" "$M" --max-memory=96M
assert_trees_equal "$SRC" "$M"
st=$SCRATCH/st.json
mows_status_json "$st"
jget from_backing "$st" "j['bytes_from_backing']"
model_b=$(find "$SRC" -type f -printf '%s\n' | awk '{ n += $1 } END { print n }')
[ "$from_backing" -ge "$model_b" ] || fail "mows read $from_backing bytes from s3fs, the tree is $model_b"

# A warm pass: every file's bytes again, every directory listed and stat'ed; first past the
# kernel's attribute and name caches of both mounts (1 s each), so every lookup, getattr and
# open reaches mows, and anything mows asked of s3fs would reach the store.
sleep 2.5
r0=$(s3_requests) h0=$(s3_requests HEAD) l0=$(s3_lists)
(cd "$M" && find . -type f -print0 | sort -z | xargs -0 cat >/dev/null && ls -lR >/dev/null) ||
	fail "warm pass over $M failed"
r1=$(s3_requests) h1=$(s3_requests HEAD) l1=$(s3_lists)
mows_status_json "$st"
jget warm_backing "$st" "j['bytes_from_backing']"
assert_eq "$from_backing" "$warm_backing" "bytes mows read from s3fs after a warm pass"
note "warm pass: $((r1 - r0)) store requests ($((l1 - l0)) LIST, $((h1 - h0)) HEAD)"
assert_eq 0 $((l1 - l0)) "LIST requests at the store during a warm pass (names come from the snapshot)"
assert_eq 0 $((h1 - h0)) "HEAD requests at the store during a warm pass (opens of cached files touch nothing)"
assert_eq 0 $((r1 - r0)) "requests at the store during a warm pass"

# Files mows has completed are closed in s3fs, which then drops its temporary copies
# (deleted files it keeps under /tmp while a file is open). The close is asynchronous (FUSE
# RELEASE), so allow it a moment.
tmp_b=$(s3_tmp_bytes)
end=$((SECONDS + 5))
while [ "$tmp_b" -ne 0 ] && [ $SECONDS -lt $end ]; do
	sleep 0.2
	tmp_b=$(s3_tmp_bytes)
done
note "s3fs temporary copies: $tmp_b bytes"
assert_eq 0 "$tmp_b" "bytes in s3fs temporary copies of files mows has completed"

mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
