#!/usr/bin/env bash
# supervise = on: the mount survives its serving process. With 2 read() readers and 2 mmap
# readers mid-file (passthrough = auto, then off):
#   - SIGKILL of the serving process: a new one serves within 2 s (measured: a lookup sent
#     right after the kill is answered by the new process), 0 reader errors, every byte
#     right (sha256 of what each reader read), 0 bytes read from storage by the new process
#     (it adopts the cache), status shows a new pid and restarts = 1;
#   - `mowsctl upgrade --binary` to a copy of the binary: the same, restarts = 2, and the
#     serving process runs the new binary.
# Then: a read waiting on a stalled fill when its process dies is resent and answered; a
# child that dies between recording the kernel's INIT and answering it leaves a mount the
# next one serves; under systemd every notify datagram comes on the supervisor's behalf; an
# ordinary and a passthrough open held across a restart keep new opens of their files in
# their mode; a file opened before a restart and changed while no process served gets
# ESTALE, not the new bytes; a serving process that cannot start is restarted with backoff
# (one log line per backoff, the supervisor's CPU time stays small) and serves once it can;
# bad upgrades are refused, one to a binary that never serves goes back; and mowsctl upgrade
# without a supervisor says how to get one.
# Scale (for the README's bench figures): MOWS_SUPER_FILE_MIB (24) per reader's file,
# MOWS_SUPER_PAUSE (0.06 s) between a reader's 1 MiB reads, MOWS_SUPER_MAX_MEMORY (256M).
# timeout: 300
. "$(dirname "$0")/lib.sh"

FILE_MIB=${MOWS_SUPER_FILE_MIB:-24}
PAUSE=${MOWS_SUPER_PAUSE:-0.06}
MAXMEM=${MOWS_SUPER_MAX_MEMORY:-256M}

B=$SCRATCH/backing
M=$SCRATCH/mnt
S=$SCRATCH/store
FAILIF=$SCRATCH/child-must-fail
mkdir -p "$B"
for f in r1 r2 m1 m2; do rand_file "$B/$f.bin" $((FILE_MIB * MiB + 4097)); done
rand_file "$B/stale.bin" $((2 * MiB))
mows_make_manifest "$B"
cp "$MOWS_FUSE" "$SCRATCH/mows-fuse-new"

# The readers: test/integration/slow_reader.py (read() or mmap, mid-file when the serving
# process goes; "ok SHA256" or "error ..." in OUT).

# A holder: opens PATH, waits for GO to exist, then reads 4 KiB and writes what happened.
cat >"$SCRATCH/holder.py" <<'EOF'
import errno, os, sys, time
path, go, out, ready = sys.argv[1:5]
fd = os.open(path, os.O_RDONLY)
os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
open(ready, "w").close()
end = time.time() + 60
while not os.path.exists(go) and time.time() < end:
    time.sleep(0.05)
try:
    b = os.pread(fd, 4096, 0)
    res = "read %d bytes" % len(b)
except OSError as e:
    res = "errno %s" % errno.errorcode.get(e.errno, e.errno)
with open(out, "w") as f:
    f.write(res + "\n")
EOF

status_get() { # KEY: from status --json of the current serving process
	local v
	mows_status_json "$SCRATCH/st.json"
	jget v "$SCRATCH/st.json" "j[\"$1\"]"
	echo "$v"
}

# Waits (10 s) until the serving process is not $1 and answers status; prints its pid.
wait_new_pid() {
	local old=$1 end=$((SECONDS + 10)) p
	while [ $SECONDS -lt $end ]; do
		p=$("$MOWS_CTL" -s "$MOWS_SOCK" --json status 2>/dev/null | sed -n 's/.*"pid":\([0-9]*\).*/\1/p')
		[ -n "$p" ] && [ "$p" != "$old" ] && { echo "$p"; return 0; }
		sleep 0.05
	done
	return 1
}

start_readers() {
	rm -f "$SCRATCH"/out.*
	READERS=()
	local f mode
	for f in r1 r2 m1 m2; do
		mode=read
		[ "${f:0:1}" = m ] && mode=mmap
		timeout 120 "$PYTHON" "$MOWS_IT/slow_reader.py" "$mode" "$M/$f.bin" "$SCRATCH/out.$f" "$PAUSE" &
		READERS+=($!)
	done
}

check_readers() { # WHAT
	local f got want
	for pid in "${READERS[@]}"; do wait "$pid"; done
	for f in r1 r2 m1 m2; do
		got=$(cat "$SCRATCH/out.$f" 2>/dev/null)
		want="ok $(sha256sum <"$B/$f.bin" | cut -d' ' -f1)"
		[ "$got" = "$want" ] || soft_fail "$1: reader $f: '$got' (want '$want')"
	done
}

# SIGKILLs pid $1 and prints the seconds until a lookup of a new name, sent once the
# process is dead, is answered (it waits in the kernel until a new serving process does).
kill_and_time() {
	local t0=$EPOCHREALTIME end=$((SECONDS + 5))
	kill -KILL "$1"
	while pid_alive "$1" && [ $SECONDS -lt $end ]; do sleep 0.005; done
	stat "$M/no-such-file-$RANDOM$RANDOM" >/dev/null 2>&1
	echo "$EPOCHREALTIME - $t0" | bc
}

one_mode() { # PASSTHROUGH
	local pt=$1 pid newpid took
	mows_mount "$B" "$M" --supervise=on --passthrough="$pt" --chunk-size=1M \
		--max-memory="$MAXMEM" --cache-dir="$S"
	for f in r1 r2 m1 m2; do cat "$M/$f.bin" >/dev/null || fail "warming $f.bin"; done
	sleep 3 # the index is written every 2 s while chunks change
	pid=$(status_get pid)
	assert_eq 0 "$(status_get restarts)" "restarts at start (passthrough=$pt)"

	# SIGKILL mid-file.
	start_readers
	sleep 0.6
	took=$(kill_and_time "$pid")
	note "passthrough=$pt: SIGKILL of pid $pid: serving again after $took s"
	[ "$(echo "$took <= 2" | bc)" = 1 ] || soft_fail "passthrough=$pt: serving again took $took s (goal 2 s)"
	check_readers "passthrough=$pt, SIGKILL"
	grep 'supervisor: serving again' "$MOWS_LOG" | tail -n 1 | sed 's/^/  /' 
	newpid=$(wait_new_pid "$pid") || fail "passthrough=$pt: no new serving process after SIGKILL"
	assert_eq 1 "$(status_get restarts)" "restarts after SIGKILL (passthrough=$pt)"
	# Only what readahead ran on into a file the old process had not read (stale.bin).
	assert_le "$(status_get bytes_from_backing)" $(($(status_get readahead_next_file) * MiB)) "storage bytes read by the new process (passthrough=$pt, SIGKILL)"
	note "passthrough=$pt: SIGKILL: 0 reader errors, all bytes right, $(status_get bytes_from_backing) storage bytes (readahead into a next file only)"

	# mowsctl upgrade to another binary, mid-file.
	sleep 3
	start_readers
	sleep 0.6
	local t0=$EPOCHREALTIME
	mows_ctl upgrade --binary "$SCRATCH/mows-fuse-new" >"$SCRATCH/up.out" 2>&1 ||
		fail "mowsctl upgrade: $(cat "$SCRATCH/up.out")"
	pid2=$(wait_new_pid "$newpid") || fail "passthrough=$pt: no new serving process after the upgrade"
	took=$(echo "$EPOCHREALTIME - $t0" | bc)
	note "passthrough=$pt: upgrade: pid $pid2 serves after $took s"
	[ "$(echo "$took <= 2" | bc)" = 1 ] || soft_fail "passthrough=$pt: upgrade took $took s (goal 2 s)"
	check_readers "passthrough=$pt, upgrade"
	assert_eq "$SCRATCH/mows-fuse-new" "$(readlink "/proc/$pid2/exe")" "binary of the new serving process"
	assert_eq 2 "$(status_get restarts)" "restarts after the upgrade (passthrough=$pt)"
	assert_le "$(status_get bytes_from_backing)" $(($(status_get readahead_next_file) * MiB)) "storage bytes read by the new process (passthrough=$pt, upgrade)"
	note "passthrough=$pt: upgrade: 0 reader errors, all bytes right, $(status_get bytes_from_backing) storage bytes (readahead into a next file only)"
	mows_umount "$M"
	assert_eq 0 "$MOWS_EXIT" "supervisor exit status (passthrough=$pt)"
	is_mounted "$S" && fail "the cache tmpfs $S is still mounted after the supervisor stopped"
	return 0
}

one_mode auto
one_mode off

# The first serving process dies after it recorded the kernel's INIT and before its answer
# went out: the kernel resends the INIT to the next one, which answers it as negotiated
# (libfuse itself would refuse a second INIT, and the connection with it).
touch "$SCRATCH/crash-at-init"
MOWS_TEST_CHILD_CRASH_IF=$SCRATCH/crash-at-init \
	mows_mount "$B" "$M" --supervise=on --chunk-size=1M --max-memory=64M --cache-dir="$S"
assert_cmp "$B/r2.bin" "$M/r2.bin"
grep -q 'dying answering INIT' "$MOWS_LOG" || fail "the test crash point was not reached"
grep -q "the kernel's INIT came again" "$MOWS_LOG" || fail "no log line about the INIT answered again"
assert_eq 1 "$(status_get restarts)" "restarts after a death at INIT"
mows_umount "$M"

# Under systemd (Type=notify, NotifyAccess=main, a watchdog): the unit's main process is the
# supervisor, so READY=1, WATCHDOG=1 and STATUS= come on its behalf from every serving
# process; a handover sends no STOPPING=1 (the service goes on), the final stop does.
cat >"$SCRATCH/listen.py" <<'EOF2'
import json, os, socket, struct, sys, time
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1])
s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
out = open(sys.argv[2], "a")
while True:
    data, anc, _, _ = s.recvmsg(1 << 16, socket.CMSG_SPACE(12))
    pid = next((struct.unpack("iII", d)[0] for l, t, d in anc
                if l == socket.SOL_SOCKET and t == socket.SCM_CREDENTIALS), -1)
    f = dict(l.split("=", 1) for l in data.decode().splitlines() if "=" in l)
    print(json.dumps({"t": time.monotonic(), "pid": pid, "f": f}), file=out, flush=True)
EOF2
EV=$SCRATCH/notify.jsonl
: >"$EV"
"$PYTHON" "$SCRATCH/listen.py" "$SCRATCH/notify.sock" "$EV" &
LISTENER=$!
printf '#!/bin/sh\nexport WATCHDOG_PID=$$\nexec "%s" "$@"\n' "$MOWS_FUSE" >"$SCRATCH/as-systemd"
chmod +x "$SCRATCH/as-systemd"
retry_until 5 test -S "$SCRATCH/notify.sock" || fail "the notify listener did not start"
nev() { # EXPR: datagrams satisfying EXPR (e: the event, f: its fields)
	"$PYTHON" -c '
import json, sys
print(sum(bool(eval(sys.argv[2], {}, {"e": e, "f": e["f"]})) for e in map(json.loads, open(sys.argv[1]))))' "$EV" "$1"
}
REAL_FUSE=$MOWS_FUSE
MOWS_FUSE=$SCRATCH/as-systemd NOTIFY_SOCKET=$SCRATCH/notify.sock WATCHDOG_USEC=400000 \
	mows_mount "$B" "$M" --supervise=on --chunk-size=1M --max-memory=64M --cache-dir="$S"
MOWS_FUSE=$REAL_FUSE
sup=$MOWS_PID
retry_until 10 test "$(nev 'f.get("READY") == "1"')" -ge 1 || fail "no READY=1 under supervise = on"
pid=$(status_get pid)
kill -KILL "$pid"
newpid=$(wait_new_pid "$pid") || fail "no new serving process"
w0=$(nev 'f.get("WATCHDOG") == "1"')
sleep 1.5
w1=$(nev 'f.get("WATCHDOG") == "1"')
[ $((w1 - w0)) -ge 4 ] || fail "$((w1 - w0)) WATCHDOG=1 in 1.5 s from the new serving process (WATCHDOG_USEC=400000)"
mows_ctl upgrade >/dev/null || fail "mowsctl upgrade failed"
wait_new_pid "$newpid" >/dev/null || fail "no new serving process after the upgrade"
sleep 0.5
assert_eq 0 "$(nev '"STOPPING" in f')" "STOPPING=1 datagrams before the final stop"
assert_eq 0 "$(nev "e['pid'] != $sup")" "datagrams not on behalf of the supervisor (pid $sup)"
mows_umount "$M"
retry_until 5 test "$(nev '"STOPPING" in f')" -ge 1 || fail "no STOPPING=1 at the final stop"
note "systemd: $(nev 'f.get("READY") == "1"') READY=1, $((w1 - w0)) WATCHDOG=1 in 1.5 s after a restart, all from pid $sup"
kill "$LISTENER"
wait "$LISTENER" 2>/dev/null

# Open modes across a restart (the table of opens the supervisor holds): every open of a
# file open at the same time uses one mode, whichever process made it; a mix fails (EIO).
HOLDERS=()
hold() { # PATH TAG: opens PATH in the background until $SCRATCH/go.TAG exists
	rm -f "$SCRATCH/held.$2" "$SCRATCH/ready.$2"
	"$PYTHON" "$SCRATCH/holder.py" "$1" "$SCRATCH/go.$2" "$SCRATCH/held.$2" "$SCRATCH/ready.$2" &
	HOLDERS+=($!)
	local end=$((SECONDS + 10))
	until [ -f "$SCRATCH/ready.$2" ]; do
		[ $SECONDS -ge $end ] && fail "the holder did not open $1"
		sleep 0.05
	done
}
mows_mount "$B" "$M" --supervise=on --passthrough=auto --chunk-size=1M --max-memory="$MAXMEM" \
	--cache-dir="$S"
hold "$M/r1.bin" plain             # not cached yet: an ordinary open
cat "$M/r1.bin" >/dev/null         # cached now, but ordinary: one is open
cat "$M/m1.bin" >/dev/null
hold "$M/m1.bin" pt                # cached and verified: passthrough
grep -q 'passthrough: m1.bin opens onto' "$MOWS_LOG" || fail "m1.bin did not open in passthrough mode"
sleep 3
pid=$(status_get pid)
kill -KILL "$pid"
newpid=$(wait_new_pid "$pid") || fail "no new serving process"
lines=$(wc -l <"$MOWS_LOG")
assert_cmp "$B/r1.bin" "$M/r1.bin" # must be ordinary too
assert_cmp "$B/m1.bin" "$M/m1.bin" # must share the old process's backing
tail -n +"$lines" "$MOWS_LOG" | grep -q 'passthrough: r1.bin opens onto' &&
	fail "r1.bin opened in passthrough mode while an ordinary open from before the restart was open"
touch "$SCRATCH/go.plain" "$SCRATCH/go.pt"
wait "${HOLDERS[@]}"
assert_eq "read 4096 bytes" "$(cat "$SCRATCH/held.plain")" "the ordinary open held across the restart"
assert_eq "read 4096 bytes" "$(cat "$SCRATCH/held.pt")" "the passthrough open held across the restart"
# Their releases reached the new process: r1.bin opens in passthrough mode now.
cat "$M/r1.bin" >/dev/null
tail -n +"$lines" "$MOWS_LOG" | grep -q 'passthrough: r1.bin opens onto' ||
	fail "r1.bin still not in passthrough mode after the open from before the restart was closed"
mows_umount "$M"

# A request in flight in the process that dies is resent (FUSE_NOTIFY_RESEND) and answered
# by the next one: the backing of slow.bin stalls its first read, the serving process is
# killed while a reader's read waits for that fill, and the reader still gets every byte.
F=$SCRATCH/faultfs
mkdir -p "$SCRATCH/slowsrc"
rand_file "$SCRATCH/slowsrc/slow.bin" $((3 * MiB))
mows_make_manifest "$SCRATCH/slowsrc"
echo "slow.bin 0 - stall 2 times=1" >"$SCRATCH/rules"
faultfs_mount "$SCRATCH/slowsrc" "$F" "$SCRATCH/rules"
mows_mount "$F" "$M" --supervise=on --passthrough=off --chunk-size=1M --max-memory=64M \
	--cache-dir="$S"
pid=$(status_get pid)
timeout 30 "$PYTHON" "$MOWS_IT/slow_reader.py" read "$M/slow.bin" "$SCRATCH/out.slow" 0 &
slow=$!
end=$((SECONDS + 10))
until grep -q 'stall slow.bin' "$FAULTFS_LOG"; do
	[ $SECONDS -ge $end ] && fail "the read of slow.bin never reached its backing"
	sleep 0.02
done
kill -KILL "$pid"
wait "$slow"
assert_eq "ok $(sha256sum <"$SCRATCH/slowsrc/slow.bin" | cut -d' ' -f1)" \
	"$(cat "$SCRATCH/out.slow" 2>/dev/null)" "a read in flight when the serving process died"
grep -q 'cannot resend' "$MOWS_LOG" && fail "this kernel cannot resend requests (needs 6.9)"
mows_umount "$M"

# A node id the new process cannot resolve: ESTALE. A crash loop backs off.
export MOWS_TEST_CHILD_FAIL_IF=$FAILIF
mows_mount "$B" "$M" --supervise=on --passthrough=off --chunk-size=1M --max-memory=64M \
	--cache-dir="$S"
unset MOWS_TEST_CHILD_FAIL_IF
"$PYTHON" "$SCRATCH/holder.py" "$M/stale.bin" "$SCRATCH/go" "$SCRATCH/held.out" "$SCRATCH/held.ready" &
holder=$!
end=$((SECONDS + 10))
until [ -f "$SCRATCH/held.ready" ]; do
	[ $SECONDS -ge $end ] && fail "the holder did not open stale.bin"
	sleep 0.05
done
pid=$(status_get pid)
touch "$FAILIF"
kill -KILL "$pid"
# While no process can serve: stale.bin changes (new bytes, new mtime).
rand_file "$B/stale.bin" $((2 * MiB))
touch -d '+7 seconds' "$B/stale.bin"
mows_make_manifest "$B"
cpu0=$(awk '{ print $14 + $15 }' "/proc/$MOWS_PID/stat")
sleep 8
cpu1=$(awk '{ print $14 + $15 }' "/proc/$MOWS_PID/stat")
backoffs=$(grep -c 'next start in' "$MOWS_LOG")
starts=$(grep -c 'supervisor: started serving process' "$MOWS_LOG")
note "crash loop: $starts starts, $backoffs backoff lines, supervisor CPU $((cpu1 - cpu0)) ticks in 8 s"
[ "$backoffs" -ge 3 ] || soft_fail "crash loop: $backoffs backoff lines in 8 s (want >= 3)"
[ "$starts" -le 8 ] || soft_fail "crash loop: $starts starts in 8 s: no backoff"
[ $((cpu1 - cpu0)) -le 50 ] || soft_fail "crash loop: the supervisor used $((cpu1 - cpu0)) ticks of CPU in 8 s"
rm -f "$FAILIF"
newpid=$(wait_new_pid "$pid") || fail "no serving process 10 s after the crash loop ended"
touch "$SCRATCH/go"
wait "$holder"
assert_eq "errno ESTALE" "$(cat "$SCRATCH/held.out")" "a read of a file changed while no process served"
assert_cmp "$B/stale.bin" "$M/stale.bin" # a new open: the new bytes
assert_eq "$newpid" "$(status_get pid)" "pid in status after the crash loop"

# Bad upgrades say what is wrong and change nothing.
chmod -x "$SCRATCH/mows-fuse-new"
out=$(mows_ctl upgrade --binary "$SCRATCH/mows-fuse-new" 2>&1) && fail "an upgrade to a non-executable file succeeded: $out"
case $out in *"mows-fuse-new"*"executable"*) ;; *) fail "upgrade to a non-executable file: unclear message: $out" ;; esac
out=$(mows_ctl upgrade "$SCRATCH" 2>&1)
[ $? -eq 2 ] || fail "mowsctl upgrade PATH (not --binary) did not exit 2: $out"
assert_eq "$newpid" "$(status_get pid)" "pid after refused upgrades"
# An upgrade to a binary that never serves goes back to the one that did.
mows_ctl upgrade --binary /bin/false >/dev/null || fail "mowsctl upgrade --binary /bin/false was refused"
pid3=$(wait_new_pid "$newpid") || fail "no serving process after an upgrade to /bin/false"
assert_eq "$(readlink -f "$MOWS_FUSE")" "$(readlink "/proc/$pid3/exe")" "binary after a failed upgrade"
grep -q 'never served; going back to' "$MOWS_LOG" || fail "no log line about going back to the old binary"
assert_cmp "$B/r2.bin" "$M/r2.bin"
mows_umount "$M"

mows_mount "$B" "$M" --chunk-size=1M --max-memory=64M
out=$(mows_ctl upgrade 2>&1) && fail "mowsctl upgrade without a supervisor succeeded: $out"
case $out in *"supervise = on"*) ;; *) fail "upgrade without a supervisor: unclear message: $out" ;; esac
assert_eq 0 "$(status_get restarts)" "restarts without a supervisor"
assert_eq "$MOWS_PID" "$(status_get pid)" "pid without a supervisor"
mows_umount "$M"
soft_done
exit 0
