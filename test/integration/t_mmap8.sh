#!/usr/bin/env bash
# Eight processes mmap the same 72 MiB file at once, through a cache of half its size, each
# touching it from a different starting point; every one must see exactly the backing bytes.
# timeout: 180
. "$(dirname "$0")/lib.sh"

B=$SCRATCH/backing
M=$SCRATCH/mnt
rand_file "$B/shared.bin" $((72 * MiB + 4099))

# Hashes each 1 MiB piece, starting at piece START and wrapping around, then prints the
# sha256 of the piece digests in file order, so every order yields the same answer.
cat >"$SCRATCH/mapper.py" <<'PY'
import hashlib, mmap, os, sys, time
path, start, go = sys.argv[1], int(sys.argv[2]), sys.argv[3]
piece = 1 << 20
if go:
    while not os.path.exists(go):
        time.sleep(0.005)
with open(path, "rb") as f:
    size = os.fstat(f.fileno()).st_size
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    n = (size + piece - 1) // piece
    digests = [None] * n
    for k in range(n):
        i = (start + k) % n
        digests[i] = hashlib.sha256(m[i * piece:(i + 1) * piece]).digest()
    m.close()
print(hashlib.sha256(b"".join(digests)).hexdigest())
PY
want=$("$PYTHON" "$SCRATCH/mapper.py" "$B/shared.bin" 0 "") || fail "cannot hash the backing file"

mows_mount "$B" "$M" --chunk-size=1M --max-memory=36M
drop_caches

pids=()
for i in 0 1 2 3 4 5 6 7; do
	"$PYTHON" "$SCRATCH/mapper.py" "$M/shared.bin" $((i * 9)) "$SCRATCH/go" \
		>"$SCRATCH/out.$i" 2>"$SCRATCH/err.$i" &
	pids+=($!)
	mows_track_pid $!
done
sleep 0.3
touch "$SCRATCH/go"
bad=0
for i in 0 1 2 3 4 5 6 7; do
	if ! wait "${pids[i]}"; then
		echo "mapper $i failed: $(tail -n 3 "$SCRATCH/err.$i")" >&2
		bad=$((bad + 1))
	elif [ "$(cat "$SCRATCH/out.$i")" != "$want" ]; then
		echo "mapper $i read different bytes: $(cat "$SCRATCH/out.$i") != $want" >&2
		bad=$((bad + 1))
	fi
done
[ $bad -eq 0 ] || fail "$bad of 8 concurrent mmap readers did not see the backing file's bytes"

mows_umount "$M"
assert_eq 0 "$MOWS_EXIT" "mows-fuse exit status"
