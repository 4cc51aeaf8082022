#!/usr/bin/env bash
# Installs CUDA 13.0's compiler from PyPI into a cache directory outside the repository (no
# GPU, no root, no apt) and prints the environment to export. Recipe and pitfalls:
# ../shared/reference/cuda-and-mpi.md.
#   eval "$(scripts/cuda-toolkit.sh)"        # nvcc & headers (~270 MB): enough for `cargo check`
#   eval "$(scripts/cuda-toolkit.sh link)"   # + cuBLAS, cuRAND, NVRTC, NCCL, the unversioned
#                                            #   .so links and a libcuda stub (~1.3 GB): links binaries
# CUDA_PREFIX overrides the cache directory (default ~/.cache/cuda13).
set -euo pipefail
PREFIX=${CUDA_PREFIX:-$HOME/.cache/cuda13}
CUDA_HOME=$PREFIX/nvidia/cu13
if ! python3 -m pip --version > /dev/null 2>&1; then
  echo "cuda-toolkit: installing pip (apt)" >&2
  sudo=""; [ "$(id -u)" != 0 ] && sudo=sudo
  $sudo apt-get update -qq >&2 || true
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends python3-pip > /dev/null
fi
# --target installs into our own directory, never into the system's Python (PEP 668)
export PIP_BREAK_SYSTEM_PACKAGES=1
pip() { python3 -m pip install --quiet --disable-pip-version-check --target "$PREFIX" --upgrade "$@" >&2; }
# 13.0: the H200 machines' driver (580) JIT-compiles PTX up to ISA 9.0 (CUDA 13.0)
if [ ! -x "$CUDA_HOME/bin/nvcc" ]; then
  pip "cuda-toolkit[nvcc,nvvm,crt,cudart,cccl]==13.0.2"
fi
if [ "${1:-}" = link ]; then
  if [ ! -e "$CUDA_HOME/lib/libcublas.so.13" ] || [ ! -e "$PREFIX/nvidia/nccl/lib/libnccl.so.2" ]; then
    pip "cuda-toolkit[nvcc,nvvm,crt,cudart,cccl,cublas,curand,nvrtc]==13.0.2" "nvidia-nccl-cu13==2.30.7"
  fi
  # the wheels ship versioned names only; the linker wants the plain ones
  (cd "$CUDA_HOME/lib" && for l in cudart cublas cublasLt nvrtc; do ln -sf "lib$l.so.13" "lib$l.so"; done \
    && ln -sf libcurand.so.10 libcurand.so && ln -sf "$PREFIX/nvidia/nccl/lib/libnccl.so.2" libnccl.so)
  # libcuda.so.1 comes with the NVIDIA driver, which this machine lacks: a link-time stub with
  # every symbol cudarc's driver bindings declare (cudarc adds lib/stubs to the search path)
  mkdir -p "$CUDA_HOME/lib/stubs"
  src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs 2>/dev/null | head -1)
  if [ -z "$src" ]; then
    cargo fetch --locked >&2
    src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.*/src/driver/sys/mod.rs | head -1)
  fi
  grep -ohE '^pub unsafe fn cu[A-Za-z0-9_]+' "$src" | awk '{print "int " $4 "(void) { return 999; }"}' | sort -u \
    > "$CUDA_HOME/lib/stubs/libcuda_stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$CUDA_HOME/lib/stubs/libcuda.so" "$CUDA_HOME/lib/stubs/libcuda_stub.c"
  # the name the binaries ask for at run time, to start them here (they find no GPU)
  ln -sf libcuda.so "$CUDA_HOME/lib/stubs/libcuda.so.1"
fi
echo "export CUDA_HOME=$CUDA_HOME"
# cudarc's build script runs the plain `nvcc --version` from PATH
echo "export PATH=$CUDA_HOME/bin:\$PATH"
# candle's kernels for H100/H200; there is no nvidia-smi here to ask
echo "export CUDA_COMPUTE_CAP=\${CUDA_COMPUTE_CAP:-90}"
