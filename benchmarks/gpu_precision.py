"""On a GPU: training examples/s of `cnn` (MNIST) and `lstm` (IMDB, cuDNN kernel) in float32,
mixed precision, XLA, and both; and the cnn's MNIST time to 0.992 test accuracy.

Each configuration is one `loop.fit` run in its own process, with the recipe's defaults
otherwise; its figure is the median examples/s over the epochs after the first (which pays
for tracing and XLA compilation). On a machine without a GPU it says so and exits 0.

    python benchmarks/gpu_precision.py [--epochs 4] [--lstm-steps 200]
"""

import argparse
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.snippet import run_snippet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"

RUN = r"""
import dlcli  # first, as the dlcli command: it sets TensorFlow's environment (oneDNN) before TensorFlow loads
import dataclasses, itertools, json, sys, tempfile
import tensorflow as tf
from dlcli.training import loop
from dlcli.training import registry

name, data, overrides = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
recipe = registry.load(name)
config = recipe.Config(data=data, **overrides)
splits = recipe.load_data(config)
splits = dataclasses.replace(splits, val=splits.test)  # per-epoch figures on the test set
with tempfile.TemporaryDirectory() as run_dir:
    loop.fit(recipe, config, splits, tf.distribute.get_strategy(), run_dir)
    lines = open(run_dir + "/history.csv").read().splitlines()
rows = [dict(zip(lines[0].split(","), line.split(","))) for line in lines[1:]]
seconds = list(itertools.accumulate(float(r["seconds"]) for r in rows))
print(json.dumps({"speeds": [float(r["examples_per_sec"]) for r in rows],
                  "accuracy": [float(r["val_accuracy"]) for r in rows], "seconds": seconds,
                  "device": " ".join(tf.config.experimental.get_device_details(gpu).get("device_name", "GPU") for gpu in tf.config.list_physical_devices("GPU")) or "CPU"}))
"""

SETTINGS = {
    "float32": {},
    "mixed precision": {"precision": "mixed_float16"},
    "XLA": {"jit": True},
    "mixed precision + XLA": {"precision": "mixed_float16", "jit": True},
}


def run(recipe, data, overrides):
    return run_snippet(RUN, recipe, data, json.dumps(overrides))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--lstm-steps", type=int, default=200)
    options = parser.parse_args()
    import tensorflow as tf

    if not tf.config.list_physical_devices("GPU"):
        print("skipped: no GPU visible to TensorFlow (this benchmark measures GPU precision and XLA settings)")
        return
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found: the benchmark needs ../shared/data beside the checkout.")
    ratios = {}
    for recipe, data, extra in (
        ("cnn", DATA / "mnist", {"epochs": options.epochs}),
        ("lstm", DATA / "imdb", {"epochs": options.epochs, "steps_per_epoch": options.lstm_steps}),
    ):
        speeds = {}
        for label, overrides in SETTINGS.items():
            if recipe == "lstm" and overrides.get("jit"):
                continue  # XLA cannot compile the cuDNN kernel; the loop would train without it
            result = run(recipe, data, {**extra, **overrides})
            speeds[label] = statistics.median(result["speeds"][1:])
            print(f"{recipe:>4} {label:>22}: {speeds[label]:9.0f} examples/s on {result['device']}", flush=True)
        fastest = "mixed precision + XLA" if recipe == "cnn" else "mixed precision"
        ratios[recipe] = speeds[fastest] / speeds["float32"]
        print(f"{recipe:>4}: {fastest} / float32 = {ratios[recipe]:.2f}x", flush=True)

    result = run("cnn", DATA / "mnist", {})  # the defaults, as `dlcli train cnn` runs them
    reached = next((s for s, a in zip(result["seconds"], result["accuracy"]) if a >= 0.992), None)
    curve = " ".join(f"{a:.4f}" for a in result["accuracy"])
    print(f"cnn defaults, float32: MNIST test accuracy by epoch {curve}; 0.992 after "
          + (f"{reached:.1f} s of training" if reached else "never"))
    print(f"ratio cnn mixed precision + XLA / float32: {ratios['cnn']:.2f}x (target >= 1.5x)")


if __name__ == "__main__":
    main()
