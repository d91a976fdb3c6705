#!/usr/bin/env bash
# mowsctl status --watch under tmux: typed into a shell with send-keys, it redraws one
# screen in place (the header is on the pane once, not scrolled) while a slow reader reads
# through the mount, the numbers on two captures differ, and Ctrl-C ends it with status 0.
# timeout: 90
. "$(dirname "$0")/lib.sh"
command -v tmux >/dev/null || fail "needs tmux (make deps installs it)"

B=$SCRATCH/backing
M=$SCRATCH/mnt
TS=mows-watch-$$
READER=
_watch_cleanup() {
	local rc=$?
	tmux kill-session -t "$TS" 2>/dev/null
	[ -n "$READER" ] && kill "$READER" 2>/dev/null
	(exit "$rc")
	_mows_cleanup
}
trap _watch_cleanup EXIT

rand_file "$B/model.bin" $((48 * MiB))
mows_make_manifest "$B"
mows_mount "$B" "$M" --chunk-size=1M --max-memory=64M --readahead-chunks=0

# A reader at about 8 MiB/s: 256 KiB every 30 ms, for longer than the test looks.
"$PYTHON" -c '
import sys, time
with open(sys.argv[1], "rb", buffering=0) as f:
    while f.read(1 << 18):
        time.sleep(0.03)' "$M/model.bin" &
READER=$!

tmux new-session -d -s "$TS" -x 100 -y 20 "env -i PATH=$PATH TERM=xterm ${ASAN_OPTIONS:+ASAN_OPTIONS=$ASAN_OPTIONS} bash --norc --noprofile" ||
	fail "tmux cannot start a session"
tmux send-keys -t "$TS" "$MOWS_CTL -s $MOWS_SOCK status --watch --interval 0.5; echo watch-exit=\$?" Enter

# capture FILE: the pane as text, once the watch screen is on it (10 s deadline).
capture() {
	local end=$((SECONDS + 10))
	until tmux capture-pane -p -t "$TS" >"$1" && grep -q '^reads ' "$1"; do
		[ $SECONDS -ge $end ] && fail "no watch screen in the pane within 10 s: $(cat "$1")"
		sleep 0.2
	done
}
capture "$SCRATCH/a.txt"
sleep 1.6
capture "$SCRATCH/b.txt"
note "second capture:$(printf '\n%s' "$(cat "$SCRATCH/b.txt")")"

for f in a b; do
	n=$(grep -c '^mows on ' "$SCRATCH/$f.txt")
	assert_eq 1 "$n" "watch headers on the pane in capture $f (a redraw in place leaves one)"
	grep -q "^mows on $(realpath "$M")" "$SCRATCH/$f.txt" || fail "capture $f does not name the mount: $(cat "$SCRATCH/$f.txt")"
	for l in memory 'hit ratio' 'from storage' fills; do
		grep -q "^$l " "$SCRATCH/$f.txt" || fail "capture $f has no '$l' line: $(cat "$SCRATCH/$f.txt")"
	done
done
ra=$(grep '^reads ' "$SCRATCH/a.txt")
rb=$(grep '^reads ' "$SCRATCH/b.txt")
[ "$ra" != "$rb" ] || fail "the reads line did not change in 1.6 s while a reader ran: '$ra'"
grep -q '^reads .* [1-9][0-9.]*[KMG]/s now' "$SCRATCH/b.txt" ||
	fail "no nonzero read rate while a reader runs: '$rb'"
fa=$(grep '^from storage ' "$SCRATCH/a.txt")
fb=$(grep '^from storage ' "$SCRATCH/b.txt")
[ "$fa" != "$fb" ] || fail "bytes from storage did not change in 1.6 s while a reader ran: '$fa'"

tmux send-keys -t "$TS" C-c
# The terminal echoes ^C just before it, on the same line.
done_now() { tmux capture-pane -p -t "$TS" | grep -q 'watch-exit=[0-9]'; }
retry_until 5 done_now || fail "mowsctl status --watch did not end within 5 s of Ctrl-C"
assert_eq watch-exit=0 "$(tmux capture-pane -p -t "$TS" | grep -o -m1 'watch-exit=[0-9]*')" "mowsctl status --watch exit after Ctrl-C"

# Not a terminal: one block per refresh, no escape sequences.
timeout -s INT 1.3 "$MOWS_CTL" -s "$MOWS_SOCK" status --watch --interval 0.5 >"$SCRATCH/pipe.txt"
n=$(grep -c '^mows on ' "$SCRATCH/pipe.txt")
[ "$n" -ge 2 ] || fail "status --watch into a pipe printed $n blocks in 1.3 s at 0.5 s"
grep -q $'\033' "$SCRATCH/pipe.txt" && fail "status --watch wrote escape sequences into a pipe"

kill "$READER" 2>/dev/null
wait "$READER" 2>/dev/null
READER=
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
