#!/usr/bin/env python3
"""Turns a candle-lightning checkpoint into a torch `state_dict` file (`torch.save`), for going
back to PyTorch. Needs torch and safetensors.

    python3 scripts/to_torch.py CKPT OUT.pt [--rename OLD=NEW ...]

CKPT is a checkpoint directory (its `model.safetensors` is read) or a `.safetensors` file.
Names stay as in the Rust `VarMap` (`fc1.weight`, ...: torch's own layout, weight [out, in]);
each `--rename OLD=NEW` replaces a name prefix, e.g. for the MNIST example's MLP as an
`nn.Sequential(nn.Linear(784, 128), nn.ReLU(), nn.Linear(128, 10))`:

    python3 scripts/to_torch.py CKPT mlp.pt --rename fc1.=0. --rename fc2.=2.
    model.load_state_dict(torch.load("mlp.pt"))
"""
import argparse
import pathlib
import sys

import torch
from safetensors.torch import load_file


def rename(name: str, rules: list) -> str:
    for old, new in rules:
        if name.startswith(old):
            return new + name[len(old):]
    return name


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ckpt", type=pathlib.Path, help="checkpoint directory or .safetensors file")
    parser.add_argument("out", type=pathlib.Path, help="the .pt file to write")
    parser.add_argument("--rename", action="append", default=[], metavar="OLD=NEW", help="replace a name prefix")
    args = parser.parse_args()
    path = args.ckpt / "model.safetensors" if args.ckpt.is_dir() else args.ckpt
    if not path.is_file():
        print(f"error: {path} does not exist (give a checkpoint directory or its model.safetensors)", file=sys.stderr)
        return 1
    rules = []
    for r in args.rename:
        if "=" not in r:
            print(f"error: --rename {r!r} is not OLD=NEW", file=sys.stderr)
            return 1
        rules.append(tuple(r.split("=", 1)))
    state = {}
    for name, tensor in load_file(str(path)).items():
        new = rename(name, rules)
        if new in state:
            print(f"error: two tensors are renamed to {new!r}", file=sys.stderr)
            return 1
        state[new] = tensor
    torch.save(state, args.out)
    print(f"wrote {args.out}: {len(state)} tensors, {sum(t.numel() for t in state.values())} values")
    return 0


if __name__ == "__main__":
    sys.exit(main())
