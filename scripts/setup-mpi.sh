#!/usr/bin/env bash
# Installs what the `mpi` feature needs on Debian: OpenMPI (mpicc, mpirun) and libclang
# (rsmpi's bindgen), then runs the data-parallel tests under mpirun. Not part of .ci/run yet.
#   scripts/setup-mpi.sh          # install if missing, then cargo test --features mpi --test ddp
#   scripts/setup-mpi.sh install  # install only
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v mpicc > /dev/null || ! ls /usr/lib/llvm-*/lib/libclang*.so* > /dev/null 2>&1; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libopenmpi-dev openmpi-bin libclang-dev
fi
[ "${1:-}" = install ] && exit 0
cargo test --locked --features mpi --test ddp
