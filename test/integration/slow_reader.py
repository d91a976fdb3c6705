#!/usr/bin/env python3
"""slow_reader.py MODE PATH OUT PAUSE: reads PATH 1 MiB at a time with read() (MODE read) or
through a shared mapping (MODE mmap), sleeping PAUSE seconds between reads, so that it is
mid-file when a test restarts what serves it. Drops the file's pages first, so that reads
reach the daemon (or the passthrough backing), not the page cache. Writes "ok SHA256" or
"error ..." to OUT."""
import hashlib, mmap, os, sys, time

mode, path, out, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
h = hashlib.sha256()
try:
    fd = os.open(path, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    size = os.fstat(fd).st_size
    mm = mmap.mmap(fd, size, prot=mmap.PROT_READ) if mode == "mmap" else None
    off = 0
    while off < size:
        n = min(1 << 20, size - off)
        b = mm[off:off + n] if mm else os.pread(fd, n, off)
        if len(b) != n:
            raise OSError(0, "short read at %d: %d of %d" % (off, len(b), n))
        h.update(b)
        off += n
        time.sleep(pause)
    res = "ok " + h.hexdigest()
except OSError as e:
    res = "error %s at %s" % (e, time.strftime("%T"))
with open(out, "w") as f:
    f.write(res + "\n")
