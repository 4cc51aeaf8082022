"""The Python counterpart of benches/data_memory.rs: one shuffled epoch of batches of 256
converted to float32 / 255 from the training images of an IDX directory. Prints the peak RSS.

    python3 scripts/bench/data_memory.py /tmp/idx [numpy|torch|torch-file]

- numpy: the images as one uint8 array (what a torch TensorDataset of uint8 holds);
- torch: a TensorDataset of uint8 tensors under torch's DataLoader (shuffle, batch 256);
- torch-file: a map-style Dataset reading each image from the IDX file (pread) under
  torch's DataLoader, the counterpart of IdxDataset under MapLoader (0 workers).
The torch modes need torch (e.g. the venv of scripts/bench/pytorch_reference.py); importing
torch is part of their peak RSS, as it is of any PyTorch program.
"""
import os
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


def torch_epoch(d, from_file):
    import torch
    from torch.utils.data import DataLoader, Dataset, TensorDataset

    torch.set_num_threads(1)
    print(f"import torch alone: peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    start = time.perf_counter()
    if from_file:
        class Idx(Dataset):
            # each image read with pread, as IdxDataset does (a memory map's pages would count
            # in the process's RSS once touched)
            def __init__(self):
                self.fd = os.open(f"{d}/train-images-idx3-ubyte", os.O_RDONLY)
                self.y = read_idx(f"{d}/train-labels-idx1-ubyte").astype(np.int64)

            def __len__(self):
                return len(self.y)

            def __getitem__(self, i):
                raw = os.pread(self.fd, 784, 16 + 784 * i)
                return torch.frombuffer(bytearray(raw), dtype=torch.uint8), int(self.y[i])

        data = Idx()
    else:
        x = torch.from_numpy(read_idx(f"{d}/train-images-idx3-ubyte").reshape(-1, 784))
        y = torch.from_numpy(read_idx(f"{d}/train-labels-idx1-ubyte").astype(np.int64))
        data = TensorDataset(x, y)
    loader = DataLoader(data, batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(1))
    n, total = 0, 0.0
    for xb, _ in loader:
        xb = xb.float() / 255.0
        n += len(xb)
        total += float(xb[0, 0])
    return n, total, time.perf_counter() - start


def main():
    d = sys.argv[1]
    mode = sys.argv[2] if len(sys.argv) > 2 else "numpy"
    if mode != "numpy":
        n, total, secs = torch_epoch(d, mode == "torch-file")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"{mode}: {n} images, load + one epoch {secs:.2f} s ({n / secs:.0f} samples/s), peak RSS {peak:.0f} MiB (checksum {total:.3f})")
        return
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
