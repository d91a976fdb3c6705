#!/usr/bin/env python3
"""Per-link utilisation timeline of a cluster bench read (test/bench/fleet.sh).

    link_timeline.py sample OUT [--every SECONDS] [--max-seconds S]
        Run inside the cluster's switch network namespace: appends, every SECONDS (0.1), one
        line "TIME DEV:RX:TX ..." for the node ports (nN) and the storage port (st), read from
        /proc/net/dev (the namespace of the reader). In the switch namespace a port's RX bytes
        are what its host sent (its uplink), TX what it received (its downlink). Ends on
        SIGTERM, when its parent exits, or after --max-seconds.

    link_timeline.py summary SAMPLES --start T --run RUN.json --rate BITS --model DIR
                             [--old N] [--bucket SECONDS]
        Prints, for a read that began at T (seconds since the epoch) on the nodes of RUN.json
        (mows-cluster run --json), every node's uplink and downlink busy percentage over the
        read, a line per node and direction with the utilisation of each bucket (0.2 s) as a
        digit (0: <10%, 9: >=90%; '.' after that node's read ended), and for the slowest
        reader where its downlink lost time: the link-seconds it carried nothing, split by
        how far through the model it was (start: first 5% of its bytes; file ends: the last
        4% of a file and the first 2% of the next, for every file but the last; tail: last
        5%; middle: the rest), and the stretches below half the link rate.
"""
import argparse, json, os, re, signal, sys, time

PORT = re.compile(r"^\s*(n\d+|st):\s*(\d+)\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s+\d+\s+(\d+)")


def sample(args):
    parent = os.getppid()
    end = time.time() + args.max_seconds
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    with open(args.out, "a") as out:
        while time.time() < end and os.getppid() == parent:
            with open("/proc/net/dev") as f:
                text = f.read()
            t = time.time()
            ports = []
            for line in text.splitlines():
                m = PORT.match(line)
                if m:
                    ports.append("%s:%s:%s" % m.groups())
            out.write("%.3f %s\n" % (t, " ".join(ports)))
            out.flush()
            time.sleep(max(0.0, args.every - (time.time() - t)))


def load(path):
    rows = []
    with open(path) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            d = {}
            for p in parts[1:]:
                dev, rx, tx = p.split(":")
                d[dev] = (int(rx), int(tx))
            rows.append((float(parts[0]), d))
    return rows


def series(rows, dev, k, t0, t1, bucket):
    """Bytes per bucket over [t0, t1) for dev's counter k (0 rx, 1 tx), linear in between."""
    pts = [(t, d[dev][k]) for t, d in rows if dev in d]
    if len(pts) < 2:
        return []

    def at(t):
        if t <= pts[0][0]:
            return pts[0][1]
        for (ta, va), (tb, vb) in zip(pts, pts[1:]):
            if ta <= t <= tb:
                return va + (vb - va) * (t - ta) / (tb - ta) if tb > ta else vb
        return pts[-1][1]

    n = max(1, int(round((t1 - t0) / bucket)))
    edges = [t0 + i * bucket for i in range(n + 1)]
    vals = [at(t) for t in edges]
    return [vals[i + 1] - vals[i] for i in range(n)]


def model_bounds(model):
    """Fractions of the model's bytes at which each file but the last ends, in read order."""
    files = []
    for dirpath, _, names in os.walk(model):
        for name in names:
            p = os.path.join(dirpath, name)
            if os.path.isfile(p) and not os.path.islink(p):
                rel = "./" + os.path.relpath(p, model)
                files.append((rel.encode(), os.path.getsize(p)))
    files.sort()
    total = sum(s for _, s in files) or 1
    bounds, cum = [], 0
    for _, s in files[:-1]:
        cum += s
        if s >= total // 50:  # small files (crc32.txt, refs) are no chunk tail
            bounds.append(cum / total)
    return bounds


def phase(frac, bounds):
    if frac < 0.05:
        return "start"
    if frac > 0.95:
        return "tail"
    for b in bounds:
        if b - 0.04 <= frac <= b + 0.02:
            return "file ends"
    return "middle"


def summary(args):
    rows = load(args.samples)
    run = json.load(open(args.run))
    rate = args.rate / 8.0  # bytes per second
    b = args.bucket
    nodes = [(int(n["node"].replace("node", "")), n["ms"] / 1000.0) for n in run["nodes"]]
    readers = {i: s for i, s in nodes}
    t_end = max(s for _, s in nodes)
    devs = sorted({d for _, row in rows for d in row if d.startswith("n")},
                  key=lambda d: int(d[1:]))
    cap = rate * b
    print("link timeline: %.1f s buckets, digit = utilisation of the link (0 <10%%, 9 >=90%%), "
          "'.' = that node's read ended; up = what the node sent" % b)
    for dev in devs:
        i = int(dev[1:])
        span = readers.get(i, t_end)
        role = "reader %.2f s" % readers[i] if i in readers else "old"
        if args.old and i <= args.old:
            role = "old"
        out, tot_up = [], 0
        for k, name in ((0, "up"), (1, "down")):
            v = series(rows, dev, k, args.start, args.start + t_end, b)
            if not v:
                continue
            nb = max(1, int(round(span / b)))
            busy = 100.0 * sum(v[:nb]) / (cap * nb)
            line = "".join(str(min(9, int(10 * x / cap))) if j < nb else "."
                           for j, x in enumerate(v))
            out.append("%s %3.0f%% %s" % (name.ljust(4), busy, line))
            if k == 0:
                tot_up = sum(v[:nb])
        print("node%-3d %-14s sent %4.0f MB" % (i, role, tot_up / 1e6))
        for line in out:
            print("    " + line)
    slow = max(nodes, key=lambda x: x[1])
    i, span = slow
    v = series(rows, "n%d" % i, 1, args.start, args.start + span, b)
    if not v:
        return
    total = sum(v) or 1
    bounds = model_bounds(args.model)
    lost = {"start": 0.0, "middle": 0.0, "file ends": 0.0, "tail": 0.0}
    cum = 0.0
    idle, run_at = [], None
    for j, x in enumerate(v):
        frac = (cum + x / 2) / total
        cum += x
        lost[phase(frac, bounds)] += b * max(0.0, 1.0 - x / cap)
        if x < cap / 2 and run_at is None:
            run_at = j
        if x >= cap / 2 and run_at is not None:
            idle.append((run_at * b, j * b))
            run_at = None
    if run_at is not None:
        idle.append((run_at * b, len(v) * b))
    print("slowest reader node%d, %.2f s: its downlink carried nothing for %.2f link-s: %s" %
          (i, span, sum(lost.values()),
           ", ".join("%s %.2f" % kv for kv in lost.items())))
    print("    below half rate: %s" %
          (" ".join("%.1f-%.1f" % s for s in idle) if idle else "never"))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample")
    s.add_argument("out")
    s.add_argument("--every", type=float, default=0.1)
    s.add_argument("--max-seconds", type=float, default=900)
    m = sub.add_parser("summary")
    m.add_argument("samples")
    m.add_argument("--start", type=float, required=True)
    m.add_argument("--run", required=True)
    m.add_argument("--rate", type=float, required=True)
    m.add_argument("--model", required=True)
    m.add_argument("--old", type=int, default=0)
    m.add_argument("--bucket", type=float, default=0.2)
    a = ap.parse_args()
    sample(a) if a.cmd == "sample" else summary(a)


if __name__ == "__main__":
    main()
