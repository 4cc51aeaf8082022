#!/usr/bin/env bash
# Trains the MNIST example's MLP and CNN on full Fashion-MNIST (60,000 / 10,000 images) and
# prints their test accuracy and wall time. Not part of CI: the CNN takes about 35 s an
# epoch on one CPU thread, 12 minutes for its 20 epochs. Installs Debian's
# dataset-fashion-mnist if it is missing.
#   scripts/fashion-mnist.sh [MLP_EPOCHS] [CNN_EPOCHS]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=/usr/share/datasets/fashion-mnist
if [ ! -f "$DIR/train-images-idx3-ubyte.gz" ]; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist
fi
cargo build --release --example mnist
run() {
  local model=$1 epochs=$2 start end acc extra=()
  [ "$model" = cnn ] && extra=(--model.lr 1e-3 --model.hidden 256 --patience 6)
  start=$(date +%s)
  acc=$(./target/release/examples/mnist fit --data.data_dir "$DIR" --model.net "$model" --trainer.max_epochs "$epochs" "${extra[@]}" --trainer.default_root_dir "target/fashion-$model" \
        | tee "/tmp/fashion-$model.log" | awk '/^test accuracy/ {print $3}')
  end=$(date +%s)
  printf '| %s | %s | %s | %s s |\n' "$model" "$epochs" "$acc" "$((end - start))"
}
echo "| model | epochs | test accuracy | wall time |"
echo "| --- | --- | --- | --- |"
run mlp "${1:-10}"
run cnn "${2:-20}"
