#!/usr/bin/env bash
# Metadata from memory: with the store stopped (its FUSE daemon SIGSTOPped), `ls -lR`, stat,
# readlink and find through mows answer from the snapshot taken at mount, unchanged and at
# once. A file added or changed in the store appears after `mowsctl refresh` (not before);
# a refresh that cannot reach the store keeps the snapshot, says so, and listings go on.
# The store is a second mows-fuse over a plain directory, so it can be stopped for real.
# timeout: 120
. "$(dirname "$0")/lib.sh"

R=$SCRATCH/real
S=$SCRATCH/store
M=$SCRATCH/mnt
mows_make_tree "$R"

mows_mount "$R" "$S"
STORE_PID=$MOWS_PID
STORE_SOCK=$MOWS_SOCK
# Never leave the store stopped, whatever happens.
trap '_rc=$?; kill -CONT "$STORE_PID" 2>/dev/null; (exit $_rc); _mows_cleanup' EXIT
mows_mount "$S" "$M" --metadata-ttl=1h
note "snapshot at mount: $(grep -o 'metadata: [0-9]* entries' "$MOWS_LOG" | head -n 1)"

listing() { # DIR OUT: ls -lR with full times, under a deadline
	(cd "$1" && timeout 10 ls -lR --time-style=full-iso .) >"$2" 2>"$2.err"
}
listing "$M" "$SCRATCH/ref.txt" || fail "ls -lR of the mount failed with the store running: $(head -n 3 "$SCRATCH/ref.txt.err")"
listing "$R" "$SCRATCH/real.txt" || fail "ls -lR of $R failed"
# The mount shows the same tree as the directory under the store (device numbers aside).
diff <(grep -v '^total' "$SCRATCH/real.txt") <(grep -v '^total' "$SCRATCH/ref.txt") >"$SCRATCH/d1" ||
	fail "ls -lR of the mount differs from the real tree: $(head -n 8 "$SCRATCH/d1")"
nfind=$(find "$M" | wc -l)

# ---- the store stops answering ----
kill -STOP "$STORE_PID"
start=$EPOCHREALTIME
listing "$M" "$SCRATCH/stopped.txt" || fail "ls -lR of the mount with the store stopped failed or hung (exit $?): $(head -n 3 "$SCRATCH/stopped.txt.err")"
secs=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }')
note "ls -lR with the store stopped: $secs s"
diff "$SCRATCH/ref.txt" "$SCRATCH/stopped.txt" >"$SCRATCH/d2" ||
	fail "ls -lR with the store stopped differs: $(head -n 8 "$SCRATCH/d2")"
v=$(timeout 5 readlink "$M/links/to-file") || fail "readlink with the store stopped failed or hung"
assert_eq "../one.bin" "$v" "readlink links/to-file with the store stopped"
v=$(timeout 5 stat -c %s "$M/sub/a/b/c/shard.bin") || fail "stat with the store stopped failed or hung"
assert_eq $((6 * MiB + 11)) "$v" "size of sub/a/b/c/shard.bin with the store stopped"
v=$(timeout 5 df "$M" | wc -l) || fail "df with the store stopped failed or hung"
v=$(timeout 10 find "$M" | wc -l)
assert_eq "$nfind" "$v" "entries found by find with the store stopped"
timeout 5 stat "$M/not-there" >/dev/null 2>&1
[ $? -eq 124 ] && fail "a lookup of a missing name hung with the store stopped"
kill -CONT "$STORE_PID"

# ---- changes appear on refresh ----
rand_file "$R/added.bin" 12345
rand_file "$R/one.bin" 2
sleep 1.2 # past attr_timeout: the kernel asks mows again
[ -e "$M/added.bin" ] && fail "added.bin appeared before any refresh (not from the snapshot?)"
# The store is a mows mount too: it answers from its own snapshot until it refreshes.
out=$(timeout 60 "$MOWS_CTL" -s "$STORE_SOCK" refresh 2>&1) || fail "mowsctl refresh of the store exited $?: $out"
out=$(timeout 60 "$MOWS_CTL" -s "$MOWS_SOCK" refresh 2>&1) || fail "mowsctl refresh exited $?: $out"
[[ $out == *"refreshed"*"entries"* ]] || fail "mowsctl refresh said: $out"
note "$out"
retry_until 5 test -e "$M/added.bin" || fail "added.bin did not appear after mowsctl refresh"
assert_cmp "$R/added.bin" "$M/added.bin"
retry_until 5 test "$(stat -c %s "$M/one.bin")" = 2 || fail "one.bin's new size did not show after the refresh"
assert_cmp "$R/one.bin" "$M/one.bin"
listing "$M" "$SCRATCH/ref2.txt" || fail "ls -lR after the refresh failed"

# ---- a refresh that cannot reach the store keeps the snapshot ----
# The store's daemon dies: every request to it now fails (ENOTCONN) instead of waiting.
kill -KILL "$STORE_PID"
wait_pid_gone "$STORE_PID" 10 || fail "the store daemon did not die"
out=$(timeout 60 "$MOWS_CTL" -s "$MOWS_SOCK" refresh 2>&1)
rc=$?
[ $rc -ne 0 ] || fail "mowsctl refresh succeeded with the store gone: $out"
[[ $out == *"old snapshot stays"* ]] || fail "mowsctl refresh with the store gone said: $out"
grep -q "metadata: cannot list the backing tree .*keeping the snapshot" "$MOWS_LOG" ||
	fail "the daemon log does not say the refresh failed and the snapshot stays"
timeout 60 "$MOWS_CTL" -s "$MOWS_SOCK" refresh >/dev/null 2>&1
n=$(grep -c "metadata: cannot list the backing tree" "$MOWS_LOG")
assert_eq 1 "$n" "log lines about failed refreshes after two of them"
listing "$M" "$SCRATCH/gone.txt" || fail "ls -lR with the store gone failed: $(head -n 3 "$SCRATCH/gone.txt.err")"
diff "$SCRATCH/ref2.txt" "$SCRATCH/gone.txt" >"$SCRATCH/d3" ||
	fail "ls -lR with the store gone differs from before: $(head -n 8 "$SCRATCH/d3")"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
fusermount3 -uz "$S" 2>/dev/null
exit 0
