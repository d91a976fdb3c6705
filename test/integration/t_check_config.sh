#!/usr/bin/env bash
# mows-fuse --check-config validates a configuration exactly as start-up does and exits 0 or
# 2 without mounting, binding or creating anything: for every bad case it must print the same
# message as a real start; with /dev hidden (no /dev/fuse at all) a good configuration must
# still pass; a good one prints the effective values (file, then command line).
# timeout: 120
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
mkdir -p "$M"
mows_track_mount "$M"
rand_file "$B/a.bin" 12345
printf 'not-a-real-secret-0123456789abcdef\n' >"$SCRATCH/secret"
chmod 600 "$SCRATCH/secret"
cp "$SCRATCH/secret" "$SCRATCH/open-secret"
chmod 644 "$SCRATCH/open-secret"
SOCK=$SCRATCH/ctl.sock
PORT=$((20000 + $$ % 20000))

conf() { # NAME LINES...: writes $SCRATCH/NAME; sets CONF
	CONF=$SCRATCH/$1
	shift
	printf '%s\n' "$@" >"$CONF"
}

# check ARGS...: mows-fuse --check-config ARGS; sets RC, OUT, ERR (files).
n=0
check() {
	n=$((n + 1))
	OUT=$SCRATCH/c$n.out ERR=$SCRATCH/c$n.err
	timeout 10 "$MOWS_FUSE" --check-config "$@" >"$OUT" 2>"$ERR" </dev/null
	RC=$?
}

# same_as_start LABEL ARGS...: --check-config ARGS exits 2, and a real start with the same
# ARGS exits 2 with the same first line on stderr, without mounting.
same_as_start() {
	local label=$1 pid rc
	shift
	check "$@"
	[ $RC -eq 2 ] || { soft_fail "$label: --check-config exited $RC, expected 2: $(head -c 400 "$ERR")"; return; }
	[ -s "$ERR" ] || soft_fail "$label: exit 2 with nothing on stderr"
	"$MOWS_FUSE" -f "$@" >/dev/null 2>"$SCRATCH/start$n.err" </dev/null &
	pid=$!
	mows_track_pid $pid
	if ! wait_pid_gone $pid 10; then
		soft_fail "$label: the real start is still running after 10 s"
		return
	fi
	wait $pid
	rc=$?
	is_mounted "$M" && { soft_fail "$label: real start mounted $M"; fusermount3 -uz "$M"; }
	[ $rc -eq 2 ] || soft_fail "$label: real start exited $rc, expected 2"
	assert_eq "$(head -n 1 "$SCRATCH/start$n.err")" "$(head -n 1 "$ERR")" "$label: check vs start message" ||
		true
	note "$label: $(head -n 1 "$ERR")"
}

# ---- good configurations ----
conf good.conf "max_memory = 64M" "chunk_size = 1M" "listen = 127.0.0.1:$PORT" \
	"secret_file = $SCRATCH/secret" "control_socket = $SOCK" "verify = strict"
check -c "$CONF" --fill-threads=3 --backing "$B" "$M"
[ $RC -eq 0 ] || fail "good config: exit $RC: $(cat "$ERR")"
grep -q '^# mows-fuse: configuration OK$' "$OUT" || soft_fail "good config: no 'configuration OK': $(head -n 3 "$OUT")"
for kv in "max_memory = 64M" "chunk_size = 1M" "fill_threads = 3" "verify = strict" \
	"listen = 127.0.0.1:$PORT" "backing = $B" "transport = auto" "fill_timeout = 60s"; do
	grep -qxF "$kv" "$OUT" || soft_fail "good config: effective values lack '$kv'"
done
# Every key of the table is printed once, and the printed settings are themselves a valid file.
keys=$("$MOWS_FUSE" --list-keys | cut -f1 | sort)
[ "$(echo "$keys" | wc -l)" -ge 20 ] || soft_fail "--list-keys printed $(echo "$keys" | wc -l) keys"
assert_eq "$keys" "$(grep -v '^#' "$OUT" | sed 's/ = .*//' | sort)" "keys printed by --check-config"
FIRST=$OUT
check -c "$FIRST" "$M"
[ $RC -eq 0 ] || soft_fail "the printed settings as a file: exit $RC: $(cat "$ERR")"
# ... and read back they give the same values (every value prints as mows.conf reads it).
assert_eq "$(grep -v '^#' "$FIRST")" "$(grep -v '^#' "$OUT")" "settings printed, read back and printed again"
# Nothing was created, bound or mounted.
[ -e "$SOCK" ] && soft_fail "--check-config created the control socket $SOCK"
grep -q ":$(printf '%04X' $PORT) " /proc/net/tcp && soft_fail "port $PORT is bound after --check-config"
assert_not_mounted "$M"
# Without /dev/fuse (all of /dev hidden in a private mount namespace) it still passes, and a
# real start does not: proof it never opens /dev/fuse.
out=$(unshare -m --propagation private sh -c "mount -t tmpfs none /dev && \
	'$MOWS_FUSE' --check-config -c '$SCRATCH/good.conf' --backing '$B' '$M' >/dev/null; echo check=\$?; \
	timeout 10 '$MOWS_FUSE' -f -c '$SCRATCH/good.conf' --backing '$B' '$M' >/dev/null 2>&1; echo start=\$?") ||
	fail "unshare failed: $out"
[[ $out == *check=0* ]] || soft_fail "with no /dev/fuse, --check-config: $out"
[[ $out == *start=1* ]] || soft_fail "with no /dev/fuse, a real start should exit 1: $out"
# A start that fails at mount time (exit 1) removes the control socket it had bound.
if [ -e "$SOCK" ]; then
	soft_fail "the real start that failed to mount (exit 1) left its control socket $SOCK behind"
	rm -f "$SOCK"
fi
# No MOUNTPOINT: the settings alone.
check --max-memory=64M --backing "$B"
[ $RC -eq 0 ] || soft_fail "no mountpoint: exit $RC: $(cat "$ERR")"

# ---- bad configurations: exit 2, the same message as start-up ----
conf badkey.conf "max_memory = 64M" "max_memroy = 1G"
same_as_start "unknown key" -c "$CONF" "$M"
{ grep -q 'badkey.conf:2' "$ERR" && grep -q max_memory "$ERR"; } || soft_fail "unknown key: $(cat "$ERR")"
same_as_start "bad size" --max-memory=200Q "$M"
grep -q "200Q" "$ERR" || soft_fail "bad size: $(cat "$ERR")"
same_as_start "secret mode" --max-memory=64M --chunk-size=1M --listen "127.0.0.1:$PORT" \
	--secret-file "$SCRATCH/open-secret" --control-socket "$SOCK" "$M"
grep -q 'chmod 600' "$ERR" || soft_fail "secret mode: $(cat "$ERR")"
same_as_start "missing secret" --max-memory=64M --chunk-size=1M --listen "127.0.0.1:$PORT" \
	--secret-file "$SCRATCH/nope" --control-socket "$SOCK" "$M"
same_as_start "listen without secret" --max-memory=64M --listen "127.0.0.1:$PORT" "$M"
same_as_start "backing missing" --backing "$SCRATCH/nope" "$M"
same_as_start "mountpoint missing" --max-memory=64M "$SCRATCH/nomnt"
same_as_start "unknown flag" --no-such-flag=1 "$M"
same_as_start "too little memory" --max-memory=1M --chunk-size=1M "$M"
same_as_start "bad file" -c "$SCRATCH/nope.conf" "$M"
[ -e "$SOCK" ] && soft_fail "a bad start created the control socket"
soft_done
note "ok"
