"""dlcli's cnn training throughput as a fraction of what this machine's matmul peak allows.

The cnn's training FLOPs per image are counted from its layer shapes (benchmarks/flops.py:
forward, weight gradient and input gradient of every convolution and dense layer; 14.8 MFLOP
for the default `source` architecture on 28x28 images). Each of `--repeats` fresh processes
measures the float32 matmul peak (2048x2048 matmuls, TensorFlow's default threads), trains
the cnn on MNIST (batch 128, `--epochs` x `--steps`, the first epoch not counted), and
measures the peak again; the limit is FLOP/s / FLOP-per-image, and the figure is dlcli's
examples/s over that limit. Medians over the processes.

    python benchmarks/limit.py [--repeats 3] [--epochs 3] [--steps 150]
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.snippet import run_snippet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"

RUN = r"""
import dlcli  # first, as the dlcli command: it sets TensorFlow's environment (oneDNN) before TensorFlow loads
import dataclasses, json, statistics, sys, tempfile
import tensorflow as tf
from benchmarks import flops
from dlcli import loop
from recipes import cnn

epochs, steps = int(sys.argv[2]), int(sys.argv[3])
config = cnn.Config(data=sys.argv[1], epochs=epochs, steps_per_epoch=steps, lr_schedule="constant")
splits = cnn.load_data(config)
splits = dataclasses.replace(splits, val=tuple(a[:128] for a in splits.val), test=tuple(a[:128] for a in splits.test))
before = flops.matmul_peak()
with tempfile.TemporaryDirectory() as run_dir:
    result = loop.fit(cnn, config, splits, tf.distribute.get_strategy(), run_dir)
after = flops.matmul_peak()
per_example, rows = flops.training_flops(result.model)
print(json.dumps({"speed": statistics.median(r["examples_per_sec"] for r in result.history[1:]),
                  "peak": (before + after) / 2, "peaks": [before, after], "flops": per_example, "rows": rows}))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    options = parser.parse_args()
    if not MNIST.is_dir():
        raise SystemExit(f"{MNIST} not found: the benchmark needs ../shared/data/mnist beside the checkout.")
    print(f"{options.repeats} processes of {options.epochs} x {options.steps} steps; about "
          f"{options.repeats * (25 + options.epochs * options.steps * 128 / 4000):.0f} s on a quiet 2-core machine", flush=True)
    runs = []
    for repeat in range(options.repeats):
        run = run_snippet(RUN, MNIST, options.epochs, options.steps)
        run["limit"] = run["peak"] / run["flops"]
        runs.append(run)
        print(f"run {repeat + 1}: peak {run['peaks'][0] / 1e9:.0f} / {run['peaks'][1] / 1e9:.0f} GFLOP/s (before / after), "
              f"limit {run['limit']:.0f} examples/s, dlcli {run['speed']:.0f} examples/s = {run['speed'] / run['limit']:.0%}", flush=True)
    print("training FLOPs per image, by layer (forward MACs; forward + gradients):")
    for name, macs, total in runs[0]["rows"]:
        print(f"  {name:>10}: {macs / 1e6:6.3f} M MACs -> {total / 1e6:6.2f} MFLOP")
    peak, speed, limit = (statistics.median(r[k] for r in runs) for k in ("peak", "speed", "limit"))
    fraction = statistics.median(r["speed"] / r["limit"] for r in runs)
    print("\n== summary (medians of %d processes) ==" % options.repeats)
    print(f"cnn training cost: {runs[0]['flops'] / 1e6:.2f} MFLOP per image (convolutions and dense layers)")
    print(f"float32 matmul peak: {peak / 1e9:.0f} GFLOP/s -> limit {limit:.0f} examples/s")
    print(f"dlcli cnn: {speed:.0f} examples/s = {fraction:.0%} of the limit (target >= 60%)")


if __name__ == "__main__":
    main()
