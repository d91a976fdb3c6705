#!/usr/bin/env python3
"""Prints 'RELPATH CHUNK NCHUNKS' for the first middle chunk (neither a file's first nor its
last) that node NODE owns among nodes node1..nodeN under plain rendezvous placement
(ownership = rendezvous, replicas = 1, all N up), from the file identities under ROOT as the
calling node sees them. Mirrors common/hash.h and net/place.c; exits 1 if NODE owns none.

usage: rendezvous_owner.py ROOT CHUNK_SIZE NODE N RELPATH...
"""
import os
import struct
import sys

M64 = (1 << 64) - 1


def fnv(h, data):
    for b in data:
        h = ((h ^ b) * 0x100000001B3) & M64
    return h


def fmix(h):
    h ^= h >> 33
    h = (h * 0xFF51AFD7ED558CCD) & M64
    h ^= h >> 33
    h = (h * 0xC4CEB93E1A85EC53) & M64
    return h ^ (h >> 33)


def node_hash(node_id):
    return fmix(fnv(fnv(0xCBF29CE484222325, b"mows-node\0"), node_id.encode()))


def main():
    root, chunk, node, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    nodes = [node_hash("node%d" % i) for i in range(1, n + 1)]
    for rel in sorted(sys.argv[5:]):
        st = os.stat(os.path.join(root, rel))
        ident = rel.encode() + b"\0" + struct.pack(">Qq", st.st_size, st.st_mtime_ns)
        key = fmix(fnv(0xCBF29CE484222325, ident))
        nchunks = (st.st_size + chunk - 1) // chunk
        for k in range(1, nchunks - 1):
            ck = fmix(key ^ fmix((k + 0x9E3779B97F4A7C15) & M64))
            w = [fmix(h ^ ck) for h in nodes]
            if w.index(max(w)) == node - 1:
                print(rel, k, nchunks)
                return 0
    sys.exit("no middle chunk of %s is owned by node%d" % (" ".join(sys.argv[5:]), node))


if __name__ == "__main__":
    sys.exit(main())
