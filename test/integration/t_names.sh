#!/usr/bin/env bash
# Backing file names with a newline, tab, quote, backslash, terminal escape, invalid UTF-8 or
# a forged protocol line ("\n= 0") break nothing: every mowsctl command exits 0, `status`
# prints exactly one line per file with the name escaped (\n, \t, \\, \xHH), `status --json`
# and `verify --json` parse as JSON (python3 json) and give every valid UTF-8 name exactly
# (a non-UTF-8 one as U+FFFD plus an exact "path_escaped"), and the files read right.
# timeout: 120
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
mkdir -p "$B"
names=(
	$'nl\nname.bin' $'tab\tname.bin' 'quote"name.bin' 'back\slash.bin' 'lit\n.bin'
	$'bad\xffutf8.bin' $'esc\x1b[31mred.bin' $'inject\n= 0\n. fake.bin' 'ünï cödé.bin'
	$'cr\rname.bin' $'dir\nwith nl/inner"q.bin' $'dir\nwith nl/\x80lone.bin' 'plain.bin'
)
i=0
for n in "${names[@]}"; do
	mkdir -p "$B/$(dirname "$n")"
	rand_file "$B/$n" $((1000 + 777 * i))
	i=$((i + 1))
done

mows_mount "$B" "$M" --chunk-size=64K --max-memory=16M

# The checker: escapes each backing name the way the protocol defines (its own code, not
# the daemon's) and compares with what mowsctl printed.
check() { # MODE FILE
	"$PYTHON" - "$B" "$1" "$2" <<'EOF'
import json, os, re, sys
backing, mode, path = sys.argv[1], sys.argv[2], sys.argv[3]
def names(top):
    out = []
    for d, dirs, files in os.walk(os.fsencode(top)):
        for f in files:
            out.append(os.path.relpath(os.path.join(d, f), os.fsencode(top)))
    return sorted(out)
def utf8_len(b, i):
    for n in (1, 2, 3, 4):
        try:
            b[i:i + n].decode('utf-8')
            return n
        except UnicodeDecodeError:
            pass
    return 0
def escape(b):
    out, i = '', 0
    while i < len(b):
        c = b[i]
        k = utf8_len(b, i) if c >= 0x20 and c != 0x7f and c != 0x5c else 0
        if k:
            out += b[i:i + k].decode('utf-8'); i += k; continue
        out += {0x5c: '\\\\', 9: '\\t', 10: '\\n', 13: '\\r'}.get(c, '\\x%02x' % c); i += 1
    return out
want = names(backing)
data = open(path, 'rb').read()
bad = []
if mode == 'text':
    lines = data.decode('utf-8').split('\n')  # must be UTF-8: every odd byte is escaped
    assert lines[-1] == '', 'output does not end in a newline'
    rows = [l for l in lines if l.startswith(('cold', 'cached', 'partial', 'verified', 'mismatch', 'failed'))]
    got = sorted(re.match(r'\S+ +\S+ +\S+  (.*)$', r).group(1) for r in rows)
    exp = sorted(escape(n) for n in want)
    if got != exp:
        bad.append('status rows %r, expected %r' % (got, exp))
elif mode in ('json', 'verify-json'):
    objs = [json.loads(l) for l in data.decode('utf-8').splitlines()] if mode == 'verify-json' \
        else json.loads(data)['files']
    got = {}
    for f in objs:
        p = f['path']
        if '\ufffd' in p:
            p = f['path_escaped']
            assert '\ufffd' not in p
        got[p] = f
    exp = {}
    for n in want:
        try:
            exp[n.decode('utf-8')] = n
        except UnicodeDecodeError:
            exp[escape(n)] = n
    if sorted(got) != sorted(exp):
        bad.append('JSON paths %r, expected %r' % (sorted(got), sorted(exp)))
    for k, f in got.items():
        if 'size' in f and f['size'] != os.path.getsize(os.path.join(os.fsencode(backing), exp[k])):
            bad.append('size of %r' % k)
if bad:
    print('\n'.join(bad)); sys.exit(1)
print('%s: %d names as expected' % (mode, len(want)))
EOF
}

# Read every file through the mount (byte for byte), so status lists them all.
for n in "${names[@]}"; do assert_cmp "$B/$n" "$M/$n"; done

out=$SCRATCH/status.txt
mows_ctl status >"$out" 2>"$SCRATCH/err" || fail "mowsctl status exited $?: $(cat "$SCRATCH/err")"
note "$(cat "$out")"
assert_ok "status text: one escaped line per file" -- check text "$out"
grep -q '^fake.bin\|^= 0' "$out" && fail "a forged line from a file name reached mowsctl's output: $(cat "$out")"
mows_ctl status --json >"$out" 2>"$SCRATCH/err" || fail "mowsctl status --json exited $?: $(cat "$SCRATCH/err")"
assert_ok "status --json parses and names every file" -- check json "$out"

# Every command with such names as arguments, one at a time and all at once.
args=()
for n in "${names[@]}"; do args+=("$M/$n"); done
for cmd in prefetch evict verify; do
	for a in "${args[@]}"; do
		o=$(mows_ctl "$cmd" "$a" 2>&1) || fail "mowsctl $cmd $(printf %q "$a") exited $?: $o"
	done
	o=$(mows_ctl "$cmd" "${args[@]}" 2>&1) || fail "mowsctl $cmd (all ${#args[@]} names) exited $?: $o"
	n=$(grep -c . <<<"$o")
	[ "$cmd" = prefetch ] || assert_eq ${#args[@]} "$n" "lines printed by mowsctl $cmd of ${#args[@]} files: $o"
done
o=$(mows_ctl prefetch "$M" 2>&1) || fail "mowsctl prefetch of the whole mount exited $?: $o"
mows_ctl verify --json "${args[@]}" >"$out" 2>"$SCRATCH/err" ||
	fail "mowsctl verify --json exited $?: $(cat "$SCRATCH/err")"
assert_ok "verify --json: one JSON object per file" -- check verify-json "$out"
mows_ctl status --json >"$out" 2>"$SCRATCH/err" || fail "mowsctl status --json exited $?: $(cat "$SCRATCH/err")"
assert_ok "status --json after prefetch" -- check json "$out"

# An argument that is not under the mount, with a newline, gets an error on one line.
o=$(mows_ctl evict $'/no\nsuch' 2>&1) && fail "mowsctl evict of a path outside the mount succeeded: $o"
assert_eq 1 "$(grep -c . <<<"$o")" "lines of the error for a path with a newline: $o"

# A request too long for the daemon gets its reason and exit 2, not a SIGPIPE or a hang.
many=()
for ((i = 0; i < 1100; i++)); do many+=("$M/plain.bin"); done
o=$(mows_ctl evict "${many[@]}" 2>&1 >/dev/null)
assert_eq 2 $? "mowsctl exit status for 1100 paths in one request (stderr: $o)"
[[ $o == *"give fewer"* ]] || fail "mowsctl with 1100 paths does not say to give fewer: $o"

for n in "${names[@]}"; do assert_cmp "$B/$n" "$M/$n"; done
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"

# mowsctl finds the daemon from a path under a mount point with a space and a backslash
# (octal-escaped in /proc/self/mountinfo) at its default socket; a decoy socket in /run/mows
# keeps it from guessing "the only daemon".
M2="$SCRATCH/mnt two\\x"
mkdir -p "$M2" /run/mows
sock2=/run/mows/$(realpath "$M2" | cut -c2- | tr / -).sock
decoy=/run/mows/mowsti-$$-decoy.sock
MOWS_MOUNT_SOCK=$sock2 mows_mount "$B" "$M2" --chunk-size=64K --max-memory=16M
: >"$decoy"
o=$("$MOWS_CTL" prefetch "$M2/plain.bin" 2>&1)
rc=$?
rm -f "$decoy"
assert_eq 0 $rc "mowsctl prefetch (no -s) of a file under '$M2': $o"
mows_umount "$M2"
