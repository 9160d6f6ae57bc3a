"""dlcli's cnn training throughput as a fraction of what this machine's matmul peak allows.

The cnn's training FLOPs per image are counted from its layer shapes (benchmarks/flops.py:
forward, weight gradient and input gradient of every convolution and dense layer; 14.8 MFLOP
for the default `source` architecture on 28x28 images). Each of `--repeats` fresh processes
per layout measures the float32 matmul peak (2048x2048 matmuls) with the layout's threads,
trains the cnn on MNIST (batch 128, `--epochs` x `--steps`, the first epoch not counted), and
measures the peak again; the limit is FLOP/s / FLOP-per-image, and the figure is dlcli's
examples/s over that limit. Medians over the processes; the layouts alternate.

How the step shares the cores (`--layouts`, comma-separated):
  default           what `dlcli train` does: on a multi-core CPU, one micro-batch per core and
                    each op on one thread (micro_batches=auto), against the peak of one matmul
                    chain per micro-batch at the same time
  whole-batch       dlcli's step before 2026-12-05 (micro_batches=1): the batch whole, every
                    op split over all cores by TensorFlow's default threads
  one-core          one intra-op and one inter-op thread, against one thread's matmul peak:
                    how close the kernels themselves come, with no cost of sharing an op
  replica-per-core  MirroredStrategy over one logical CPU per core, one intra-op thread each
                    (`--strategy mirrored --cpu-devices N` with TensorFlow's threads set so),
                    against the peak of one matmul chain per core at the same time
  process-per-core  not one training: one one-core process per core at the same time, each
                    pinned to its core, against the sum of their one-thread peaks. Nothing
                    is shared but the machine, so this is what the cores give the step when no
                    core waits on another: the ceiling of any layout of one training

    python benchmarks/limit.py [--repeats 3] [--epochs 3] [--steps 150] [--layouts default]
"""

import argparse
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.snippet import run_snippet, snippet_result, start_snippet  # noqa: E402
from dlcli.training import strategy as strategies  # noqa: E402  (TensorFlow loads lazily: not in this process)

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"

RUN = r"""
import dlcli  # first, as the dlcli command: it sets TensorFlow's environment (oneDNN) before TensorFlow loads
import dataclasses, json, statistics, sys, tempfile
import tensorflow as tf
from benchmarks import flops
from dlcli.training import loop
from dlcli.training import strategy as strategies
from recipes import cnn

layout, cores, epochs, steps = sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
config = cnn.Config(data=sys.argv[1], epochs=epochs, steps_per_epoch=steps, lr_schedule="constant")
devices, strategy = [None], tf.distribute.get_strategy()
if layout == "default":  # as `dlcli train` decides, before TensorFlow starts its runtime
    config = dataclasses.replace(config, micro_batches=strategies.micro_batches(config, cnn, "default"))
    devices = [None] * config.micro_batches  # one matmul chain per micro-batch, side by side
if layout in ("one-core", "replica-per-core"):
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1 if layout == "one-core" else cores)
if layout == "replica-per-core":
    strategies.split_cpu(cores)
    strategy = strategies.make_strategy("mirrored")[0]
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
splits = cnn.load_data(config)
splits = dataclasses.replace(splits, val=tuple(a[:128] for a in splits.val), test=tuple(a[:128] for a in splits.test))
before = flops.matmul_peak(devices=devices)
with tempfile.TemporaryDirectory() as run_dir:
    result = loop.fit(cnn, config, splits, strategy, run_dir)
after = flops.matmul_peak(devices=devices)
per_example, rows = flops.training_flops(result.model)
print(json.dumps({"speed": statistics.median(r["examples_per_sec"] for r in result.history[1:]),
                  "peak": (before + after) / 2, "peaks": [before, after], "flops": per_example, "rows": rows}))
"""


LAYOUTS = ("default", "whole-batch", "one-core", "replica-per-core", "process-per-core")


def layouts_of(text):
    """The --layouts list, checked: an unknown name ends the benchmark with one line."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in LAYOUTS]
    if unknown or not names:
        raise SystemExit(f"--layouts: unknown layout {', '.join(unknown) or repr(text)}; choose from {', '.join(LAYOUTS)}.")
    return names


def measure(layout, cores, epochs, steps):
    """One measurement of `layout`: the snippet's JSON, with its limit in examples/s."""
    if layout == "process-per-core":
        started = [start_snippet(RUN, MNIST, "one-core", 1, epochs, steps, cpu=cpu) for cpu in sorted(os.sched_getaffinity(0))]
        parts = [snippet_result(process) for process in started]
        run = {**parts[0], **{key: sum(part[key] for part in parts) for key in ("speed", "peak")}}
        run["peaks"] = [sum(part["peaks"][i] for part in parts) for i in (0, 1)]
    else:
        run = run_snippet(RUN, MNIST, layout, cores, epochs, steps)
    run["limit"] = run["peak"] / run["flops"]
    return run


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--layouts", default="default", help=f"comma-separated, of: {', '.join(LAYOUTS)}")
    options = parser.parse_args()
    layouts = layouts_of(options.layouts)
    if not MNIST.is_dir():
        raise SystemExit(f"{MNIST} not found: the benchmark needs ../shared/data/mnist beside the checkout.")
    cores = strategies.cpu_cores()  # as `dlcli train` counts them
    processes = options.repeats * len(layouts)
    print(f"{processes} processes of {options.epochs} x {options.steps} steps ({', '.join(layouts)}; {cores} cores); about "
          f"{processes * (25 + options.epochs * options.steps * 128 / 4000):.0f} s on a quiet 2-core machine", flush=True)
    runs = {layout: [] for layout in layouts}
    for repeat in range(options.repeats):
        for layout in layouts:
            run = measure(layout, cores, options.epochs, options.steps)
            runs[layout].append(run)
            print(f"run {repeat + 1} {layout}: peak {run['peaks'][0] / 1e9:.0f} / {run['peaks'][1] / 1e9:.0f} GFLOP/s (before / after), "
                  f"limit {run['limit']:.0f} examples/s, dlcli {run['speed']:.0f} examples/s = {run['speed'] / run['limit']:.0%}", flush=True)
    first = runs[layouts[0]][0]
    print("training FLOPs per image, by layer (forward MACs; forward + gradients):")
    for name, macs, total in first["rows"]:
        print(f"  {name:>10}: {macs / 1e6:6.3f} M MACs -> {total / 1e6:6.2f} MFLOP")
    print("\n== summary (medians of %d processes per layout) ==" % options.repeats)
    print(f"cnn training cost: {first['flops'] / 1e6:.2f} MFLOP per image (convolutions and dense layers)")
    for layout, done in runs.items():
        peak, speed, limit = (statistics.median(r[k] for r in done) for k in ("peak", "speed", "limit"))
        fraction = statistics.median(r["speed"] / r["limit"] for r in done)
        label = "" if layouts == ["default"] else f" [{layout}]"
        print(f"float32 matmul peak{label}: {peak / 1e9:.0f} GFLOP/s -> limit {limit:.0f} examples/s")
        print(f"dlcli cnn{label}: {speed:.0f} examples/s = {fraction:.0%} of the limit (target >= 60%)")


if __name__ == "__main__":
    main()
