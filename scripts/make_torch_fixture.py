#!/usr/bin/env python3
"""Writes tests/fixtures/torch-mlp/: the weights of a torch `nn.Sequential` MLP shaped like the
MNIST example's (784 -> 4 -> 10; hidden 4 keeps the file small), saved with
`safetensors.torch.save_file` under the example's names, and torch's logits on the first 16
test images of the embedded sample. tests/python_roundtrip.rs loads the weights into the Rust
model by name and compares the logits.

    python3 -m pip install torch safetensors numpy
    python3 scripts/make_torch_fixture.py

nn.Sequential names its layers by position; the Rust model by field. The mapping, the recipe
for any such MLP: 0.weight -> fc1.weight, 0.bias -> fc1.bias, 2.weight -> fc2.weight,
2.bias -> fc2.bias (index 1 is the ReLU, which has no weights).
"""
import gzip
import pathlib

import numpy as np
import torch
from safetensors.torch import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
N = 16
SEQUENTIAL_TO_RUST = {"0.weight": "fc1.weight", "0.bias": "fc1.bias", "2.weight": "fc2.weight", "2.bias": "fc2.bias"}


def test_images(n: int) -> torch.Tensor:
    raw = gzip.decompress((ROOT / "examples/data/mnist-sample/t10k-images-idx3-ubyte.gz").read_bytes())
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=16)[: n * 784].reshape(n, 784)
    return torch.from_numpy(pixels.astype(np.float32) / 255.0)


def main() -> None:
    torch.manual_seed(0)
    mlp = torch.nn.Sequential(torch.nn.Linear(784, 4), torch.nn.ReLU(), torch.nn.Linear(4, 10))
    with torch.no_grad():
        logits = mlp((test_images(N) - 0.1307) / 0.3081)
    out = ROOT / "tests/fixtures/torch-mlp"
    out.mkdir(parents=True, exist_ok=True)
    state = {SEQUENTIAL_TO_RUST[k]: v.contiguous() for k, v in mlp.state_dict().items()}
    save_file(state, str(out / "model.safetensors"), metadata={"torch": torch.__version__})
    save_file({"logits": logits.contiguous()}, str(out / "expected.safetensors"))
    print(f"wrote {out} with torch {torch.__version__}")


if __name__ == "__main__":
    main()
