#!/bin/bash
# mows-crc32 end to end: the manifest it writes matches Python's zlib.crc32 line for line;
# --check passes, then catches a changed byte and a missing file; usage errors exit 2.
# Usage: t_crc32_tool.sh [REPO_ROOT]. Builds nothing. Exit 0 pass, 1 fail, 77 skipped.
set -u

root=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
tool=$root/mows-crc32
if [ ! -x "$tool" ]; then
	echo "SKIP: $tool is not built (make mows-crc32)"
	exit 77
fi
if ! command -v python3 >/dev/null; then
	echo "SKIP: python3 is needed for the reference CRCs"
	exit 77
fi

tmp=$(mktemp -d /tmp/t_crc32_tool.XXXXXX) || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' INT TERM
d=$tmp/tree

fail() {
	echo "FAIL: $*"
	exit 1
}

# Prints the manifest Python would write for $1, leaving out the files named after it.
reference() {
	python3 - "$@" <<'EOF'
import os, stat, sys, zlib
root, skip = sys.argv[1], set(sys.argv[2:])
lines = []
for dirpath, dirnames, filenames in os.walk(root):  # does not descend symlinked dirs
    for name in filenames:
        path = os.path.join(dirpath, name)
        rel = os.path.relpath(path, root)
        if not stat.S_ISREG(os.lstat(path).st_mode) or rel in skip:
            continue
        if any(c in rel for c in " \t\n\r\v\f"):
            continue
        crc = 0
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                crc = zlib.crc32(block, crc)
        lines.append((os.fsencode(rel), "%08x %s" % (crc, rel)))
for _, line in sorted(lines):
    print(line)
EOF
}

crc_of() {
	python3 -c 'import sys, zlib; print("%08x" % zlib.crc32(open(sys.argv[1], "rb").read()))' "$1"
}

# Overwrites bytes of $1 at offset $2 with $3, keeping its length.
poke() {
	python3 -c 'import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(int(sys.argv[2])); f.write(sys.argv[3].encode())' "$1" "$2" "$3"
}

mkdir -p "$d/a/b/c" "$d/empty-dir" || fail "cannot make the tree in $tmp"
printf 123456789 >"$d/a/b/c/digits"
: >"$d/empty"
echo hidden >"$d/.hidden"
head -c $((5 << 20)) /dev/urandom >"$d/a/five-mib.bin"   # more than one 4 MiB read
# 129 MiB, mostly a hole: three 64 MiB pieces, with data on both sides of each boundary.
truncate -s 129M "$d/a/sparse.bin"
poke "$d/a/sparse.bin" 0 head
poke "$d/a/sparse.bin" $(((64 << 20) - 2)) span
poke "$d/a/sparse.bin" $(((128 << 20) + 7)) more
poke "$d/a/sparse.bin" $(((129 << 20) - 4)) tail
ln -s a/five-mib.bin "$d/link-to-file"
ln -s a "$d/link-to-dir"
ln -s /etc/passwd "$d/link-outside"
echo x >"$d/with space"
mkfifo "$d/fifo" 2>/dev/null
nfiles=5

# A fresh manifest, then again with the old one in the tree: it must not list itself.
for run in first second; do
	"$tool" -q -j 3 "$d" 2>"$tmp/err" || fail "$run run exited $?: $(cat "$tmp/err")"
	grep -q "with space" "$tmp/err" || fail "no warning about 'with space': $(cat "$tmp/err")"
	reference "$d" crc32.txt >"$tmp/want" || fail "python reference failed"
	diff -u "$tmp/want" "$d/crc32.txt" || fail "$run manifest differs from zlib's CRCs"
done
[ "$(wc -l <"$d/crc32.txt")" -eq $nfiles ] || fail "expected $nfiles lines in crc32.txt"
grep -qx "cbf43926 a/b/c/digits" "$d/crc32.txt" || fail "known answer for a/b/c/digits"
grep -qx "00000000 empty" "$d/crc32.txt" || fail "empty file's CRC is not 00000000"

# One thread, to stdout: the same bytes.
"$tool" -q -j 1 -o - "$d" >"$tmp/stdout" 2>/dev/null || fail "-o - exited $?"
cmp -s "$tmp/stdout" "$d/crc32.txt" || fail "-o - -j 1 differs from the default output"

# -o inside the tree, written twice: the second run must leave the first output out.
"$tool" -q -o "$d/a/other.txt" "$d" 2>/dev/null || fail "-o inside DIR exited $?"
"$tool" -q -o "$d/a/other.txt" "$d" 2>/dev/null || fail "-o inside DIR (again) exited $?"
reference "$d" crc32.txt a/other.txt >"$tmp/want"
diff -u "$tmp/want" "$d/a/other.txt" || fail "-o FILE inside DIR listed itself"
rm -f "$d/a/other.txt"

out=$("$tool" --check "$d" 2>&1) || fail "--check of an intact tree exited $?: $out"
[ "$out" = "$nfiles files checked, 0 failed, 0 missing" ] || fail "--check said: $out"
out=$("$tool" --check -v -j 2 "$d" 2>&1) || fail "--check -v exited $?"
echo "$out" | grep -qx "OK a/sparse.bin" || fail "--check -v has no OK line: $out"

# A changed byte in each big file: in the middle of one, in the last piece of the other.
before=$(grep ' a/five-mib.bin$' "$d/crc32.txt" | cut -c1-8)
poke "$d/a/five-mib.bin" $((3 << 20)) X
poke "$d/a/sparse.bin" $(((128 << 20) + 100)) Y
after=$(crc_of "$d/a/five-mib.bin")
[ "$before" != "$after" ] || fail "the poke did not change the CRC"
out=$("$tool" --check "$d" 2>&1)
rc=$?
[ $rc -eq 1 ] || fail "--check of a corrupted tree exited $rc, expected 1: $out"
echo "$out" | grep -qx "FAILED a/five-mib.bin: expected $before, got $after" ||
	fail "no FAILED line for a/five-mib.bin: $out"
echo "$out" | grep -q "^FAILED a/sparse.bin: expected " || fail "no FAILED line for sparse: $out"

rm "$d/a/b/c/digits"
out=$("$tool" --check "$d" 2>&1)
rc=$?
[ $rc -eq 1 ] || fail "--check with a missing file exited $rc, expected 1"
echo "$out" | grep -qx "MISSING a/b/c/digits" || fail "no MISSING line: $out"
echo "$out" | grep -qx "$nfiles files checked, 2 failed, 1 missing" || fail "summary: $out"

# Usage errors exit 2 and say what is wrong.
expect_usage() {
	local out rc
	out=$("$tool" "$@" 2>&1)
	rc=$?
	[ $rc -eq 2 ] || fail "mows-crc32 $* exited $rc, expected 2: $out"
	[ -n "$out" ] || fail "mows-crc32 $* gave no message"
}
expect_usage
expect_usage -j 0 "$d"
expect_usage -j many "$d"
expect_usage "$tmp/no-such-dir"
expect_usage "$d" "$d"
expect_usage --check -o x "$d"
expect_usage --check -m "$tmp/no-such-manifest" "$d"
expect_usage --bogus "$d"
"$tool" -h | grep -q "usage: mows-crc32" || fail "-h prints no usage"

echo "PASS: mows-crc32 ($nfiles files, zlib-equal; --check finds FAILED and MISSING)"
exit 0
