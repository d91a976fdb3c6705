#!/usr/bin/env bash
# A 40,000-level directory tree in the backing: the daemon survives walks of it (mowsctl
# prefetch of the whole mount, and a peer-style key walk through prefetch = on-mount), the
# walks stop at the depth cap and log what they skipped, and shallow files read fine.
# timeout: 180
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
LEVELS=40000
mkdir -p "$B/model"
rand_file "$B/model/shallow.bin" $((2 * MiB + 3))
rand_file "$B/top.bin" 777
"$PYTHON" - "$B" "$LEVELS" <<'PY' || fail "cannot build the deep tree"
import os, sys
base, levels = sys.argv[1], int(sys.argv[2])
fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY)
for i in range(levels):
    os.mkdir("d", dir_fd=fd)
    nfd = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
    os.close(fd)
    fd = nfd
    if i in (10, levels - 1):
        os.close(os.open("leaf.bin", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd))
os.close(fd)
PY
note "built a $LEVELS-level tree"

for mode in mowsctl on-mount; do
	if [ $mode = on-mount ]; then
		mows_mount "$B" "$M" --prefetch=on-mount
		retry_until 60 grep -q "prefetch: .* loaded" "$MOWS_LOG" ||
			fail "prefetch = on-mount did not finish its walk within 60 s"
	else
		mows_mount "$B" "$M"
		start=$SECONDS
		out=$(timeout 60 "$MOWS_CTL" -s "$MOWS_SOCK" prefetch "$M" 2>&1)
		rc=$?
		[ $rc -eq 124 ] && fail "mowsctl prefetch of the mount did not return within 60 s"
		[ $rc -eq 0 ] || fail "mowsctl prefetch of the mount exited $rc: $(tail -n 3 <<<"$out")"
		note "mowsctl prefetch of the whole mount: $((SECONDS - start)) s"
	fi
	pid_alive "$MOWS_PID" || fail "mows-fuse died walking a $LEVELS-level tree ($mode)"
	grep -q "directory 257 levels down; the walk stops at 256" "$MOWS_LOG" ||
		fail "($mode) the daemon log does not name the directory past the depth cap"
	assert_cmp "$B/model/shallow.bin" "$M/model/shallow.bin"
	assert_cmp "$B/top.bin" "$M/top.bin"
	[ -e "$M/d/d/d/d/d/d/d/d/d/d/d/leaf.bin" ] || fail "($mode) a leaf 11 levels down is missing"
	mows_status_json "$SCRATCH/st.json"
	jget v "$SCRATCH/st.json" 'file("model/shallow.bin")["cached_bytes"]'
	assert_eq $((2 * MiB + 3)) "$v" "($mode) cached bytes of model/shallow.bin after the walk"
	mows_umount "$M"
	assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status ($mode)"
done
exit 0
