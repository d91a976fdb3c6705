#!/usr/bin/env bash
# The daemon ends cleanly: fusermount3 -u and SIGTERM make a foreground daemon exit 0 and
# leave nothing mounted; without -f it returns 0 once the mount is usable and goes away
# when unmounted.
# timeout: 90
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
rand_file "$B/a.bin" $((5 * MiB + 1))
rand_file "$B/d/b.bin" 4097

# fusermount3 -u
M=$SCRATCH/mnt-u
mows_mount "$B" "$M"
assert_cmp "$B/a.bin" "$M/a.bin"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "foreground mows-fuse exit status after fusermount3 -u"

# SIGTERM
M=$SCRATCH/mnt-term
mows_mount "$B" "$M"
assert_cmp "$B/a.bin" "$M/a.bin"
kill -TERM "$MOWS_PID"
wait_pid_gone "$MOWS_PID" 10 || fail "mows-fuse still running 10 s after SIGTERM"
wait "$MOWS_PID"
rc=$?
assert_eq 0 $rc "foreground mows-fuse exit status after SIGTERM"
assert_not_mounted "$M"
ls "$M" >/dev/null 2>&1 || fail "$M is unusable after SIGTERM (stale mount?)"
# A restart on the same mountpoint and control socket works.
sock=$MOWS_SOCK
MOWS_MOUNT_SOCK=$sock mows_mount "$B" "$M"
assert_cmp "$B/d/b.bin" "$M/d/b.bin"
mows_ctl status >/dev/null || fail "restarted mows-fuse does not answer on the control socket $sock"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "restarted mows-fuse exit status"

# SIGTERM while a reader holds a file open and is reading.
M=$SCRATCH/mnt-busy
mows_mount "$B" "$M"
"$PYTHON" -c "
import sys, time
f = open('$M/a.bin', 'rb')
f.read(4096)
print('open', flush=True)
time.sleep(30)
" >"$SCRATCH/holder.out" 2>&1 &
holder=$!
mows_track_pid $holder
retry_until 5 grep -q open "$SCRATCH/holder.out" || fail "reader could not open $M/a.bin"
kill -TERM "$MOWS_PID"
wait_pid_gone "$MOWS_PID" 10 || fail "mows-fuse still running 10 s after SIGTERM with a file open"
wait "$MOWS_PID"
rc=$?
assert_eq 0 $rc "foreground mows-fuse exit status after SIGTERM with a file open"
kill $holder 2>/dev/null
wait $holder 2>/dev/null
# A lazy unmount is fine while the file is open; once it is closed nothing may remain.
retry_until 5 bash -c "! awk -v m='$M' '\$2 == m { f = 1 } END { exit !f }' /proc/mounts" ||
	fail "$M still mounted after SIGTERM and the reader's exit"

# SIGTERM while a reader waits for a chunk whose backing read stalls (a stalled store):
# the stop does not wait for the reader's fill_timeout (60 s); it took 38 s before.
SRC=$SCRATCH/stall-src FF=$SCRATCH/stall-ff M=$SCRATCH/mnt-stall
rand_file "$SRC/s.bin" $((3 * MiB))
echo "s.bin 0 - stall 30" >"$SCRATCH/stall.rules"
faultfs_mount "$SRC" "$FF" "$SCRATCH/stall.rules"
mows_mount "$FF" "$M" --chunk-size=1M --fill-timeout=60s
timeout 60 cat "$M/s.bin" >/dev/null 2>"$SCRATCH/stall-reader.err" &
reader=$!
mows_track_pid $reader
retry_until 10 grep -q "stall s.bin" "$FAULTFS_LOG" || fail "the reader's fill never reached the stalled backing"
store=${MOWS_SOCK%.sock}.cache # beside the control socket (fs/main.c)
grep -q " $store tmpfs " /proc/mounts || fail "no cache tmpfs at $store: the check after the stop would mean nothing"
t0=$SECONDS
kill -TERM "$MOWS_PID"
retry_until 5 bash -c "! awk -v m='$M' '\$2 == m { f = 1 } END { exit !f }' /proc/mounts" ||
	fail "$M still mounted 5 s after SIGTERM while a reader waited on a stalled fill ($(tail -n 2 "$MOWS_LOG"))"
grep -q "stopping on signal 15" "$MOWS_LOG" || fail "mows-fuse did not log its stop on SIGTERM"
wait $reader 2>/dev/null && fail "the reader of a stalled file read it all"
# Its fill threads stay stuck in faultfs until the stall ends, but the cache's tmpfs (the
# chunks' memory) must not stay mounted after the daemon is gone.
retry_until 10 bash -c "! grep -q ' $store tmpfs ' /proc/mounts" ||
	fail "the cache tmpfs $store is still mounted 10 s after SIGTERM"
note "SIGTERM with a reader waiting on a stalled fill: unmounted within $((SECONDS - t0)) s"

# Daemonized: returns once mounted; the mount works at once.
M=$SCRATCH/mnt-daemon-$$-$RANDOM
S=$SCRATCH/daemon.sock
mkdir -p "$M"
mows_track_mount "$M"
timeout 20 "$MOWS_FUSE" --backing "$B" --control-socket "$S" "$M" \
	>"$SCRATCH/daemonize.out" 2>&1 </dev/null
rc=$?
for pid in $(pgrep -f -- "$M"); do mows_track_pid "$pid"; done
assert_eq 0 $rc "mows-fuse without -f exit status ($(head -c 300 "$SCRATCH/daemonize.out"))"
assert_mounted "$M"
assert_cmp "$B/d/b.bin" "$M/d/b.bin"
assert_cmp "$B/a.bin" "$M/a.bin"
pids=$(pgrep -f -- "$M")
[ -n "$pids" ] || fail "no process with $M in its command line after daemonizing"
[ "$(wc -w <<<"$pids")" -eq 1 ] || fail "several processes name $M: $pids"
MOWS_SOCK=$S
mows_ctl status >/dev/null 2>&1 || fail "daemonized mows-fuse does not answer on $S"
out=$(fusermount3 -u "$M" 2>&1) || fail "fusermount3 -u $M: $out"
wait_pid_gone "$pids" 10 || fail "daemonized mows-fuse (pid $pids) still running 10 s after fusermount3 -u"
assert_not_mounted "$M"
