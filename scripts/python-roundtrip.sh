#!/usr/bin/env bash
# The Python round trip of tests/python_roundtrip.rs: installs numpy and safetensors from PyPI
# into a cache directory outside the repository (no torch; no root; PYTHON_DEPS overrides the
# directory, default ~/.cache/lightning-python), then runs the test that trains the MNIST
# example's MLP and has scripts/python-roundtrip.py recompute its logits in numpy. Extra
# arguments go to cargo test (scripts/test-all.sh passes --features mpi, so nothing rebuilds).
# Without python3 or pip it says so and exits 0: the rest of the suite does not depend on it.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPS=${PYTHON_DEPS:-$HOME/.cache/lightning-python}
if ! command -v python3 > /dev/null || ! python3 -m pip --version > /dev/null 2>&1; then
  echo "python-roundtrip: SKIPPED, no python3 with pip on this machine"
  exit 0
fi
if ! PYTHONPATH=$DEPS python3 -c 'import numpy, safetensors' 2> /dev/null; then
  # --target installs into our own directory, never into the system's Python (PEP 668)
  PIP_BREAK_SYSTEM_PACKAGES=1 python3 -m pip install --quiet --disable-pip-version-check \
    --target "$DEPS" --upgrade "numpy==2.4.6" "safetensors==0.8.0" >&2
fi
PYTHONPATH=$DEPS LIGHTNING_PYTHON=python3 \
  cargo test --locked "$@" --test python_roundtrip -- --ignored --nocapture numpy_recomputes_the_rust_logits
