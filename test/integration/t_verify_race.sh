#!/usr/bin/env bash
# The verify race (issue 8): with verify = file and no per-chunk sidecar, a reader must never
# reach EOF of a file that does not match crc32.txt without an error. 50 cold 5 MB files are
# read whole with cat or dd, 50 more through mmap, and 10 by two readers at once (one from
# the end backwards); every single read must end in EIO (SIGBUS for mmap), never EOF.
# timeout: 300
. "$(dirname "$0")/lib.sh"

RUNS=${MOWS_RACE_RUNS:-50}
B=$SCRATCH/backing
M=$SCRATCH/mnt
size=$((5 * 1000 * 1000))
mkdir -p "$B"
rand_file "$SCRATCH/seed.bin" $size
good=$(py crc32 "$SCRATCH/seed.bin")
# Every file holds the seed's bytes; crc32.txt lists a CRC that differs in one bit, so every
# check of every file fails, however the bytes are read.
wrong=$(printf '%08x' $((0x$good ^ 1)))
: >"$B/crc32.txt"
for kind in read mmap both; do
	for ((i = 0; i < RUNS; i++)); do
		[ $kind = both ] && [ $i -ge 10 ] && break
		cp "$SCRATCH/seed.bin" "$B/$kind-$i.bin"
		printf '%s  %s\n' "$wrong" "$kind-$i.bin" >>"$B/crc32.txt"
	done
done
[ ! -e "$B/crc32.chunks" ] || fail "a per-chunk sidecar would hide the race under test"

mows_mount "$B" "$M" --verify=file --max-memory=1G

bad=0
note_bad() { soft_fail "$*"; bad=$((bad + 1)); }

# read: cat for even runs, dd with 128 KiB blocks for odd ones.
for ((i = 0; i < RUNS; i++)); do
	f=$M/read-$i.bin
	if [ $((i % 2)) -eq 0 ]; then
		err=$(timeout 30 cat "$f" 2>&1 >/dev/null)
	else
		err=$(timeout 30 dd if="$f" of=/dev/null bs=128k 2>&1)
	fi
	rc=$?
	[ $rc -eq 124 ] && { note_bad "read $i: reader still running after 30 s"; continue; }
	[ $rc -ne 0 ] && [[ $err == *"Input/output error"* ]] && continue
	note_bad "read $i ($([ $((i % 2)) -eq 0 ] && echo cat || echo dd)): reached EOF of a mismatching file without EIO (status $rc: ${err:0:120})"
done

# mmap: Python maps the file and reads every page; SIGBUS kills it (status 135).
for ((i = 0; i < RUNS; i++)); do
	out=$(timeout 30 "$PYTHON" "$MOWS_IT/helpers.py" sha256 --mmap "$M/mmap-$i.bin" 2>&1)
	rc=$?
	[ $rc -eq 135 ] && continue
	[ $rc -eq 1 ] && [[ $out == *EIO* ]] && continue
	note_bad "mmap $i: status $rc, expected SIGBUS (135): ${out:0:120}"
done

# Two readers at once, one forwards and one backwards in 1 MiB steps.
cat >"$SCRATCH/backwards.py" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDONLY)
size = os.fstat(fd).st_size
off = (size - 1) // (1 << 20) * (1 << 20)
try:
    while off >= 0:
        os.pread(fd, 1 << 20, off)
        off -= 1 << 20
except OSError as e:
    print("EIO" if e.errno == 5 else e.strerror)
    sys.exit(1)
print("EOF")
PY
for ((i = 0; i < 10 && i < RUNS; i++)); do
	f=$M/both-$i.bin
	timeout 30 "$PYTHON" "$SCRATCH/backwards.py" "$f" >"$SCRATCH/back.out" 2>&1 &
	bpid=$!
	err=$(timeout 30 cat "$f" 2>&1 >/dev/null)
	rc=$?
	wait $bpid
	brc=$?
	[ $rc -ne 0 ] && [[ $err == *"Input/output error"* ]] ||
		note_bad "both $i: forward reader ended with status $rc without EIO: ${err:0:120}"
	[ $brc -eq 1 ] && grep -q EIO "$SCRATCH/back.out" ||
		note_bad "both $i: backward reader ended with status $brc: $(head -c 120 "$SCRATCH/back.out")"
done

note "$bad of $((2 * RUNS + 10)) reads reached EOF (or hung) without an error"
# The mismatch is logged, and other reads of a healthy file work.
grep -q "crc32 mismatch: read-0.bin" "$MOWS_LOG" || soft_fail "no 'crc32 mismatch: read-0.bin' in the daemon log"
cp "$SCRATCH/seed.bin" "$B/healthy.bin"
mows_ctl refresh >/dev/null || fail "mowsctl refresh failed" # a new file shows after a refresh
assert_cmp "$SCRATCH/seed.bin" "$M/healthy.bin"
soft_done
mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
