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
By batch size, plain PyTorch's MLP only (against `cargo bench --bench epoch -- --only bare --batch N`):
    .venv-torch/bin/python scripts/bench/pytorch_reference.py --only mlp --plain-only --batch 1024
Peak memory of one Lightning MLP epoch (compare with the MNIST example's, see BENCHMARKS.md):
    /usr/bin/time -v .venv-torch/bin/python scripts/bench/pytorch_reference.py --lightning-mlp-epoch

The GPT of `cargo bench --bench gpt` (examples/gpt.rs: pre-LN blocks with GPT-2's names, GELU
tanh, torch's fused scaled_dot_product_attention, dropout 0, AdamW (0.9, 0.99) lr 3e-3 with
OneCycleLR, cross-entropy on every position) on the embedded fortunes sample, plain PyTorch
and Lightning bare, in the example's configuration (4 layers, 4 heads, d 128, context 128,
batch 32) and a small one (2 layers, 4 heads, d 64, context 16, batch 128):
    .venv-torch/bin/python scripts/bench/pytorch_reference.py --gpt [--gpt-config gpt|small] [--gpt-batches N]
Peak memory of plain PyTorch on the example's configuration (compare with the bench's):
    /usr/bin/time -v .venv-torch/bin/python scripts/bench/pytorch_reference.py --gpt --gpt-config gpt --gpt-only plain
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


SAMPLE = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "data", "fortunes-sample")
GPT_CONFIGS = {"gpt": dict(n_layer=4, n_embd=128, block=128, batch=32), "small": dict(n_layer=2, n_embd=64, block=16, batch=128)}


class CausalSelfAttention(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.c_attn, self.c_proj, self.heads = nn.Linear(d, 3 * d), nn.Linear(d, d), heads

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = (z.view(b, t, self.heads, d // self.heads).transpose(1, 2) for z in self.c_attn(x).split(d, dim=2))
        y = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(b, t, d))


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(d), CausalSelfAttention(d, heads), nn.LayerNorm(d)
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(d, 4 * d), c_proj=nn.Linear(4 * d, d)))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp.c_proj(nn.functional.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh"))


class Gpt(nn.Module):
    def __init__(self, vocab, n_layer, n_embd, block, heads=4):
        super().__init__()
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(vocab, n_embd),
                wpe=nn.Embedding(block, n_embd),
                h=nn.ModuleList(Block(n_embd, heads) for _ in range(n_layer)),
                ln_f=nn.LayerNorm(n_embd),
            )
        )
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)

    def forward(self, idx):
        tf = self.transformer
        x = tf.wte(idx) + tf.wpe(torch.arange(idx.shape[1]))
        for block in tf.h:
            x = block(x)
        return self.lm_head(tf.ln_f(x)).flatten(0, 1)


def gpt_data(cfg, batches):
    text = "".join(gzip.open(os.path.join(SAMPLE, f + ".gz"), "rt").read() for f in ["fortunes", "literature", "riddles"])
    chars = sorted(set(text))
    ids = torch.tensor([chars.index(c) for c in text])
    t, n = cfg["block"], batches * cfg["batch"]
    ids = ids.repeat(n * t // len(ids) + 2)
    x = torch.stack([ids[i * t : i * t + t] for i in range(n)])
    y = torch.stack([ids[i * t + 1 : i * t + t + 1] for i in range(n)])
    return len(chars), x, y


def gpt_optim(model, steps):
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, betas=(0.9, 0.99), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps, pct_start=0.1, cycle_momentum=False)
    return opt, sched


def gpt_plain(cfg, batches):
    vocab, x, y = gpt_data(cfg, batches)
    torch.manual_seed(0)
    model = Gpt(vocab, cfg["n_layer"], cfg["n_embd"], cfg["block"])
    opt, sched = gpt_optim(model, batches)
    start, total = None, 0.0
    for xb, yb in DataLoader(TensorDataset(x, y), batch_size=cfg["batch"], shuffle=True, generator=torch.Generator().manual_seed(0)):
        if start is None:
            start = time.perf_counter()
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb.flatten())
        loss.backward()
        opt.step()
        sched.step()
        total += loss.detach()
    return batches * cfg["batch"] / (time.perf_counter() - start), total.item() / batches


def gpt_lightning(cfg, batches):
    import lightning as L

    vocab, x, y = gpt_data(cfg, batches)

    class Module(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.net = Gpt(vocab, cfg["n_layer"], cfg["n_embd"], cfg["block"])

        def training_step(self, batch, _):
            xb, yb = batch
            loss = nn.functional.cross_entropy(self.net(xb), yb.flatten())
            self.log("train_loss", loss, prog_bar=True)
            return loss

        def configure_optimizers(self):
            opt, sched = gpt_optim(self, self.trainer.estimated_stepping_batches)
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    class Clock(L.Callback):
        def on_train_batch_start(self, trainer, module, batch, i):
            if i == 0:
                self.start = time.perf_counter()

        def on_train_epoch_end(self, trainer, module):
            self.end = time.perf_counter()

    torch.manual_seed(0)
    clock = Clock()
    loader = DataLoader(TensorDataset(x, y), batch_size=cfg["batch"], shuffle=True, generator=torch.Generator().manual_seed(0))
    with tempfile.TemporaryDirectory() as root:
        kw = dict(max_epochs=1, accelerator="cpu", devices=1, callbacks=[clock], default_root_dir=root)
        kw.update(logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            L.Trainer(**kw).fit(Module(), loader)
    return batches * cfg["batch"] / (clock.end - clock.start), float("nan")


def gpt_main(a):
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, python {sys.version.split()[0]}, batch {BATCH}")
    print("| config | trainer | batches | samples/s | tokens/s | mean loss |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name in [a.gpt_config] if a.gpt_config else ["gpt", "small"]:
        cfg = GPT_CONFIGS[name]
        batches = a.gpt_batches or (20 if name == "gpt" else 100)
        runs = [("plain PyTorch", gpt_plain), ("Lightning, bare", gpt_lightning)]
        for trainer, run in runs:
            if a.gpt_only and not trainer.lower().startswith(a.gpt_only):
                continue
            sps, loss = run(cfg, batches)
            print(f"| {name} | {trainer} | {batches} | {sps:.0f} | {sps * cfg['block']:.0f} | {loss:.4f} |")


def main():
    global BATCH
    p = argparse.ArgumentParser()
    p.add_argument("--gpt", action="store_true", help="the GPT benchmark's model instead of the MLP and CNN")
    p.add_argument("--gpt-config", choices=list(GPT_CONFIGS))
    p.add_argument("--gpt-batches", type=int)
    p.add_argument("--gpt-only", choices=["plain", "lightning"])
    p.add_argument("--cnn-batches", type=int, default=100)
    p.add_argument("--mlp-batches", type=int, default=60000 // BATCH)
    p.add_argument("--only", choices=["mlp", "cnn"])
    p.add_argument("--batch", type=int, default=BATCH, help="batch size (default 64); --mlp-batches counts batches of this size")
    p.add_argument("--plain-only", action="store_true", help="plain PyTorch only (no Lightning runs)")
    p.add_argument("--lightning-mlp-epoch", action="store_true", help="only one MLP epoch with Lightning's defaults (for peak RSS)")
    a = p.parse_args()
    if a.batch != BATCH:
        BATCH = a.batch
        a.mlp_batches = a.mlp_batches if "--mlp-batches" in sys.argv else 60000 // BATCH
    torch.set_num_threads(1)
    if a.gpt:
        gpt_main(a)
        return
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
        if a.plain_only:
            continue
        rows.append((name, "Lightning, bare", best(lambda: lightning_run(make, x, y, batches, False))))
        rows.append((name, "Lightning, defaults (bar, CSV logger, checkpoint)", best(lambda: lightning_run(make, x, y, batches, True))))
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, python {sys.version.split()[0]}, batch {BATCH}")
    print("| model | trainer | samples/s |")
    print("| --- | --- | --- |")
    for name, trainer, sps in rows:
        print(f"| {name} | {trainer} | {sps:.0f} |")


if __name__ == "__main__":
    main()
