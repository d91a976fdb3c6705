#!/usr/bin/env python3
"""Reads a file through read() or mmap and compares it with a reference, for the fault tests.

    faultread.py MODE FILE REF LIMIT [through]    MODE is read or mmap; LIMIT in seconds

Prints one line: OUTCOME OFFSET MAX_WAIT, where OUTCOME is
    ok       every byte equal to REF (OFFSET is the size)
    eio      a read() failed with EIO at OFFSET
    sigbus   an mmap access at OFFSET killed the reader with SIGBUS (how mmap reports EIO)
    wrong    the bytes at OFFSET differ from REF: a wrong byte was served
    short    the file ended early, at OFFSET (read() returned 0 before the size of REF)
    hang     one step (a read() or a touch of a mapping) took longer than LIMIT seconds (the
             reader is waited for up to 30 s to tell how long, and what came then)
    error    anything else (OFFSET -1, the message on stderr)
With "through", a wrong byte does not end the reading: it goes on to the end of the file,
and a reader that got wrong bytes and then an error reports wrong+eio or wrong+sigbus with
the offset of its first wrong byte; "wrong" then means that it reached the end of the file
with wrong bytes and no error (what verify = file promises never happens).
and MAX_WAIT, the longest single step in seconds. The reading runs in a child process so
that a SIGBUS or a hang can be seen from outside; steps are 256 KiB.
"""
import mmap
import os
import resource
import select
import signal
import subprocess
import sys
import time

STEP = 256 * 1024
HARD_CAP = 30.0  # a step past LIMIT is a hang; waiting on to here measures how long it is


def child(mode, path, ref, through=False):
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    want = open(ref, 'rb').read()
    fd = os.open(path, os.O_RDONLY)
    out = sys.stdout
    if mode == 'mmap':
        m = mmap.mmap(fd, 0, prot=mmap.PROT_READ) if want else b''
        size = len(m)
    off = 0
    wrong = False
    while off < len(want):
        out.write('T %d\n' % off)
        out.flush()
        try:
            got = m[off:off + STEP] if mode == 'mmap' else os.pread(fd, STEP, off)
        except OSError as e:
            out.write('E %d %d\n' % (off, e.errno))
            return
        if not got:
            out.write('S %d\n' % off)
            return
        exp = want[off:off + len(got)]
        if got != exp:
            bad = next(i for i in range(len(got)) if i >= len(exp) or got[i] != exp[i])
            if not wrong:
                out.write('W %d\n' % (off + bad))
            wrong = True
            if not through or len(got) > len(exp):
                return
        off += len(got)
    if mode == 'read' and os.pread(fd, 1, off):
        out.write('W %d\n' % off)  # longer than REF
        return
    out.write('%s %d\n' % ('WEND' if wrong else 'OK', off))


def parent(mode, path, ref, limit, through=False):
    p = subprocess.Popen([sys.executable, __file__, '--child', mode, path, ref] +
                         (['through'] if through else []),
                         stdout=subprocess.PIPE, text=True, bufsize=1)
    max_wait, last_t, last_off, result = 0.0, time.monotonic(), 0, None
    first_wrong = None
    buf = ''
    while result is None:
        r, _, _ = select.select([p.stdout], [], [], HARD_CAP - (time.monotonic() - last_t))
        now = time.monotonic()
        if not r:
            max_wait = max(max_wait, now - last_t)
            p.kill()
            result = ('hang', last_off)
            break
        line = p.stdout.readline()
        max_wait = max(max_wait, now - last_t)
        last_t = now
        if not line:
            p.wait()
            if p.returncode == -signal.SIGBUS and first_wrong is not None:
                result = ('wrong+sigbus', first_wrong)
            elif p.returncode == -signal.SIGBUS:
                result = ('sigbus', last_off)
            elif first_wrong is not None and p.returncode == 0:
                result = ('wrong', first_wrong)  # longer than REF
            else:
                result = ('error', -1)
                print('faultread: child exited %s' % p.returncode, file=sys.stderr)
            break
        w = line.split()
        if w[0] == 'T':
            last_off = int(w[1])
        elif w[0] == 'E' and first_wrong is not None and int(w[2]) == 5:
            result = ('wrong+eio', first_wrong)
        elif w[0] == 'E':
            result = ('eio' if int(w[2]) == 5 else 'error', int(w[1]))
            if int(w[2]) != 5:
                print('faultread: errno %s at %s' % (w[2], w[1]), file=sys.stderr)
        elif w[0] == 'W' and through and first_wrong is None:
            first_wrong = int(w[1])
        elif w[0] == 'W':
            result = ('wrong', int(w[1]))
        elif w[0] in ('S', 'WEND') and first_wrong is not None:
            result = ('wrong', first_wrong)  # reached the end with wrong bytes, no error
        elif w[0] == 'S':
            result = ('short', int(w[1]))
        elif w[0] == 'OK':
            result = ('ok', int(w[1]))
    p.kill()
    p.wait()
    if max_wait > limit and result[0] != 'hang':
        print('hang %d %.2f (then %s at %d)' % (last_off, max_wait, result[0], result[1]))
    else:
        print('%s %d %.2f' % (result[0], result[1], max_wait))


if __name__ == '__main__':
    if sys.argv[1] == '--child':
        child(*sys.argv[2:5], through=sys.argv[5:6] == ['through'])
    else:
        parent(sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]),
               through=sys.argv[5:6] == ['through'])
