#!/usr/bin/env bash
# Compile-checks the GPU build (features cuda and nccl: the library, the examples, the tests)
# on a machine without a GPU; CI runs it after the tests. ~6 min of nvcc the first time in
# a target directory (candle's kernels), then seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/cuda-toolkit.sh)"
nvcc --version | tail -1
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/cuda}
cargo check --locked --features cuda,nccl --workspace --examples --tests
