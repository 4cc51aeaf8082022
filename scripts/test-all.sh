#!/usr/bin/env bash
# Every test: unit, integration, doc, compile-fail (ui-tests/) and the data-parallel tests
# under mpirun. Installs OpenMPI and libclang by apt first when they are missing
# (scripts/setup-mpi.sh; root, Debian). This is the README's test command; .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-mpi.sh install
cargo test --workspace --locked --features mpi "$@"
