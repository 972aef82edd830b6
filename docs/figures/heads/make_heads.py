#!/usr/bin/env python3
"""Synthetic 'model-like' heads for `fastattn experiment heads` (no numpy needed).

Writes q.npy, k.npy, v.npy of shape [8, 4096, 64] (float32) into the folder given as the first argument. Each head's
queries and keys live in a subspace of rank r of R^64 with entries scaled to a chosen size, the way trained heads
often concentrate in a few directions; V is uniform in [-1, 1]. The heads span the regimes of the map:
rank 1 to 64, largest logits from about 0.1 to about 100.
"""
import math, random, struct, sys

H, N, D = 8, 4096, 64
# (rank of Q and K, entry scale): the scale multiplies unit-variance coordinates.
HEADS = [(1, 0.3), (1, 3.0), (2, 1.0), (4, 0.5), (4, 4.0), (8, 1.0), (64, 0.05), (64, 0.6)]

def save(path, shape, data):
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (%s), }" % ", ".join(map(str, shape))
    header += " " * (64 - (10 + len(header) + 1) % 64) + "\n"
    with open(path, "wb") as f:
        f.write(b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode())
        f.write(struct.pack("<%df" % len(data), *data))

def main(out):
    rnd = random.Random(2024)
    q, k, v = [], [], []
    for rank, scale in HEADS:
        basis = [[rnd.gauss(0, 1) / math.sqrt(D) for _ in range(D)] for _ in range(rank)]
        for mat in (q, k):
            for _ in range(N):
                c = [rnd.gauss(0, 1) for _ in range(rank)]
                mat.extend(scale * math.sqrt(D / rank) * sum(c[r] * basis[r][j] for r in range(rank)) for j in range(D))
        v.extend(rnd.uniform(-1, 1) for _ in range(N * D))
    for name, data in (("q", q), ("k", k), ("v", v)):
        save(f"{out}/{name}.npy", (H, N, D), data)

if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
