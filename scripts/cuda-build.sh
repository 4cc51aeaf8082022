#!/usr/bin/env bash
# Links the GPU build here, without a GPU: the MNIST example with features cuda and nccl,
# release, stripped. Installs cuBLAS, cuRAND, NVRTC and NCCL wheels and a libcuda link stub
# (scripts/cuda-toolkit.sh link, ~1.3 GB). Release build with candle's kernels: ~10-15 min
# on 2 cores the first time.
#
# What to carry to a GPU machine goes in gpu/ (git-ignored; the device tool carries at most
# 64 MiB): gpu/bin/mnist.gz (the 58 MB binary gzipped to ~15 MB: gunzip it there) and, with
# `--with-data`, Fashion-MNIST's IDX files (30 MB) in gpu/data/. The machine needs CUDA 13's
# cuBLAS, cuRAND, runtime and NCCL 2 libraries (see ../shared/reference/cuda-and-mpi.md §1.4).
set -euo pipefail
cd "$(dirname "$0")/.."
eval "$(scripts/cuda-toolkit.sh link)"
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target/cuda}
cargo build --locked --release --features cuda,nccl --example mnist
bin=$CARGO_TARGET_DIR/release/examples/mnist-stripped
strip -o "$bin" "$CARGO_TARGET_DIR/release/examples/mnist"
# what the binary needs at run time: libcuda.so.1 from the driver, the rest from CUDA 13 wheels
readelf -d "$bin" | grep NEEDED
# it starts here with the stub driver, and fails cleanly when asked for a GPU
export LD_LIBRARY_PATH=$CUDA_HOME/lib/stubs:$CUDA_HOME/lib:${CUDA_PREFIX:-$HOME/.cache/cuda13}/nvidia/nccl/lib
"$bin" fit --help > /dev/null
if out=$("$bin" fit --trainer.accelerator cuda --trainer.max_epochs 1 --trainer.default_root_dir "$(mktemp -d)" 2>&1); then
  echo "cuda-build: a CUDA run succeeded without a GPU?" >&2
  exit 1
fi
echo "without a GPU, as expected: $(echo "$out" | head -1)"
mkdir -p gpu/bin
gzip -9 -c "$bin" > gpu/bin/mnist.gz
if [ "${1:-}" = --with-data ]; then
  mkdir -p gpu/data
  cp /usr/share/datasets/fashion-mnist/*-ubyte.gz gpu/data/
fi
du -sh gpu
