#!/usr/bin/env python3
"""Reads candle-lightning's TensorBoard event files with TensorBoard's own EventAccumulator and
prints every scalar series and the hyperparameters. Not part of CI (it needs `tensorboard`).

    python3 -m venv /tmp/tb && /tmp/tb/bin/pip install tensorboard
    cargo run --release --example mnist -- fit --tensorboard
    /tmp/tb/bin/python scripts/tensorboard-check.py target/mnist-example/lightning_logs/version_0
"""
import sys

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.plugins.hparams import plugin_data_pb2


def main(run_dir: str) -> int:
    acc = EventAccumulator(run_dir)
    acc.Reload()
    tags = acc.Tags()
    scalars = tags.get("scalars", [])
    if not scalars:
        print(f"no scalars in {run_dir}")
        return 1
    for tag in sorted(scalars):
        events = acc.Scalars(tag)
        print(f"{tag}: {len(events)} values, steps {events[0].step}..{events[-1].step}, last {events[-1].value:.6g}")
    content = acc.PluginTagToContent("hparams")
    for tag, raw in sorted(content.items()):
        data = plugin_data_pb2.HParamsPluginData.FromString(raw)
        if data.HasField("session_start_info"):
            hp = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind")) for k, v in data.session_start_info.hparams.items()}
            print(f"{tag}: {hp}")
        else:
            print(f"{tag}: {data.WhichOneof('data')}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "."))
