#!/bin/bash
# make demo: generate a small Hugging Face-shaped model, mount it with mows, read every file
# with read() and mmap, check the bytes against the backing, show `mowsctl status`, unmount.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/mows-demo.XXXXXX)
mnt=$work/mnt
sock=$work/ctl.sock
pid=""
old_pages=$(cat /proc/sys/vm/nr_hugepages)

cleanup() {
	set +e
	if grep -qs " $mnt " /proc/mounts; then
		fusermount3 -u "$mnt" 2>/dev/null || fusermount3 -uz "$mnt"
	fi
	[ -n "$pid" ] && kill "$pid" 2>/dev/null
	echo "$old_pages" > /proc/sys/vm/nr_hugepages 2>/dev/null
	rm -rf "$work"
}
trap cleanup EXIT

echo "== generating a model directory (Hugging Face cache layout) in $work/hub"
snap=$(python3 "$root/tools/genmodel.py" "$work/hub" --shards 3 --shard-mib 48)
backing="$work/hub"
"$root/mows-crc32" -q "$backing"

# A hugetlb pool for the cache when the kernel allows one; mows falls back to THP otherwise.
echo $((old_pages + 128)) > /proc/sys/vm/nr_hugepages 2>/dev/null || true

echo "== mounting $backing on $mnt"
mkdir -p "$mnt"
"$root/mows-fuse" -c "$root/mows.conf.example" --backing "$backing" --control-socket "$sock" \
	--max-memory 256M "$mnt"
pid=$(pgrep -f -n "mows-fuse .*$mnt" || true)
rel=${snap#"$backing"/}

echo "== reading every file through the mount with read() and mmap"
python3 - "$backing" "$mnt" "$rel" <<'PY'
import hashlib, mmap, os, sys, time
backing, mnt, rel = sys.argv[1:]
total, t0 = 0, time.monotonic()
for name in sorted(os.listdir(os.path.join(mnt, rel))):
    want = hashlib.sha256(open(os.path.join(backing, rel, name), "rb").read()).hexdigest()
    path = os.path.join(mnt, rel, name)
    with open(path, "rb") as f:
        got_read = hashlib.sha256(f.read()).hexdigest()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size:
            with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
                got_mmap = hashlib.sha256(m).hexdigest()
        else:
            got_mmap = hashlib.sha256(b"").hexdigest()
    ok = got_read == want and got_mmap == want
    total += size
    print(f"  {'ok ' if ok else 'BAD'} {size:>10}  {name} -> {os.readlink(path)}")
    if not ok:
        sys.exit(f"demo: bytes through the mount differ from the backing for {name}")
print(f"  {total / 2**20:.0f} MiB read twice through mows in {time.monotonic() - t0:.1f} s, "
      "all bytes equal to the backing")
PY

echo "== mowsctl status"
"$root/mowsctl" -s "$sock" status

echo "== unmounting"
fusermount3 -u "$mnt"
for _ in $(seq 50); do
	{ [ -z "$pid" ] || ! kill -0 "$pid" 2>/dev/null; } && break
	sleep 0.1
done
echo "demo: ok"
