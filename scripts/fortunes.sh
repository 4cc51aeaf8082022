#!/usr/bin/env bash
# Trains the GPT example on Debian's full `fortunes` corpus (fortune-mod's data files, BSD
# licence: /usr/share/doc/fortunes/copyright; about 2.5 MB of text in 40 files) instead of the
# embedded fortunes-min sample, then generates from a prompt. Installs the package if it is
# missing. Not part of CI. Extra arguments go to the example, e.g.
#   scripts/fortunes.sh --epochs 2 --prompt "The " --top-k 20
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=/usr/share/games/fortunes
if [ ! -f "$DIR/computers" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fortunes
fi
cargo build --release --example gpt
./target/release/examples/gpt --data "$DIR" --root-dir target/gpt-fortunes --epochs 3 "$@"
