#!/usr/bin/env bash
# mows over an object store: Debian's s3fs mounting a bucket of a local S3 server (s3rver),
# as ossfs or s3fs sit under mows in production. The mount serves the tree's exact bytes and
# symlinks; the test reports what a warm pass over the model costs the store (LIST and HEAD
# requests) and what s3fs keeps in temporary files, the figures issue 10 drives to zero.
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

# A warm pass: every file's bytes again, every directory listed and stat'ed.
r0=$(s3_requests) h0=$(s3_requests HEAD) l0=$(s3_lists)
(cd "$M" && find . -type f -print0 | sort -z | xargs -0 cat >/dev/null && ls -lR >/dev/null) ||
	fail "warm pass over $M failed"
r1=$(s3_requests) h1=$(s3_requests HEAD) l1=$(s3_lists)
mows_status_json "$st"
jget warm_backing "$st" "j['bytes_from_backing']"
assert_eq "$from_backing" "$warm_backing" "bytes mows read from s3fs after a warm pass"
note "warm pass: $((r1 - r0)) store requests ($((l1 - l0)) LIST, $((h1 - h0)) HEAD)"

# What s3fs holds in deleted temporary files for files mows keeps open.
s3fs_pid=$(pgrep -f "^s3fs $S3_BUCKET $S3_MNT" | head -n 1)
[ -n "$s3fs_pid" ] || fail "no s3fs process for $S3_MNT"
tmp_b=0
for fd in "/proc/$s3fs_pid/fd/"*; do
	case $(readlink "$fd" 2>/dev/null) in
	*' (deleted)') tmp_b=$((tmp_b + $(stat -L -c %s "$fd" 2>/dev/null || echo 0))) ;;
	esac
done
note "s3fs temporary copies: $tmp_b bytes"

mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
