"""The numpy counterpart of benches/data_memory.rs: the training images of an IDX directory
as one uint8 array (what a torch TensorDataset of uint8 holds), then one shuffled epoch of
batches of 256 converted to float32 / 255. Prints the peak RSS.

    PYTHONPATH=~/.cache/lightning-python python3 scripts/bench/data_memory.py /tmp/idx
"""
import resource
import sys
import time

import numpy as np

BATCH = 256


def read_idx(path):
    with open(path, "rb") as f:
        head = f.read(4)
        ndims = head[3]
        dims = [int.from_bytes(f.read(4), "big") for _ in range(ndims)]
        return np.fromfile(f, dtype=np.uint8).reshape(dims)


def main():
    d = sys.argv[1]
    start = time.perf_counter()
    x = read_idx(f"{d}/train-images-idx3-ubyte").reshape(-1, 784)
    y = read_idx(f"{d}/train-labels-idx1-ubyte").astype(np.int64)
    order = np.random.default_rng(1).permutation(len(x))
    n, total = 0, 0.0
    for b in range(0, len(x), BATCH):
        ids = order[b : b + BATCH]
        xb = x[ids].astype(np.float32) / 255.0
        _ = y[ids]
        n += len(xb)
        total += float(xb[0, 0])
    secs = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"numpy: {n} images, load + one epoch {secs:.2f} s ({n / secs:.0f} samples/s), peak RSS {peak:.0f} MiB (checksum {total:.3f})")


if __name__ == "__main__":
    main()
