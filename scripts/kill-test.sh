#!/usr/bin/env bash
# Kills training at random moments of its save sequence (top-k replacement, `last.ckpt`,
# deletion of the replaced best) ROUNDS times (default 100) and checks after each kill that
# every checkpoint left loads, that the best `last.ckpt` records is there, and that the next
# run leaves no temporary directory. CI runs the same test with 20 rounds.
#   scripts/kill-test.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
LIGHTNING_KILL_ROUNDS="${1:-100}" cargo test --test interrupted_saves whole_save_sequence_survives_sigkill -- --exact --nocapture
