#!/usr/bin/env bash
# Installs what the `mpi` feature needs on Debian: OpenMPI (mpicc, mpirun) and libclang
# (rsmpi's bindgen), then runs the data-parallel tests under mpirun. scripts/test-all.sh (the
# test command of the README and .ci/run) calls it with `install`.
#   scripts/setup-mpi.sh          # install if missing, then cargo test --features mpi --test ddp
#   scripts/setup-mpi.sh install  # install only
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v mpicc > /dev/null || ! ls /usr/lib/llvm-*/lib/libclang*.so* > /dev/null 2>&1; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo > /dev/null || { echo "setup-mpi: installing OpenMPI needs root (or sudo)" >&2; exit 1; }
    sudo=sudo
  fi
  echo "setup-mpi: installing libopenmpi-dev openmpi-bin libclang-dev (apt)" >&2
  # a source that cannot be reached makes `update` fail while Debian's own still work
  $sudo apt-get update -qq || echo "setup-mpi: apt-get update reported errors; installing anyway" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends libopenmpi-dev openmpi-bin libclang-dev > /dev/null
fi
[ "${1:-}" = install ] && exit 0
cargo test --locked --features mpi --test ddp
