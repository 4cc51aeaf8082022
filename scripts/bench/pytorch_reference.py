#!/usr/bin/env python3
"""PyTorch and PyTorch Lightning reference for the benchmarks (not part of CI).

Trains the same MLP (784-128-10, ReLU) and CNN (conv 1->32 3x3, ReLU, max-pool 2, conv 32->64
3x3, ReLU, max-pool 2, fc 1600->128->10) as `cargo bench --bench cnn` (and the MLP of the
epoch benchmark), with Adam lr 1e-3, batch 64, cross-entropy, one thread, on Fashion-MNIST
from /usr/share/datasets/fashion-mnist, and prints training samples/s for: plain PyTorch,
Lightning bare, and Lightning with its defaults (progress bar, CSV logger, checkpoint at
epoch end). Timing covers the training batches only (first to last batch of the epoch).

Set-up, once (PyPI's Linux wheels of torch pull CUDA libraries, about 4 GB):
    python3 -m venv .venv-torch && .venv-torch/bin/pip install torch lightning
Run:
    .venv-torch/bin/python scripts/bench/pytorch_reference.py [--cnn-batches 100] [--mlp-batches 938]
Peak memory of one Lightning MLP epoch (compare with the MNIST example's, see BENCHMARKS.md):
    /usr/bin/time -v .venv-torch/bin/python scripts/bench/pytorch_reference.py --lightning-mlp-epoch
"""
import argparse
import contextlib
import gzip
import io
import os
import struct
import sys
import tempfile
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

DATA = "/usr/share/datasets/fashion-mnist"
BATCH = 64


def idx(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    dims = struct.unpack(">" + "I" * ndim, raw[4 : 4 + 4 * ndim])
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load():
    x = idx(os.path.join(DATA, "train-images-idx3-ubyte.gz")).reshape(-1, 784).astype(np.float32) / 255.0
    y = idx(os.path.join(DATA, "train-labels-idx1-ubyte.gz")).astype(np.int64)
    return torch.from_numpy(x), torch.from_numpy(y)


def mlp():
    return nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))


class Cnn(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2)
        )
        self.head = nn.Sequential(nn.Linear(1600, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x):
        return self.head(self.features(x.view(-1, 1, 28, 28)).flatten(1))


def loader(x, y, batches):
    n = batches * BATCH
    return DataLoader(TensorDataset(x[:n], y[:n]), batch_size=BATCH, shuffle=True, generator=torch.Generator().manual_seed(0))


def plain(make, x, y, batches):
    torch.manual_seed(0)
    model = make()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = None
    for xb, yb in loader(x, y, batches):
        if start is None:
            start = time.perf_counter()
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
    return batches * BATCH / (time.perf_counter() - start)


def lightning_run(make, x, y, batches, defaults):
    import lightning as L

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = make()

        def training_step(self, batch, _):
            xb, yb = batch
            loss = nn.functional.cross_entropy(self.net(xb), yb)
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=1e-3)

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, i):
            if i == 0:
                self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.end = time.perf_counter()

    torch.manual_seed(0)
    clock = Clock()
    with tempfile.TemporaryDirectory() as root:
        kw = dict(max_epochs=1, accelerator="cpu", devices=1, callbacks=[clock], default_root_dir=root)
        if defaults:
            from lightning.pytorch.loggers import CSVLogger

            kw.update(logger=CSVLogger(root), enable_checkpointing=True, enable_progress_bar=True)
        else:
            kw.update(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        # the bar would fill this script's table; it still runs and costs what it costs
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            L.Trainer(**kw).fit(Module(), loader(x, y, batches))
    return batches * BATCH / (clock.end - clock.start)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--cnn-batches", type=int, default=100)
    p.add_argument("--mlp-batches", type=int, default=60000 // BATCH)
    p.add_argument("--only", choices=["mlp", "cnn"])
    p.add_argument("--lightning-mlp-epoch", action="store_true", help="only one MLP epoch with Lightning's defaults (for peak RSS)")
    a = p.parse_args()
    torch.set_num_threads(1)
    x, y = load()
    if a.lightning_mlp_epoch:
        print(f"Lightning MLP epoch: {lightning_run(mlp, x, y, a.mlp_batches, True):.0f} samples/s")
        return
    rows = []
    for name, make, batches, reps in [("mlp", mlp, a.mlp_batches, 2), ("cnn", Cnn, a.cnn_batches, 1)]:
        if a.only and a.only != name:
            continue
        # the MLP epoch is short: best of two runs, as the Rust bench does
        best = lambda f: max(f() for _ in range(reps))
        rows.append((name, "plain PyTorch", best(lambda: plain(make, x, y, batches))))
        rows.append((name, "Lightning, bare", best(lambda: lightning_run(make, x, y, batches, False))))
        rows.append((name, "Lightning, defaults (bar, CSV logger, checkpoint)", best(lambda: lightning_run(make, x, y, batches, True))))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, python {sys.version.split()[0]}")
    print("| model | trainer | samples/s |")
    print("| --- | --- | --- |")
    for name, trainer, sps in rows:
        print(f"| {name} | {trainer} | {sps:.0f} |")


if __name__ == "__main__":
    main()
