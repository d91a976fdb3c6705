#!/usr/bin/env bash
# mows-fuse under a descriptor limit of 64: `ls -l` of a directory of 500 files and reads of
# all of them work (inodes pin no descriptor; fills share a bounded pool); running out of
# descriptors gives one clear log line naming the limit and the fix, and the daemon goes on.
# timeout: 180
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
N=500
"$PYTHON" - "$B/many" "$N" <<'PY' || fail "cannot make $B/many"
import os, sys
d, n = sys.argv[1], int(sys.argv[2])
os.makedirs(d)
for i in range(n):
    with open(os.path.join(d, "f%03d.bin" % i), "wb") as f:
        f.write(os.urandom(1000 + 37 * i))
PY
rand_file "$B/big.bin" $((9 * MiB + 1))

# The daemon itself runs with the low limit (soft and hard).
cat >"$SCRATCH/mows-fuse-lowfd" <<EOF
#!/bin/sh
ulimit -n 64 || exit 99
exec "$MOWS_ROOT/mows-fuse" "\$@"
EOF
chmod +x "$SCRATCH/mows-fuse-lowfd"
MOWS_FUSE=$SCRATCH/mows-fuse-lowfd
mows_mount "$B" "$M" --chunk-size=1M
limit=$(awk '/Max open files/ { print $4 }' "/proc/$MOWS_PID/limits")
assert_eq 64 "$limit" "the daemon's open-file limit"

# ls -l: a lookup and getattr of every entry.
drop_caches
out=$(timeout 60 ls -l "$M/many" 2>"$SCRATCH/ls.err") || fail "ls -l of $N files exited $?: $(head -n 3 "$SCRATCH/ls.err")"
[ -s "$SCRATCH/ls.err" ] && fail "ls -l of $N files printed errors: $(head -n 3 "$SCRATCH/ls.err")"
assert_eq $((N + 1)) "$(wc -l <<<"$out")" "lines of ls -l of $N files (with the total)"
note "daemon descriptors after ls -l: $(ls "/proc/$MOWS_PID/fd" | wc -l)"

# Reads of every file, each compared with the backing, twice (cold, then from the cache).
for pass in cold warm; do
	"$PYTHON" - "$B/many" "$M/many" <<'PY' || fail "reading $N files ($pass) failed (see above)"
import os, sys
b, m = sys.argv[1:3]
bad = []
for n in sorted(os.listdir(b)):
    try:
        with open(os.path.join(m, n), "rb") as f:
            got = f.read()
    except OSError as e:
        bad.append("%s: %s" % (n, e))
        continue
    if got != open(os.path.join(b, n), "rb").read():
        bad.append("%s: wrong bytes" % n)
if bad:
    print("FAIL: %d of %d files: %s" % (len(bad), len(os.listdir(b)), "; ".join(bad[:5])))
    sys.exit(1)
PY
	drop_caches
done
fds=$(ls "/proc/$MOWS_PID/fd" | wc -l)
note "daemon descriptors after reading $N files: $fds"
assert_le "$fds" 48 "descriptors the daemon holds after reading $N files"

# Exhaustion: lower the running daemon's limit to its lowest free descriptor number, so its
# next open fails; reading a file not yet cached must then fail with an error (not hang),
# the daemon says why once, naming the limit and the fix, and goes on once it is raised.
command -v prlimit >/dev/null || fail "needs prlimit (util-linux)"
free_fd=0
while [ -e "/proc/$MOWS_PID/fd/$free_fd" ]; do free_fd=$((free_fd + 1)); done
prlimit --pid "$MOWS_PID" --nofile="$free_fd:64" || fail "prlimit --pid $MOWS_PID failed"
note "daemon limited to descriptors below $free_fd"
out=$(timeout 20 cat "$M/big.bin" 2>&1 >/dev/null)
rc=$?
prlimit --pid "$MOWS_PID" --nofile=64:64 || fail "prlimit --pid $MOWS_PID failed"
[ $rc -eq 124 ] && fail "reading a new file with no descriptor left hung"
[ $rc -ne 0 ] || fail "reading a new file succeeded with no descriptor left"
note "reading with no descriptor left: $out"
retry_until 5 grep -q "out of file descriptors.*may have [0-9]* open.*raise LimitNOFILE= in the systemd unit or 'ulimit -n'" "$MOWS_LOG" ||
	fail "no log line naming the descriptor limit and how to raise it"
n=$(grep -c "out of file descriptors" "$MOWS_LOG")
assert_le "$n" 1 "log lines about running out of descriptors (rate limited)"
out=$(timeout 30 ls -l "$M/many" 2>&1 | wc -l)
assert_eq $((N + 1)) "$out" "lines of ls -l after running out of descriptors"
assert_cmp "$B/many/f123.bin" "$M/many/f123.bin"
retry_until 10 cmp -s "$B/big.bin" "$M/big.bin" || fail "big.bin does not read right after the descriptors came back"
pid_alive "$MOWS_PID" || fail "mows-fuse died"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
exit 0
