#!/usr/bin/env bash
# A backing file rewritten while open through the mount (in place with dd, or replaced by a
# rename): the old fd reads only old bytes or gets EIO, never a mix; a fresh open sees the
# new content once the metadata snapshot was taken again (metadata_ttl, 1 s here: opens of
# cached files never ask the backing) and the attribute timeout has passed.
# timeout: 120
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
size=$((8 * MiB + 333))
mkdir -p "$B"
for c in inplace rename; do
	rand_file "$SCRATCH/$c.old" $size
	rand_file "$SCRATCH/$c.new" $size
	cp "$SCRATCH/$c.old" "$B/$c.bin"
done

cat >"$SCRATCH/rewrite.py" <<'PY'
import errno, os, subprocess, sys, time
mnt_file, backing_file, how, old_path, new_path, chunk = sys.argv[1:7]
chunk = int(chunk)
old = open(old_path, "rb").read()
new = open(new_path, "rb").read()

def die(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)

def describe(got, off):
    """Where got (read at off) first departs from the old bytes, and whether it is new."""
    exp = old[off:off + len(got)]
    i = next(k for k in range(len(got)) if got[k] != exp[k])
    is_new = got[i:] == new[off + i:off + len(got)]
    return "offset %d: 0x%02x, old byte 0x%02x, new byte 0x%02x%s" % (
        off + i, got[i], exp[i], new[off + i], " (the rest of the read is new bytes)" if is_new else "")

fd = os.open(mnt_file, os.O_RDONLY)
first = os.read(fd, chunk)
if first != old[:chunk]:
    die("first chunk read before the rewrite differs from the file's content at " + describe(first, 0))

if how == "inplace":
    r = subprocess.run(["dd", "if=" + new_path, "of=" + backing_file, "bs=1M", "conv=notrunc",
                        "status=none"])
    if r.returncode:
        die("dd failed")
else:
    tmp = backing_file + ".tmp"
    with open(tmp, "wb") as f:
        f.write(new)
    os.rename(tmp, backing_file)

off, outcome = len(first), "old bytes to the end"
while off < len(old):
    try:
        got = os.read(fd, 256 << 10)
    except OSError as e:
        if e.errno != errno.EIO:
            die("old fd: read at offset %d failed with %s, expected old bytes or EIO" % (
                off, errno.errorcode.get(e.errno, e.errno)))
        outcome = "EIO at offset %d" % off
        break
    if not got:
        die("old fd: end of file at offset %d of %d" % (off, len(old)))
    if got != old[off:off + len(got)]:
        die("old fd: after the %s rewrite a read returned bytes that are not the old file's, at %s" % (
            how, describe(got, off)))
    off += len(got)
print("%s: old fd gave %s" % (how, outcome))

def fresh():
    with open(mnt_file, "rb") as f:
        return f.read()

for label in ("while the old fd is open", "after closing the old fd"):
    deadline, last = time.monotonic() + 5, ""
    while True:
        try:
            data = fresh()
            if data == new:
                break
            if len(data) != len(new):
                last = "%d bytes, expected %d" % (len(data), len(new))
            elif data == old:
                last = "the old content"
            else:
                i = next(k for k in range(len(data)) if data[k] != new[k])
                last = "bytes that differ from the new content at offset %d (%s)" % (
                    i, "old bytes there" if data[i] == old[i] else "neither old nor new")
        except OSError as e:
            last = "error " + errno.errorcode.get(e.errno, str(e.errno))
        if time.monotonic() > deadline:
            die("a fresh open+read %s still gives %s 5 s after the %s rewrite" % (label, last, how))
        time.sleep(0.1)
    if label.startswith("while"):
        os.close(fd)
print("%s: fresh open reads the new content" % how)
PY

mows_mount "$B" "$M" --chunk-size=1M --readahead-chunks=1 --max-memory=16M --metadata-ttl=1s
for c in inplace rename; do
	out=$("$PYTHON" "$SCRATCH/rewrite.py" "$M/$c.bin" "$B/$c.bin" $c "$SCRATCH/$c.old" \
		"$SCRATCH/$c.new" $MiB 2>"$SCRATCH/$c.err") ||
		fail "$c: $(sed 's/^FAIL: //' "$SCRATCH/$c.err")${out:+ (before that: $out)}"
	note "$out"
done
drop_caches
assert_cmp "$SCRATCH/inplace.new" "$M/inplace.bin"
assert_cmp "$SCRATCH/rename.new" "$M/rename.bin"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
