"""Where the gradient all-reduce starts to dominate a data-parallel step, per recipe.

For each recipe's default model: its parameter count, the bytes a step all-reduces (float32
gradients), and a ring all-reduce's time at 8, 64 and 256 workers on 10, 25 and 100 Gb/s links:
    2 (N - 1) / N x bytes / bandwidth  +  2 (N - 1) x latency   (latency: `--latency-us`, 50 us)
next to the compute time of one training step at the recipe's default batch per worker,
measured here (a compiled train step on random inputs of the right shape, median of
`--steps` steps, TensorFlow's default threads). A cell is marked `*` where the all-reduce takes
longer than that compute: there, without overlapping the two, adding workers stops paying.

    python benchmarks/allreduce_table.py [--steps 5] [--latency-us 50]
"""

import argparse
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
WORKERS = (8, 64, 256)
GBITS = (10, 25, 100)


def ring_seconds(size_bytes, workers, gbits, latency):
    """A ring all-reduce's time: each worker sends and receives 2(N-1)/N of the data, in 2(N-1) hops."""
    return 2 * (workers - 1) / workers * size_bytes * 8 / (gbits * 1e9) + 2 * (workers - 1) * latency


def recipe_model(name):
    """(model, config, splits-like) for a recipe's defaults, without reading data when the input
    shape follows from the config (speech's clip length comes from FSDD's clips)."""
    import numpy as np

    from dlcli.training import registry

    recipe = registry.load(name)
    if name == "speech":
        config = recipe.Config(data=DATA / "fsdd")
        splits = recipe.load_data(config)
    else:
        config = recipe.Config()
        shape = (28, 28, 1) if name == "cnn" else (config.sequence_length,)
        splits = SimpleNamespace(input_shape=shape, num_classes=10 if name == "cnn" else 2)
    inputs = (np.random.default_rng(0).integers(0, 255, (config.batch_size, *splits.input_shape)).astype(np.uint8) if name == "cnn"
              else np.random.default_rng(0).integers(1, config.vocab_size, (config.batch_size, *splits.input_shape)) if name in ("lstm", "transformer")
              else np.random.default_rng(0).normal(0, 0.1, (config.batch_size, *splits.input_shape)).astype(np.float32))
    labels = np.random.default_rng(1).integers(0, splits.num_classes, config.batch_size)
    return recipe, recipe.build_model(config, splits), config, inputs, labels


def step_seconds(recipe, model, config, inputs, labels, steps):
    """Median seconds of one compiled training step (forward, gradients, Adam) on `inputs`."""
    from dlcli.core.lazy import tf
    from dlcli.training.steps import make_optimizer

    optimizer = make_optimizer(recipe, config, 1000)
    loss_fn = recipe.loss(config)
    if labels.max() < 2 and model.output.shape[-1] == 1:
        labels = labels.astype("float32")

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(loss_fn(y, model(x, training=True)))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    x, y = tf.constant(inputs), tf.constant(labels)
    step(x, y)  # trace
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        step(x, y)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipes", default="cnn,lstm,speech,transformer")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--latency-us", type=float, default=50)
    options = parser.parse_args()
    latency = options.latency_us * 1e-6
    header = "| recipe | parameters | MB per step | compute per step here (batch) | " + " | ".join(
        f"{n} workers, {g} Gb/s" for n in WORKERS for g in GBITS) + " |"
    lines = [header, "|" + "---|" * (4 + len(WORKERS) * len(GBITS))]
    for name in options.recipes.split(","):
        recipe, model, config, inputs, labels = recipe_model(name)
        parameters = model.count_params()
        size = 4 * sum(int(v.shape.num_elements()) for v in model.trainable_variables)
        compute = step_seconds(recipe, model, config, inputs, labels, options.steps)
        cells = []
        for n in WORKERS:
            for g in GBITS:
                t = ring_seconds(size, n, g, latency)
                cells.append(f"{t * 1e3:.1f} ms{' *' if t > compute else ''}")
        lines.append(f"| {name} | {parameters:,} | {size / 1e6:.2f} | {compute * 1e3:.0f} ms ({config.batch_size}) | " + " | ".join(cells) + " |")
        print(f"{name}: {parameters:,} parameters, compute {compute * 1e3:.0f} ms per step", flush=True)
    print(f"\n== summary: ring all-reduce time per step (latency {options.latency_us:.0f} us per hop; * = longer than the step's compute here) ==")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
