#!/usr/bin/env bash
# Compile-checks the `cuda` feature on a machine without a GPU (not part of CI: ~6 min of
# nvcc and ~270 MB of wheels on a fresh target directory). Recipe: ../shared/reference/cuda-and-mpi.md.
#   scripts/cuda-check.sh          # cargo check --features cuda (library, tests, example)
#   scripts/cuda-check.sh build    # also links the example (installs cuBLAS etc., 1.2 GB, and a libcuda stub)
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX=${CUDA_PREFIX:-$HOME/.cache/cuda13}
extras="nvcc,nvvm,crt,cudart,cccl"
[ "${1:-}" = build ] && extras="$extras,cublas,curand,nvrtc"
if [ ! -x "$PREFIX/nvidia/cu13/bin/nvcc" ] || [ "${1:-}" = build ]; then
  python3 -m pip install --quiet --target "$PREFIX" --upgrade "cuda-toolkit[$extras]==13.0.2"
fi
export CUDA_HOME=$PREFIX/nvidia/cu13
export PATH=$CUDA_HOME/bin:$PATH          # cudarc's build script runs plain `nvcc --version`
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}   # H100/H200; there is no nvidia-smi here
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target/cuda}
nvcc --version | tail -1
if [ "${1:-}" = build ]; then
  (cd "$CUDA_HOME/lib" && for l in cudart cublas cublasLt nvrtc; do ln -sf "lib$l.so.13" "lib$l.so"; done && ln -sf libcurand.so.10 libcurand.so)
  mkdir -p "$CUDA_HOME/lib/stubs"
  grep -ohE '^pub unsafe fn cu[A-Za-z0-9_]+' "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs \
    | awk '{print "int " $4 "(void) { return 999; }"}' | sort -u > "$CUDA_HOME/lib/stubs/libcuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA_HOME/lib/stubs/libcuda.so" "$CUDA_HOME/lib/stubs/libcuda_stub.c"
  cargo build --release --features cuda --example mnist
else
  cargo check --features cuda --workspace --all-targets
fi
