#!/usr/bin/env bash
# systemd's notify and journal protocols, as systemd would see them (no systemd runs here):
# the test listens on NOTIFY_SOCKET and on the journal socket (in a private mount namespace,
# over a tmpfs on /run/systemd), starts mows-fuse as a Type=notify unit would, and checks that
# READY=1 arrives only once the mount serves (the listener reads a file through the mount the
# moment READY=1 arrives), WATCHDOG=1 keeps coming every half WATCHDOG_USEC, STATUS= says
# what is served, STOPPING=1 comes at the end, and log lines reach the journal with PRIORITY=,
# SYSLOG_IDENTIFIER= and MOWS_FILE= on a CRC mismatch. The pings prove the FUSE loop answers:
# the daemon's backing is a second mows mount, and while that one is stopped (SIGSTOP) the
# first still answers statfs from its metadata snapshot, so the pings go on.
# timeout: 120
if [ -z "${MOWS_NOTIFY_NS:-}" ]; then
	exec env MOWS_NOTIFY_NS=1 unshare -m --propagation private bash "$0" "$@"
fi
. "$(dirname "$0")/lib.sh"

mount -t tmpfs -o mode=0755,size=1M mows-notify-test /run/systemd ||
	fail "cannot mount a tmpfs on /run/systemd in this test's mount namespace"
mkdir -p /run/systemd/journal

B=$SCRATCH/backing
M=$SCRATCH/mnt
EV=$SCRATCH/events.jsonl
LISTENER_PID=
LOWER_PID=

_notify_cleanup() {
	local rc=$?
	[ -n "$LOWER_PID" ] && kill -CONT "$LOWER_PID" 2>/dev/null
	if [ -n "$LISTENER_PID" ]; then
		kill -TERM "$LISTENER_PID" 2>/dev/null
		wait_pid_gone "$LISTENER_PID" 5 || kill -KILL "$LISTENER_PID" 2>/dev/null
		if [ "$rc" -ne 0 ] && [ -s "$EV" ]; then
			echo "---- last datagrams received ----" >&2
			tail -n 15 "$EV" >&2
		fi
	fi
	(exit "$rc")
	_mows_cleanup
}
trap _notify_cleanup EXIT

rand_file "$B/model.bin" $((5 * MiB + 3))
rand_file "$B/bad.bin" $((2 * MiB))
mows_make_manifest "$B"
py flipbyte "$B/bad.bin" 4242
# The lower mount, which the daemon under test uses as its backing directory.
L=$SCRATCH/lower
mows_mount "$B" "$L" --chunk-size=1M --max-memory=32M --verify=off
LOWER_PID=$MOWS_PID

# The listener: every datagram as one JSON line {t, sock, fields}; on READY=1 it reads
# model.bin through the mount at once and records whether that worked.
cat >"$SCRATCH/listen.py" <<'PY'
import json, os, select, socket, sys, time
sys.path.insert(0, os.environ["MOWS_IT"])
from helpers import journal_fields
notify_path, journal_path, out_path, mnt, backing = sys.argv[1:6]
def bind(path):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(path)
    return s
def serves():
    try:
        with open("/proc/mounts") as f:
            ok = any(l.split()[1] == mnt and "mows" in l for l in f)
        if not ok:
            return "not mounted by mows"
        with open(os.path.join(mnt, "model.bin"), "rb") as a, \
             open(os.path.join(backing, "model.bin"), "rb") as b:
            return "ok" if a.read() == b.read() else "wrong bytes"
    except OSError as e:
        return "error: %s" % e
socks = {bind(notify_path): "notify", bind(journal_path): "journal"}
out = open(out_path, "a")
print(json.dumps({"t": time.monotonic(), "sock": "listening"}), file=out, flush=True)
while True:
    for s in select.select(list(socks), [], [])[0]:
        data = s.recv(1 << 16)
        ev = {"t": time.monotonic(), "sock": socks[s]}
        if socks[s] == "notify":
            ev["fields"] = dict(l.split("=", 1) for l in data.decode().splitlines() if "=" in l)
            if ev["fields"].get("READY") == "1":
                ev["serves"] = serves()
        else:
            ev["fields"] = journal_fields(data)
        print(json.dumps(ev), file=out, flush=True)
PY
mkdir -p "$M"
MOWS_IT="$MOWS_IT" "$PYTHON" "$SCRATCH/listen.py" "$SCRATCH/notify.sock" /run/systemd/journal/socket "$EV" \
	"$(realpath "$M")" "$B" 2>"$SCRATCH/listen.err" &
LISTENER_PID=$!
retry_until 10 test -s "$EV" || fail "listener did not start: $(cat "$SCRATCH/listen.err")"

# count EXPR: how many received datagrams satisfy the Python expression EXPR (ev bound).
count() {
	"$PYTHON" -c '
import json, sys
n = 0
for l in open(sys.argv[1]):
    ev = json.loads(l); f = ev.get("fields", {})
    n += bool(eval(sys.argv[2]))
print(n)' "$EV" "$1"
}
first() { # EXPR KEY: KEY of the first datagram satisfying EXPR, or "none"
	"$PYTHON" -c '
import json, sys
for l in open(sys.argv[1]):
    ev = json.loads(l); f = ev.get("fields", {})
    if eval(sys.argv[2]):
        print(ev.get(sys.argv[3], f.get(sys.argv[3]))); break
else:
    print("none")' "$EV" "$1" "$2"
}

# Started the way systemd starts a Type=notify service with WatchdogSec=0.4 whose stderr
# is the journal stream. The daemon log file is that stream.
touch "$SCRATCH/daemon2.log"
export NOTIFY_SOCKET=$SCRATCH/notify.sock WATCHDOG_USEC=400000
JOURNAL_STREAM=$(stat -c %d:%i "$SCRATCH/daemon2.log")
export JOURNAL_STREAM
mows_mount "$L" "$M" --chunk-size=1M --max-memory=64M --verify=file
unset NOTIFY_SOCKET WATCHDOG_USEC JOURNAL_STREAM

ready() { [ "$(count 'f.get("READY") == "1"')" -ge 1 ]; }
retry_until 10 ready || fail "no READY=1 within 10 s of mounting"
assert_eq 1 "$(count 'f.get("READY") == "1"')" "READY=1 datagrams"
assert_eq ok "$(first 'f.get("READY") == "1"' serves)" "reading $M/model.bin the moment READY=1 arrived"
status=$(first '"STATUS" in f' STATUS)
[[ $status == "serving $(realpath "$M")"* ]] || fail "first STATUS= is '$status', expected 'serving $M: ...'"

# The watchdog: a ping every 0.2 s; over 2 s at least 6 (a loaded machine may delay some).
w0=$(count 'f.get("WATCHDOG") == "1"')
sleep 2
w1=$(count 'f.get("WATCHDOG") == "1"')
[ $((w1 - w0)) -ge 6 ] || fail "only $((w1 - w0)) WATCHDOG=1 in 2 s with WATCHDOG_USEC=400000 (expected about 10)"
note "READY=1 once, $((w1 - w0)) WATCHDOG=1 in 2 s, STATUS=$status"

# The journal: structured entries, and a CRC mismatch names its file in MOWS_FILE=.
n=$(count 'ev["sock"] == "journal" and f.get("SYSLOG_IDENTIFIER") == "mows-fuse" and f.get("PRIORITY") == "6" and "serving" in f.get("MESSAGE", "")')
[ "$n" -ge 1 ] || fail "no journal entry 'serving ...' with PRIORITY=6 and SYSLOG_IDENTIFIER=mows-fuse"
n=$(count 'ev["sock"] == "journal" and f.get("PRIORITY") == "7"')
[ "$n" -ge 1 ] || fail "no journal entry with PRIORITY=7 although --log-level=debug"
n=$(count '"CODE_FILE" in f and f["CODE_FILE"].startswith("common/log")')
assert_eq 0 "$n" "journal entries whose CODE_FILE names the logger, not the caller"
# verify = file: the mismatch shows once every chunk was read; the read may return first.
cat "$M/bad.bin" >/dev/null 2>&1
mismatch() { [ "$(count 'ev["sock"] == "journal" and f.get("MOWS_FILE") == "bad.bin" and f.get("PRIORITY") in ("3", "4") and "crc32 mismatch" in f.get("MESSAGE", "")')" -ge 1 ]; }
retry_until 10 mismatch || fail "no journal entry 'crc32 mismatch' with MOWS_FILE=bad.bin and PRIORITY 3 or 4"
[ "$(grep -vc '^+ ' "$SCRATCH/daemon2.log")" -eq 0 ] ||
	fail "the daemon wrote to stderr although it is the journal stream: $(grep -v '^+ ' "$SCRATCH/daemon2.log" | head -n 3)"

# The pings follow the FUSE loop, not the storage: with the backing (the lower mount's
# daemon) stopped, statfs is answered from the metadata snapshot and the pings go on.
kill -STOP "$LOWER_PID"
sleep 0.6
w0=$(count 'f.get("WATCHDOG") == "1"')
sleep 1.5
w1=$(count 'f.get("WATCHDOG") == "1"')
kill -CONT "$LOWER_PID"
[ $((w1 - w0)) -ge 2 ] ||
	fail "only $((w1 - w0)) WATCHDOG=1 in 1.5 s while the backing was stopped: the mount answers from memory, so the pings must go on"
note "$((w1 - w0)) WATCHDOG=1 in 1.5 s while the backing was stopped (the mount answers from memory)"

mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
mows_umount "$L" "$LOWER_PID"
stopping() { [ "$(count 'f.get("STOPPING") == "1"')" -ge 1 ]; }
retry_until 5 stopping || fail "no STOPPING=1 when the daemon stopped"
