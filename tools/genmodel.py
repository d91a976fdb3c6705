#!/usr/bin/env python3
"""Generates a small model directory shaped like a Hugging Face download.

    genmodel.py DIR [--shards N] [--shard-mib M]

DIR/models--mows--demo/ holds blobs/<sha256> with the content, refs/main with the revision and
snapshots/<rev>/NAME -> ../../blobs/<sha256> links, as huggingface_hub lays out its cache.
Shards are safetensors-shaped: an 8-byte little-endian header length, a JSON header that
describes the tensors, then their bytes (deterministic pseudo-random data).
"""
import argparse, hashlib, json, os, random, struct, sys

def safetensors_bytes(seed, mib):
    rng = random.Random(seed)
    tensors, offset, sizes = {}, 0, []
    left = mib << 20
    i = 0
    while left > 0:
        # Odd sizes on purpose: tensors rarely align with chunks.
        n = min(left, rng.choice([1 << 20, 3 << 19, 4096 * 257, 12345 * 8]))
        rows = n // 2
        tensors[f"model.layers.{i}.weight"] = {"dtype": "BF16", "shape": [rows, 1],
                                               "data_offsets": [offset, offset + rows * 2]}
        offset += rows * 2
        sizes.append(rows * 2)
        left -= n
        i += 1
    tensors["__metadata__"] = {"format": "pt"}
    header = json.dumps(tensors).encode()
    header += b" " * (-len(header) % 8)
    data = bytearray(struct.pack("<Q", len(header)) + header)
    rng = random.Random(seed + 1)
    for n in sizes:
        data += rng.randbytes(n)
    return bytes(data)

def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--shards", type=int, default=3)
    ap.add_argument("--shard-mib", type=int, default=64)
    a = ap.parse_args()
    repo = os.path.join(a.dir, "models--mows--demo")
    files = {
        "config.json": json.dumps({"architectures": ["DemoForCausalLM"], "hidden_size": 1024,
                                   "num_hidden_layers": a.shards * 4}, indent=2).encode(),
        "tokenizer_config.json": json.dumps({"model_max_length": 4096}).encode(),
        "tokenizer.json": json.dumps({"version": "1.0", "vocab": {f"t{i}": i for i in range(5000)}}).encode(),
        "generation_config.json": b"{}\n",
    }
    index = {"metadata": {"total_size": 0}, "weight_map": {}}
    for s in range(a.shards):
        name = f"model-{s + 1:05d}-of-{a.shards:05d}.safetensors"
        files[name] = safetensors_bytes(s, a.shard_mib + s)  # different sizes
        index["weight_map"][f"model.layers.{s}.weight"] = name
        index["metadata"]["total_size"] += len(files[name])
    files["model.safetensors.index.json"] = json.dumps(index, indent=2).encode()
    rev = hashlib.sha1(b"".join(hashlib.sha1(v).digest() for v in files.values())).hexdigest()
    for d in ("blobs", "refs", f"snapshots/{rev}"):
        os.makedirs(os.path.join(repo, d), exist_ok=True)
    with open(os.path.join(repo, "refs", "main"), "w") as f:
        f.write(rev)
    for name, data in files.items():
        sha = hashlib.sha256(data).hexdigest()
        with open(os.path.join(repo, "blobs", sha), "wb") as f:
            f.write(data)
        link = os.path.join(repo, "snapshots", rev, name)
        if not os.path.lexists(link):
            os.symlink(f"../../blobs/{sha}", link)
    print(os.path.join(repo, "snapshots", rev))

if __name__ == "__main__":
    sys.exit(main())
