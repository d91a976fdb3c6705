#!/usr/bin/env bash
# test/bin/faultfs itself, so that the fault tests cannot pass because a fault was never
# injected: each action read directly through faultfs (no mows) does exactly what its rule
# says, only on its range; times=N counts; a changed rules file applies to the next read;
# a rules file that does not parse stops faultfs with exit 2 and a message naming the line.
# timeout: 60
. "$(dirname "$0")/lib.sh"

SRC=$SCRATCH/src
FF=$SCRATCH/ff
RULES=$SCRATCH/rules
mkdir -p "$SRC"
rand_file "$SRC/f.bin" 100000
rand_file "$SRC/g.bin" 100000
set_rules() { printf '%s\n' "$@" >"$RULES.new" && mv "$RULES.new" "$RULES"; }

printf 'f.bin 0 10 explode\n' >"$RULES"
out=$("$FAULTFS" --rules "$RULES" "$SRC" "$FF" -f 2>&1)
assert_eq 2 $? "faultfs exit status with a bad rules file (output: $out)"
[[ $out == *"$RULES:1:"* ]] || fail "faultfs does not name the bad line of the rules file: $out"

set_rules '# nothing yet'
faultfs_mount "$SRC" "$FF" "$RULES"
assert_cmp "$SRC/f.bin" "$FF/f.bin"

# probe OP FILE OFF LEN: one pread straight through faultfs; prints "n=COUNT diff=OFFSETS"
# (offsets that differ from the source), or "errno=N", and "t=SECONDS".
probe() {
	"$PYTHON" - "$SRC/$1" "$FF/$1" "$2" "$3" <<'EOF'
import os, sys, time
src, ff, off, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
want = open(src, 'rb').read()[off:off + n]
fd = os.open(ff, os.O_RDONLY)
t = time.monotonic()
try:
    got = os.pread(fd, n, off)
    diff = [off + i for i in range(len(got)) if got[i] != want[i]]
    r = 'n=%d diff=%s' % (len(got), ','.join(map(str, diff)) or '-')
except OSError as e:
    r = 'errno=%d' % e.errno
print('%s t=%.1f' % (r, time.monotonic() - t))
EOF
}
check() { # WHAT FILE OFF LEN EXPECTED-PREFIX
	local got
	got=$(probe "$2" "$3" "$4")
	[[ $got == "$5"* ]] || soft_fail "$1: pread($2, off $3, len $4) gave '$got', expected '$5...'"
}

set_rules 'f.bin 5000 10 eio'
check "eio in range" f.bin 4096 4096 "errno=5"
check "eio outside the range" f.bin 16384 4096 "n=4096 diff=-"
check "eio on another file" g.bin 4096 4096 "n=4096 diff=-"
set_rules 'f.bin 5000 - short'
check "short before the range" f.bin 4096 4096 "n=904 diff=-"
check "short inside the range" f.bin 8192 4096 "n=2048 diff=-"
set_rules 'f.bin 5000 - eof'
check "eof inside the range" f.bin 8192 4096 "n=0 "
set_rules 'f.bin 5000 2 flip' 'g.bin 10 1 flip 0x80'
check "flip" f.bin 4096 4096 "n=4096 diff=5000,5001 "
check "flip with a mask" g.bin 0 100 "n=100 diff=10 "
set_rules '* 0 - stall 1.5'
check "stall" g.bin 0 10 "n=10 diff=- t=1.5"
set_rules 'f.bin 0 - eio times=2'
check "times=2, first" f.bin 0 10 "errno=5"
check "times=2, second" f.bin 0 10 "errno=5"
check "times=2, third" f.bin 0 10 "n=10 diff=-"
kill -HUP "${_MOWS_PIDS[0]}"
check "SIGHUP reloads (times=2 again)" f.bin 0 10 "errno=5"
grep -q 'faultfs: eio f.bin off=0 len=10' "$FAULTFS_LOG" || soft_fail "faultfs does not log the faults it injects"
soft_done
