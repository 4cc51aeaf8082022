#!/usr/bin/env bash
# Every test: unit, integration, doc, compile-fail (ui-tests/) and the data-parallel tests
# under mpirun; then the GPU build's compile check (features cuda and nccl, with CUDA 13.0's
# compiler from PyPI: scripts/cuda-check.sh, ~6 min of nvcc on a fresh target directory;
# LIGHTNING_SKIP_CUDA_CHECK=1 skips it). Installs OpenMPI and libclang by apt first when they
# are missing (scripts/setup-mpi.sh; root, Debian). This is the README's test command;
# .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-mpi.sh install
cargo test --workspace --locked --features mpi "$@"
if [ "${LIGHTNING_SKIP_CUDA_CHECK:-0}" != 1 ]; then
  scripts/cuda-check.sh
fi
