#!/usr/bin/env python3
"""Recomputes the MNIST example's MLP in numpy from its checkpoint's `model.safetensors` and
checks the logits against the Rust model's. Needs numpy and safetensors only (no torch);
scripts/python-roundtrip.sh installs them and runs tests/python_roundtrip.rs, which writes the
inputs and the Rust logits and calls this script:

    python3 scripts/python-roundtrip.py CKPT_DIR/model.safetensors RUST_OUTPUTS.safetensors

The model, as examples/mnist.rs defines it: x = (pixels - 0.1307) / 0.3081, then
fc2(relu(fc1(x))), each `fcN` a torch-style linear layer (`weight` of shape [out, in]).
"""
import sys

import numpy as np
from safetensors.numpy import load_file

TOLERANCE = 1e-5


def mlp_logits(weights: dict, pixels: np.ndarray) -> np.ndarray:
    # float64 throughout: the reference is exact to far below the tolerance
    w = {k: v.astype(np.float64) for k, v in weights.items()}
    x = (pixels.astype(np.float64) - 0.1307) / 0.3081
    hidden = np.maximum(x @ w["fc1.weight"].T + w["fc1.bias"], 0.0)
    return hidden @ w["fc2.weight"].T + w["fc2.bias"]


def main(weights_path: str, outputs_path: str) -> int:
    weights = load_file(weights_path)
    expected = {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"}
    if set(weights) != expected:
        print(f"{weights_path}: tensors {sorted(weights)}, expected {sorted(expected)}")
        return 1
    rust = load_file(outputs_path)
    pixels, rust_logits, labels = rust["images"], rust["logits"], rust["labels"]
    logits = mlp_logits(weights, pixels)
    diff = np.abs(logits - rust_logits.astype(np.float64)).max()
    agree = (logits.argmax(1) == rust_logits.argmax(1)).mean()
    accuracy = (logits.argmax(1) == labels).mean()
    print(
        f"numpy vs Rust logits on {len(pixels)} images: max |difference| {diff:.3g} "
        f"(tolerance {TOLERANCE:g}), predictions agree on {100 * agree:.1f}%, numpy accuracy {100 * accuracy:.1f}%"
    )
    return 0 if diff <= TOLERANCE else 1


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))
