#!/usr/bin/env python3
"""Small checks the integration tests share; run as `helpers.py COMMAND ARGS...`.

Every command prints what differs and exits nonzero when a check fails, so a shell test
can stop with a message that names the file and the offset.
"""
import errno
import hashlib
import json
import mmap
import os
import random
import stat
import struct
import sys
import zlib

BLOCK = 1 << 20


def die(msg):
    print(msg, file=sys.stderr)
    sys.exit(1)


def err_name(e):
    return errno.errorcode.get(e.errno, str(e.errno)) if e.errno else str(e)


def listing(root):
    """Lines 'relpath<TAB>type<TAB>detail' for everything under root, sorted, symlinks not
    followed: size for files, target for symlinks."""
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.relpath(p, root)
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out.append("%s\tlink\t%s" % (rel, os.readlink(p)))
            elif stat.S_ISDIR(st.st_mode):
                out.append("%s\tdir\t" % rel)
            elif stat.S_ISREG(st.st_mode):
                out.append("%s\tfile\t%d" % (rel, st.st_size))
            else:
                out.append("%s\tother\t%o" % (rel, st.st_mode))
    # os.walk does not descend into symlinked dirs, so a dir reached only through one is
    # listed once, as the link.
    return sorted(out)


def files_differ(a, b):
    """None when equal, else a description of the first difference or read error."""
    try:
        fa = open(a, "rb")
    except OSError as e:
        return "open %s: %s" % (a, err_name(e))
    try:
        fb = open(b, "rb")
    except OSError as e:
        fa.close()
        return "open %s: %s" % (b, err_name(e))
    off = 0
    with fa, fb:
        while True:
            try:
                x = fa.read(BLOCK)
            except OSError as e:
                return "read %s at offset ~%d: %s" % (a, off, err_name(e))
            try:
                y = fb.read(BLOCK)
            except OSError as e:
                return "read %s at offset ~%d: %s" % (b, off, err_name(e))
            if x != y:
                n = min(len(x), len(y))
                i = next((k for k in range(n) if x[k] != y[k]), n)
                if i == n:
                    return "%s and %s differ in length near offset %d (%d vs %d bytes in block)" % (
                        a, b, off + n, len(x), len(y))
                return "%s and %s differ at offset %d (0x%02x vs 0x%02x)" % (
                    a, b, off + i, x[i], y[i])
            if not x:
                return None
            off += len(x)


def cmd_cmptree(args):
    """cmptree A B [--exclude REL]...: same listing and same bytes in every regular file."""
    excl = set()
    pos = []
    it = iter(args)
    for a in it:
        if a == "--exclude":
            excl.add(next(it))
        else:
            pos.append(a)
    a, b = pos
    la, lb = listing(a), listing(b)
    problems = []
    if la != lb:
        sa, sb = set(la), set(lb)
        for line in sorted(sa - sb)[:20]:
            problems.append("only in %s: %s" % (a, line.replace("\t", " ")))
        for line in sorted(sb - sa)[:20]:
            problems.append("only in %s: %s" % (b, line.replace("\t", " ")))
    for line in la:
        rel, kind, _ = line.split("\t")
        if kind != "file" or rel in excl or line not in lb:
            continue
        d = files_differ(os.path.join(a, rel), os.path.join(b, rel))
        if d:
            problems.append(d)
    if problems:
        die("trees differ:\n  " + "\n  ".join(problems[:40]))


def cmd_cmp(args):
    d = files_differ(args[0], args[1])
    if d:
        die(d)


def sha256_read(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(BLOCK)
            if not b:
                return h.hexdigest()
            h.update(b)


def sha256_mmap(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return hashlib.sha256(b"").hexdigest()
        with mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ) as m:
            for off in range(0, size, BLOCK):
                h.update(m[off:off + BLOCK])
    return h.hexdigest()


def cmd_sha256(args):
    """sha256 [--mmap] FILE: prints the digest, or the errno name and exits 1."""
    use_mmap = args[0] == "--mmap"
    path = args[-1]
    try:
        print(sha256_mmap(path) if use_mmap else sha256_read(path))
    except OSError as e:
        die("%s %s: %s" % ("mmap" if use_mmap else "read", path, err_name(e)))


def cmd_read(args):
    """read FILE: prints 'OK' after reading it whole, or the errno name (e.g. EIO), exit 1."""
    try:
        with open(args[0], "rb") as f:
            while f.read(BLOCK):
                pass
    except OSError as e:
        print(err_name(e))
        sys.exit(1)
    print("OK")


def cmd_first_read(args):
    """first-read FILE: open and read 4096 bytes once: prints OK or the errno name."""
    try:
        fd = os.open(args[0], os.O_RDONLY)
    except OSError as e:
        print("open:" + err_name(e))
        sys.exit(1)
    try:
        os.read(fd, 4096)
    except OSError as e:
        print(err_name(e))
        sys.exit(1)
    finally:
        os.close(fd)
    print("OK")


def cmd_crc32(args):
    crc = 0
    with open(args[0], "rb") as f:
        while True:
            b = f.read(BLOCK)
            if not b:
                break
            crc = zlib.crc32(b, crc)
    print("%08x" % crc)


def cmd_flipbyte(args):
    """flipbyte FILE OFFSET: inverts one byte in place."""
    path, off = args[0], int(args[1])
    with open(path, "r+b") as f:
        f.seek(off)
        b = f.read(1)
        if len(b) != 1:
            die("flipbyte: %s has no byte at %d" % (path, off))
        f.seek(off)
        f.write(bytes([b[0] ^ 0xFF]))


def cmd_preads(args):
    """preads A B N SEED CHUNK: N random preads of A compared with B, biased to chunk edges,
    plus reads that run past the end."""
    a, b, n, seed, chunk = args[0], args[1], int(args[2]), int(args[3]), int(args[4])
    rnd = random.Random(seed)
    fa, fb = os.open(a, os.O_RDONLY), os.open(b, os.O_RDONLY)
    size = os.fstat(fb).st_size
    edges = list(range(0, size + 1, chunk)) + [size]
    cases = []
    for i in range(n):
        if i % 2 and size:
            off = max(0, min(size, rnd.choice(edges) + rnd.randint(-4100, 4100)))
        else:
            off = rnd.randint(0, size)
        cases.append((off, rnd.choice([1, 7, 4096, 4097, 65536, chunk, chunk + 3, 3 * chunk])))
    cases += [(size, 10), (max(0, size - 1), 4096), (size + 12345, 100)]
    for off, ln in cases:
        try:
            x = os.pread(fa, ln, off)
        except OSError as e:
            die("pread(%s, %d, %d): %s" % (a, ln, off, err_name(e)))
        y = os.pread(fb, ln, off)
        if x != y:
            die("pread(%s, len=%d, off=%d): %d bytes differ from backing's %d bytes" % (
                a, ln, off, len(x), len(y)))


def cmd_json(args):
    """json FILE EXPR: evaluates EXPR with j bound to the parsed JSON and prints the result
    (JSON-encoded when not a string). Exit 1 with a message when a key is missing."""
    with open(args[0]) as f:
        j = json.load(f)
    try:
        v = eval(args[1], {"j": j, "file": lambda p: next(
            (x for x in j["files"] if x.get("path") == p), None)})
    except (KeyError, IndexError, TypeError) as e:
        die("status JSON has no %s (%s: %s)" % (args[1], type(e).__name__, e))
    print(v if isinstance(v, str) else json.dumps(v))


def cmd_status_check(args):
    """status-check FILE: every field of `mowsctl status --json` is there with its type."""
    with open(args[0]) as f:
        j = json.load(f)
    errs = []

    def need(obj, key, types, where):
        if not isinstance(obj, dict) or key not in obj:
            errs.append("missing %s%s" % (where, key))
            return None
        v = obj[key]
        if not isinstance(v, types) or isinstance(v, bool):
            errs.append("%s%s is %r, expected %s" % (
                where, key, v, " or ".join(t.__name__ for t in types)))
            return None
        return v

    for k in ("mountpoint", "backing"):
        need(j, k, (str,), "")
    mem = need(j, "memory", (dict,), "") or {}
    for k in ("max", "used"):
        need(mem, k, (int,), "memory.")
    hp = need(mem, "hugepages", (str,), "memory.")
    if hp is not None and hp not in ("hugetlb", "thp", "off", "files"):
        errs.append("memory.hugepages is %r, expected hugetlb, thp, off or files" % hp)
    ch = need(j, "chunks", (dict,), "") or {}
    for k in ("size", "slots", "cached"):
        need(ch, k, (int,), "chunks.")
    for k in ("hits", "misses", "bytes_from_backing"):
        need(j, k, (int,), "")
    for k in ("passthrough_opens", "passthrough_bytes_opened", "passthrough_open_now"):
        need(j, k, (int,), "")
    hr = need(j, "hit_ratio", (int, float), "")
    if hr is not None and not 0 <= hr <= 1:
        errs.append("hit_ratio %r is not within 0..1" % hr)
    states = ("cold", "partial", "cached", "verified", "mismatch", "stale")
    for i, f in enumerate(need(j, "files", (list,), "") or []):
        w = "files[%d]." % i
        need(f, "path", (str,), w)
        need(f, "size", (int,), w)
        need(f, "cached_bytes", (int,), w)
        s = need(f, "state", (str,), w)
        if s is not None and s not in states:
            errs.append("%sstate is %r, expected one of %s" % (w, s, ", ".join(states)))
    if errs:
        die("status JSON: " + "; ".join(errs))


def journal_fields(data):
    """The fields of one datagram of systemd's native journal protocol, as a dict (for tests
    that listen on a journal socket; import helpers after adding this directory to sys.path)."""
    fields, i = {}, 0
    while i < len(data):
        nl = data.index(b"\n", i)
        line = data[i:nl]
        if b"=" in line:
            k, v = line.split(b"=", 1)
            i = nl + 1
        else:
            n = struct.unpack("<Q", data[nl + 1:nl + 9])[0]
            k, v = line, data[nl + 9:nl + 9 + n]
            i = nl + 9 + n + 1
        fields[k.decode()] = v.decode(errors="replace")
    return fields


COMMANDS = {
    "status-check": cmd_status_check,
    "cmptree": cmd_cmptree, "cmp": cmd_cmp, "sha256": cmd_sha256,
    "read": cmd_read, "first-read": cmd_first_read, "crc32": cmd_crc32,
    "flipbyte": cmd_flipbyte, "preads": cmd_preads, "json": cmd_json,
}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        die("usage: helpers.py {%s} ARGS..." % ",".join(sorted(COMMANDS)))
    COMMANDS[sys.argv[1]](sys.argv[2:])
