#!/usr/bin/env bash
# A node out of file descriptors does not spin: its RLIMIT_NOFILE is lowered (prlimit) to
# its lowest free descriptor number, and a peer connection waits in the listen backlog, so every
# accept fails with EMFILE. The listener must back off (under 0.3 s of CPU in 3 s, where a
# spinning one burns about 3 s), say so in one log line, and accept again once descriptors
# are back.
# timeout: 60
. "$(dirname "$0")/lib.sh"
need_cmd prlimit

B=$SCRATCH/backing
rand_file "$B/a.bin" $((1 * MiB))
PORT=$((20000 + $$ % 20000))
mows_mount "$B" "$SCRATCH/mnt" --listen="127.0.0.1:$PORT" --insecure=true --tls=off --max-memory=32M \
	--chunk-size=1M
pid=$MOWS_PID

cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$pid/stat"; }
sleep 1 # start-up work (faulting in the slab) is done
# The lowest free descriptor number: below it every number is taken, so a limit there
# makes the next accept fail.
nfds=$("$PYTHON" -c '
import os, sys
used = {int(x) for x in os.listdir("/proc/%s/fd" % sys.argv[1])}
print(next(i for i in range(1 << 20) if i not in used))' "$pid")
soft=$(prlimit --pid "$pid" --nofile --output SOFT --noheadings | tr -d ' ')
prlimit --pid "$pid" --nofile="$nfds:" || fail "prlimit --pid $pid --nofile=$nfds: failed"

# A connection that waits in the backlog, held open for 6 s.
"$PYTHON" -c '
import socket, sys, time
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
time.sleep(6)' "$PORT" &
holder=$!
sleep 0.5
t0=$(cpu_ticks)
sleep 3
t1=$(cpu_ticks)
hz=$(getconf CLK_TCK)
cpu_ms=$(((t1 - t0) * 1000 / hz))
lines=$(grep -c "out of file descriptors" "$MOWS_LOG" || true)
note "out of descriptors for 3 s: $cpu_ms ms of CPU, $lines log line(s) about it"
[ "$lines" -ge 1 ] || fail "no log line about the failing accepts: $(tail -n 5 "$MOWS_LOG")"
assert_le "$lines" 1 "log lines about running out of descriptors in one episode"
assert_le "$cpu_ms" 300 "ms of CPU the daemon used in 3 s while every accept failed"

prlimit --pid "$pid" --nofile="$soft:" || fail "prlimit --pid $pid --nofile=$soft: failed"
retry_until 5 grep -q "accepting connections again" "$MOWS_LOG" ||
	fail "the daemon did not accept again once it had descriptors: $(tail -n 5 "$MOWS_LOG")"
kill "$holder" 2>/dev/null
wait "$holder" 2>/dev/null
pid_alive "$pid" || fail "mows-fuse died"
mows_umount "$SCRATCH/mnt"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
note "pass"
