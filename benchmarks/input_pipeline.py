"""Input-pipeline overhead: training steps/s through dlcli's real tf.data pipeline against the
same batches pre-materialised in memory, for `cnn` on MNIST and `lstm` on IMDB.

Real: what `dlcli train` does each epoch: shuffle the example indices into the epoch's global
batches (`batches.epoch_batches`), build the distributed tf.data pipeline that gathers them
(`batches.distribute`), and run the steps in chunks. Pre-materialised: the same batches held as tensors, indexed inside the
tf.function with no tf.data at all. Both see inputs preprocessed once per run (lstm's
TextVectorization, `batches.preprocessed`); that one-off time is printed apart. Both run the same model, optimizer and replica step
(`steps.replica_steps`) in the same chunks, and read the loss after each chunk as the loop does.
Epochs of the two alternate; each side's figure is its median. The overhead is
1 - real / pre-materialised.

    python benchmarks/input_pipeline.py [--repeats 6] [--lstm-steps 40]
"""

import argparse
import statistics
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"


def measure(recipe, config, repeats):
    import tensorflow as tf

    from dlcli.core.lazy import keras
    from dlcli.training import batches
    from dlcli.training.steps import loss_and_metrics, make_optimizer, replica_steps, step_functions

    splits = recipe.load_data(config)
    started = time.perf_counter()
    splits = batches.preprocessed(splits)  # as `dlcli train` does, once per run
    once = time.perf_counter() - started
    strategy = tf.distribute.get_strategy()
    global_batch = config.batch_size
    steps = config.steps_per_epoch or len(splits.train[0]) // global_batch
    per_call = max(1, min(steps // 10, 100))  # the loop's own choice
    keras.utils.set_random_seed(config.seed)
    model = recipe.build_model(config, splits)
    optimizer = make_optimizer(recipe, config, total_steps=10 * steps)
    optimizer.build(model.trainable_variables)
    loss_fn, metrics = loss_and_metrics(recipe, config)
    train_step, _ = replica_steps(model, loss_fn, metrics, global_batch, optimizer)
    train_steps, _ = step_functions(strategy, model, loss_fn, metrics, global_batch, optimizer)

    index, weight = batches.epoch_batches(len(splits.train[0]), global_batch, steps, config.seed, 0)
    materialised = [tf.constant(a) for a in (*(x[index] for x in splits.train), weight)]
    examples = batches.host_tensors(splits.train)

    @tf.function
    def materialised_steps(xs, ys, ws, start, n):
        for i in tf.range(start, start + n):
            strategy.run(train_step, args=(xs[i], ys[i], ws[i]))

    def real_epoch(epoch):
        batched = batches.epoch_batches(len(splits.train[0]), global_batch, steps, config.seed, epoch)
        iterator = iter(batches.distribute(strategy, examples, batched))
        for start in range(0, steps, per_call):
            train_steps(iterator, tf.constant(min(per_call, steps - start)))
            float(metrics[0].result())

    def materialised_epoch(epoch):
        for start in range(0, steps, per_call):
            materialised_steps(*materialised, tf.constant(start), tf.constant(min(per_call, steps - start)))
            float(metrics[0].result())

    speeds = {"real": [], "pre-materialised": []}
    sides = [("real", real_epoch), ("pre-materialised", materialised_epoch)]
    for epoch in range(repeats + 1):
        for name, run in sides if epoch % 2 else sides[::-1]:  # ABBA: drifts in machine speed cancel
            started = time.perf_counter()
            run(epoch)
            if epoch > 0:  # the first epoch of each pays for tracing
                speeds[name].append(steps / (time.perf_counter() - started))
    return {name: statistics.median(s) for name, s in speeds.items()}, speeds, once


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=6)
    parser.add_argument("--lstm-steps", type=int, default=40, help="steps per lstm epoch (a full IMDB epoch takes minutes on a CPU)")
    options = parser.parse_args()
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found: the benchmark needs ../shared/data beside the checkout.")
    from recipes import cnn, lstm

    runs = [
        ("cnn, MNIST", cnn, cnn.Config(data=str(DATA / "mnist"))),
        ("lstm, IMDB", lstm, lstm.Config(data=str(DATA / "imdb"), steps_per_epoch=options.lstm_steps)),
    ]
    overheads = []
    for label, recipe, config in runs:
        median, speeds, once = measure(recipe, config, options.repeats)
        overhead = 1 - median["real"] / median["pre-materialised"]
        overheads.append(overhead)
        for name, values in speeds.items():
            print(f"{label}: {name:>16} {median[name]:7.2f} steps/s (epochs: {', '.join(f'{v:.2f}' for v in values)})", flush=True)
        print(f"{label}: input pipeline overhead {overhead:+.1%}", flush=True)
        if once:
            print(f"{label}: preprocessing once before training took {once:.1f} s", flush=True)
    print(f"ratio real / pre-materialised: worst overhead {max(overheads):+.1%} (target <= 3%)")


if __name__ == "__main__":
    main()
