#!/usr/bin/env bash
# Links the GPU build here, without a GPU: the MNIST example with features cuda and nccl,
# release, stripped, in gpu/bin/ (git-ignored), ready to carry to a GPU machine that has
# CUDA 13 and NCCL 2 libraries (see ../shared/reference/cuda-and-mpi.md §1.4). Installs
# cuBLAS, cuRAND, NVRTC and NCCL wheels and a libcuda link stub (scripts/cuda-toolkit.sh link,
# ~1.3 GB). Release build with candle's kernels: ~10-15 min on 2 cores the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/cuda-toolkit.sh link)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/cuda}
cargo build --locked --release --features cuda,nccl --example mnist
mkdir -p gpu/bin
strip -o gpu/bin/mnist "$CARGO_TARGET_DIR/release/examples/mnist"
# what the binary needs at run time: libcuda.so.1 from the driver, the rest from CUDA 13 wheels
readelf -d gpu/bin/mnist | grep NEEDED
# it starts here with the stub driver, and says there is no GPU when asked for one
export LD_LIBRARY_PATH=$CUDA_HOME/lib/stubs:$CUDA_HOME/lib:${CUDA_PREFIX:-$HOME/.cache/cuda13}/nvidia/nccl/lib
gpu/bin/mnist --help > /dev/null
if out=$(gpu/bin/mnist --accelerator cuda --epochs 1 --root-dir "$(mktemp -d)" 2>&1); then
  echo "cuda-build: a CUDA run succeeded without a GPU?" >&2; exit 1
fi
echo "without a GPU, as expected: $(echo "$out" | tail -1)"
ls -l gpu/bin/mnist
