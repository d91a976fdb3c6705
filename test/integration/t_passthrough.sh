#!/usr/bin/env bash
# FUSE passthrough onto the cache's files (kernel 6.9+, root). With passthrough = on:
# one inode opened in both modes at once (an ordinary open while the file becomes complete
# keeps later opens ordinary, so no open gets EIO), a passthrough mapping under eviction
# pressure keeps every byte, a backing file changed while mapped leaves the old mapping all
# old and gives new opens all new bytes, and a file open in passthrough keeps reading (read
# and mmap) after the daemon is SIGKILLed, which only passthrough can do. Then fio verifies
# through psync and mmap with open_wait = complete (every open passthrough) and with
# passthrough = off (no open passthrough), and the bytes are the same.
# timeout: 240
. "$(dirname "$0")/lib.sh"
need_cmd fio

B=$SCRATCH/backing
M=$SCRATCH/mnt
mkdir -p "$B"
rand_file "$B/a.bin" $((40 * MiB + 12345))
rand_file "$B/c.bin" $((72 * MiB + 7))
rand_file "$SCRATCH/a.new" $((40 * MiB + 12345))
cp "$B/a.bin" "$SCRATCH/a.old"
common=(--verify_state_save=0 --bs=64k --size=24M --verify=crc32c --randrepeat=1)
out=$(fio --name=fill --filename="$B/fio.dat" --rw=write --ioengine=psync "${common[@]}" \
	--do_verify=0 2>&1) || fail "fio could not write $B/fio.dat: $out"
mows_make_manifest "$B"

# ---- one mount: modes, eviction, a changed backing file, SIGKILL ----
mows_mount "$B" "$M" --passthrough=on --max-memory=96M
grep -q 'passthrough: on' "$MOWS_LOG" || fail "no 'passthrough: on' line in the log"
cat >"$SCRATCH/pt.py" <<'PY'
import mmap, os, signal, subprocess, sys, time
mnt, backing, scratch, log, pid, ctl, sock = sys.argv[1:8]
old = open(scratch + "/a.old", "rb").read()
new = open(scratch + "/a.new", "rb").read()

def die(msg):
    print("FAIL: " + msg, file=sys.stderr)
    sys.exit(1)

def pt_opens():
    return open(log).read().count("a.bin opens onto its cache file")

def read_all(fd, size):
    out, off = [], 0
    while off < size:
        b = os.pread(fd, min(1 << 20, size - off), off)
        if not b:
            break
        out.append(b)
        off += len(b)
    return b"".join(out)

def check(got, want, what):
    if got != want:
        i = next((k for k in range(min(len(got), len(want))) if got[k] != want[k]), None)
        die("%s: %d bytes, want %d; first difference at %s" % (what, len(got), len(want), i))

path = mnt + "/a.bin"
# Both modes at once: fd1 is ordinary (the file was not cached); fd1 reads it whole, so the
# file is complete and verified while fd1 is open; fd2 must stay ordinary.
fd1 = os.open(path, os.O_RDONLY)
check(read_all(fd1, len(old)), old, "first read (ordinary)")
fd2 = os.open(path, os.O_RDONLY)
check(read_all(fd2, len(old)), old, "second open while the first is open")
m2 = mmap.mmap(fd2, 0, prot=mmap.PROT_READ)
check(m2[:], old, "mmap of the second open")
m2.close()
if pt_opens():
    die("an open went passthrough while an ordinary open of the same file was open")
os.close(fd1); os.close(fd2)
time.sleep(0.3)  # the kernel sends RELEASE asynchronously
fd3 = os.open(path, os.O_RDONLY)
if pt_opens() != 1:
    die("the open after all ordinary opens closed did not go passthrough (log: %d)" % pt_opens())
m3 = mmap.mmap(fd3, 0, prot=mmap.PROT_READ)
check(m3[:], old, "passthrough mmap")
fd4 = os.open(path, os.O_RDONLY)  # a second passthrough open shares the backing
check(read_all(fd4, len(old)), old, "second passthrough open")
os.close(fd4)

# Eviction pressure: 72 MiB through the 96 MiB cache while 41 MiB are pinned by passthrough.
want_c = open(backing + "/c.bin", "rb").read()
for _ in range(2):
    with open(mnt + "/c.bin", "rb") as f:
        check(f.read(), want_c, "c.bin under eviction pressure")
    subprocess.run(["sh", "-c", "echo 3 > /proc/sys/vm/drop_caches"], check=False)
check(m3[:], old, "passthrough mapping after eviction pressure")
check(read_all(fd3, len(old)), old, "passthrough read() after eviction pressure")

# The backing file changes while mapped: the old mapping stays all old, new opens all new.
# (The manifest first, so the new file matches it.)
import zlib
lines = open(backing + "/crc32.txt").read().splitlines()
lines = [("%08x a.bin" % zlib.crc32(new)) if l.endswith(" a.bin") else l for l in lines]
with open(backing + "/.crc.tmp", "w") as f:
    f.write("\n".join(lines) + "\n")
os.rename(backing + "/.crc.tmp", backing + "/crc32.txt")
tmp = backing + "/.a.tmp"
with open(tmp, "wb") as f:
    f.write(new)
os.utime(tmp, ns=(time.time_ns(), time.time_ns() + 5_000_000_000))
os.rename(tmp, backing + "/a.bin")
subprocess.run([ctl, "-s", sock, "refresh"], check=False, stdout=subprocess.DEVNULL)
deadline = time.time() + 15
while True:
    fd5 = os.open(path, os.O_RDONLY)
    got = read_all(fd5, len(new))
    os.close(fd5)
    if got == new:
        break
    if got != old:
        die("an open after the change read a mix of old and new bytes")
    if time.time() > deadline:
        die("new opens still read the old file 15 s after it changed")
    time.sleep(0.3)
check(m3[:], old, "old passthrough mapping after the backing file changed")
check(read_all(fd3, len(old)), old, "old passthrough read() after the backing file changed")

# SIGKILL: files open in passthrough keep working (an ordinary open would get ENOTCONN).
os.kill(int(pid), signal.SIGKILL)
time.sleep(0.5)
try:
    check(read_all(fd3, len(old)), old, "passthrough read() after SIGKILL of the daemon")
except OSError as e:
    die("passthrough read() after SIGKILL of the daemon failed: %s" % e)
check(m3[:], old, "passthrough mapping after SIGKILL of the daemon")
m3.close()
os.close(fd3)
print("ok")
PY
out=$("$PYTHON" "$SCRATCH/pt.py" "$M" "$B" "$SCRATCH" "$MOWS_LOG" "$MOWS_PID" "$MOWS_CTL" \
	"$MOWS_SOCK" 2>&1) || fail "$out"
wait_pid_gone "$MOWS_PID" 5 || fail "the daemon survived SIGKILL"
fusermount3 -uz "$M"
cp "$SCRATCH/a.old" "$B/a.bin"
mows_make_manifest "$B"

run_fio() { # NAME ENGINE RW
	drop_caches
	fio --name="$1" --filename="$M/fio.dat" --rw="$3" --ioengine="$2" "${common[@]}" \
		--do_verify=1 --readonly >"$SCRATCH/$1.out" 2>&1 ||
		fail "fio $1 ($2, $3) failed: $(grep -iE 'verify|error|err=' "$SCRATCH/$1.out" | head -n 5)"
}

# ---- open_wait = complete: every open passthrough ----
mows_mount "$B" "$M" --passthrough=on --open-wait=complete --max-memory=128M
for e in psync mmap; do
	run_fio "pt-$e-read" $e read
	run_fio "pt-$e-randread" $e randread
done
grep -q 'fio.dat opens onto its cache file' "$MOWS_LOG" ||
	fail "open_wait = complete: fio's opens did not go passthrough"
assert_cmp "$B/a.bin" "$M/a.bin"
grep -q 'a.bin opens onto its cache file' "$MOWS_LOG" ||
	fail "open_wait = complete: the first open of a.bin did not go passthrough"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status (passthrough on)"

# ---- passthrough = off: the ordinary path, same bytes ----
mows_mount "$B" "$M" --passthrough=off --max-memory=128M
grep -q 'passthrough: off (passthrough = off)' "$MOWS_LOG" || fail "no 'passthrough: off' line"
for e in psync mmap; do
	run_fio "plain-$e-read" $e read
done
assert_cmp "$B/a.bin" "$M/a.bin"
assert_cmp "$B/a.bin" "$M/a.bin"
grep -q 'opens onto its cache file' "$MOWS_LOG" && fail "passthrough = off, yet an open went passthrough"
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status (passthrough off)"
exit 0
