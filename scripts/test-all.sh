#!/usr/bin/env bash
# Every test: unit, integration, doc, compile-fail (ui-tests/) and the data-parallel tests
# under mpirun; the Python round trip (scripts/python-roundtrip.sh: numpy and safetensors
# from PyPI into ~/.cache/lightning-python, numpy recomputes the MNIST example's logits); the
# MLflow logger against a real `mlflow server` (scripts/mlflow-server.sh, mlflow from PyPI
# into ~/.cache/lightning-mlflow);
# then the GPU build's compile check (features cuda and nccl, with CUDA 13.0's compiler
# from PyPI: scripts/cuda-check.sh, ~6 min of nvcc on a fresh target directory;
# LIGHTNING_SKIP_CUDA_CHECK=1 skips it). Installs OpenMPI and libclang by apt first when they
# are missing (scripts/setup-mpi.sh; root, Debian). Ends with one summary line over every
# test binary, doc tests included. This is the README's test command; .ci/run runs it.
set -euo pipefail
cd "$(dirname "$0")/.."
# One full build: incremental caches would only cost disk (~4.5 GB for these targets).
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
scripts/setup-mpi.sh install
log=$(mktemp)
trap 'rm -f "$log"' EXIT
cargo test --workspace --locked --features mpi "$@" 2>&1 | tee "$log"
scripts/python-roundtrip.sh --features mpi 2>&1 | tee -a "$log"
scripts/mlflow-server.sh --features mpi 2>&1 | tee -a "$log"
if [ "${LIGHTNING_SKIP_CUDA_CHECK:-0}" != 1 ]; then
  scripts/cuda-check.sh
fi
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "all tests: %d passed, %d failed\n", p, f }' "$log"
