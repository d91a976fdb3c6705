#!/usr/bin/env bash
# mows over s3fs while the store stops answering (the S3 server SIGSTOPped, as an overloaded
# store does). Everything cached keeps being served: re-reads give the right bytes and
# `ls -lR` the same listing, even with a metadata refresh and fills stuck in the store; a
# read of a file never cached fails with EIO within fill_timeout + 1 s, and a reader waiting
# for one dies at once on SIGKILL; `fusermount3 -u` takes <= 2 s (the daemon exits once the
# store answers: a thread inside s3fs cannot be interrupted). When
# the store answers again nothing needs a restart: the stuck refresh ends, the cold file
# reads, and a file changed in the store is picked up on `mowsctl refresh`.
# timeout: 240
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/lib_s3.sh"

FT=3 # fill_timeout, seconds
SRC=$SCRATCH/src
mkdir -p "$SRC"
rand_file "$SRC/model-00001-of-00002.safetensors" $((9 * MiB + 7))
rand_file "$SRC/model-00002-of-00002.safetensors" $((5 * MiB + 3))
rand_file "$SRC/tok/tokenizer.json" 54321
printf '{"architectures": ["Tiny"]}\n' >"$SRC/config.json"
rand_file "$SRC/cold/never-read.bin" $((9 * MiB + 11))
mows_make_manifest "$SRC"
WARM=(model-00001-of-00002.safetensors model-00002-of-00002.safetensors tok/tokenizer.json
	config.json crc32.txt)

s3_up "$SRC"
M=$SCRATCH/mnt
mows_mount "$S3_MNT" "$M" --max-memory=96M --fill-timeout=${FT}s
for f in "${WARM[@]}"; do assert_cmp "$SRC/$f" "$M/$f"; done

# listing FILE: `ls -lR` of the mount (20 s deadline) into FILE.
listing() { (cd "$M" && timeout 20 ls -lR --time-style=+%s.%N . >"$1"); }
# warm_read: every warm file through the mount, from mows's cache (not the page cache);
# prints the best of 3 in seconds. Fails on a wrong byte or an error.
warm_read() {
	local best="" t0 t f i
	for i in 1 2 3; do
		drop_caches
		t0=$(date +%s%N)
		for f in "${WARM[@]}"; do
			timeout 20 cmp -s "$SRC/$f" "$M/$f" || return 1
		done
		t=$(($(date +%s%N) - t0))
		{ [ -z "$best" ] || [ "$t" -lt "$best" ]; } && best=$t
	done
	echo "$best"
}
listing "$SCRATCH/ls.up" || fail "ls -lR of $M failed with the store running"
t_up=$(warm_read) || fail "a warm re-read with the store running failed"

# ---- the store stops answering ----
s3_pause
# A refresh now gets stuck listing the store; nothing below may wait for it.
mows_ctl refresh >"$SCRATCH/refresh1.out" 2>&1 &
refresh1=$!
mows_track_pid $refresh1

cat >"$SCRATCH/coldread.py" <<'PY'
import errno, os, sys, time
path, off, limit = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
t0 = time.monotonic()
fd = os.open(path, os.O_RDONLY)
try:
    os.pread(fd, 1 << 20, off)
    print("FAIL: a read of a file never cached succeeded with the store stopped")
    sys.exit(1)
except OSError as e:
    took = time.monotonic() - t0
    print("%s after %.2f s" % (errno.errorcode.get(e.errno, e.errno), took))
    sys.exit(0 if e.errno == errno.EIO and took <= limit else 1)
PY
out=$(timeout 30 "$PYTHON" "$SCRATCH/coldread.py" "$M/cold/never-read.bin" 0 $((FT + 1)) 2>&1) ||
	fail "read of a file never cached, store stopped: expected EIO within fill_timeout + 1 s ($((FT + 1)) s), got: $out"
note "store stopped: read of a never-cached file: $out"

# A reader waiting on the stopped store dies at once on SIGKILL.
"$PYTHON" -c "
import os
fd = os.open('$M/cold/never-read.bin', os.O_RDONLY)
os.pread(fd, 4096, 5 * 1024 * 1024)
" >/dev/null 2>&1 &
waiter=$!
mows_track_pid $waiter
sleep 0.5
kill -KILL $waiter 2>/dev/null
wait_pid_gone $waiter 2 || fail "a reader waiting on the stopped store survived SIGKILL for 2 s (unkillable wait)"

# Everything cached, with fills and a refresh stuck in the store.
t_down=$(warm_read) || fail "store stopped: a re-read of a cached file failed or gave wrong bytes"
listing "$SCRATCH/ls.down" || fail "store stopped: ls -lR of $M failed"
diff -q "$SCRATCH/ls.up" "$SCRATCH/ls.down" >/dev/null ||
	fail "store stopped: ls -lR differs from the listing with the store running: $(diff "$SCRATCH/ls.up" "$SCRATCH/ls.down" | head -n 5)"
timeout 5 "$MOWS_CTL" -s "$MOWS_SOCK" status >/dev/null || fail "store stopped: mowsctl status failed"
note "store stopped: warm re-read $((t_down / 1000000)) ms, store running $((t_up / 1000000)) ms (best of 3; $(awk -v a="$t_up" -v b="$t_down" 'BEGIN { printf "%.2f", a / b }')x)"
pid_alive $refresh1 || fail "mowsctl refresh ended with the store stopped: $(cat "$SCRATCH/refresh1.out")"

# ---- the store answers again: nothing needs a restart ----
s3_resume
wait_pid_gone $refresh1 60 || fail "mowsctl refresh still waiting 60 s after the store came back"
wait $refresh1 || fail "mowsctl refresh after the store came back: $(cat "$SCRATCH/refresh1.out")"
retry_until 30 cmp -s "$SRC/cold/never-read.bin" "$M/cold/never-read.bin" ||
	fail "the never-cached file does not read right 30 s after the store came back"

# A file changed in the store (with its manifest entry) is picked up on mowsctl refresh.
printf '{"architectures": ["Tiny"], "revision": 2}\n' >"$SRC/config.json"
mows_make_manifest "$SRC"
_s3_mount "$SCRATCH/s3-w" ""
cp "$SRC/config.json" "$SRC/crc32.txt" "$SCRATCH/s3-w/" || fail "cannot change config.json in the store"
fusermount3 -u "$SCRATCH/s3-w" || fail "cannot unmount the writable s3fs mount"
[ -e "$M/config.json" ] && cmp -s "$SRC/config.json" "$M/config.json" &&
	fail "config.json read as the new file before any refresh (not from the snapshot?)"
refreshed() {
	timeout 60 "$MOWS_CTL" -s "$MOWS_SOCK" refresh >"$SCRATCH/refresh2.out" 2>&1 &&
		cmp -s "$SRC/config.json" "$M/config.json"
}
# (s3fs's own kernel attribute cache may answer the first listing with the old size.)
retry_until 10 refreshed ||
	fail "config.json changed in the store does not read as the new file after mowsctl refresh: $(cat "$SCRATCH/refresh2.out")"
for f in "${WARM[@]}"; do assert_cmp "$SRC/$f" "$M/$f"; done

# ---- unmount with the store stopped and a refresh stuck in it ----
s3_pause
mows_ctl refresh >/dev/null 2>&1 &
mows_track_pid $!
sleep 0.5
t0=$(date +%s%N)
out=$(timeout 30 fusermount3 -u "$M" 2>&1)
rc=$?
took=$((($(date +%s%N) - t0) / 1000000))
[ $rc -eq 0 ] || { s3_resume; fail "fusermount3 -u $M with the store stopped failed ($rc): $out"; }
note "store stopped: fusermount3 -u took $took ms"
assert_not_mounted "$M"
s3_resume
assert_le "$took" 2000 "milliseconds fusermount3 -u took with the store stopped"
# A thread inside a request s3fs has taken cannot be interrupted (the kernel waits for s3fs's
# answer), so the process ends once the store answers again; the mount was gone at once.
wait_pid_gone "$MOWS_PID" 30 || fail "mows-fuse still running 30 s after fusermount3 -u and the store's return"
wait "$MOWS_PID"
assert_eq 0 $? "mows-fuse exit status after an unmount with the store stopped"
