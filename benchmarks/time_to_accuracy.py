"""Training seconds until MNIST test accuracy first reaches 0.992: `dlcli train cnn` with its
default settings against the keras-io mnist_convnet recipe, on the same machine and data.

keras-io side: the recipe as published (Conv32 > Pool > Conv64 > Pool > Flatten > Dropout 0.5 >
Dense10 softmax, Adam 1e-3, batch 128, 15 epochs, validation_split 0.1), stopped once it gets
there. dlcli side: `cnn.Config()` defaults (5 epochs, cosine schedule, batch 128), evaluated on
the test set instead of its validation tail. Both train on the same 54,000 images; both are
measured after each epoch on the 10,000 test images, and only training time counts (the clock
stops for evaluation on both sides). Alternates the two `--repeats` times; reports medians.

    python benchmarks/time_to_accuracy.py [--repeats 3] [--target 0.992]
"""

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.snippet import run_snippet  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"

KERAS_IO = r"""
import json, sys, time
import numpy as np
import keras
from keras import layers
from dlcli import data
from recipes import cnn

target = float(sys.argv[2])
splits = data.load_images(cnn.Config(data=sys.argv[1], validation_split=0))
(x_train, y_train), (x_test, y_test) = splits.train, splits.test
x_train, x_test = x_train.astype("float32") / 255, x_test.astype("float32") / 255
y_train = keras.utils.to_categorical(y_train, 10)

model = keras.Sequential([
    keras.Input(shape=(28, 28, 1)),
    layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
    layers.MaxPooling2D(pool_size=(2, 2)),
    layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
    layers.MaxPooling2D(pool_size=(2, 2)),
    layers.Flatten(),
    layers.Dropout(0.5),
    layers.Dense(10, activation="softmax"),
])
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])

class TestAccuracy(keras.callbacks.Callback):
    seconds = 0.0
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_train_batch_end(self, batch, logs=None):
        self.last = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        self.seconds += self.last - self.start
        accuracy = float(np.mean(model.predict(x_test, batch_size=1000, verbose=0).argmax(-1) == y_test.ravel()))
        epochs.append({"epoch": epoch + 1, "seconds": self.seconds, "accuracy": accuracy})
        self.model.stop_training = accuracy >= target

epochs = []
model.fit(x_train, y_train, batch_size=128, epochs=15, validation_split=0.1, verbose=0, callbacks=[TestAccuracy()])
print(json.dumps(epochs))
"""

DLCLI = r"""
import dataclasses, itertools, json, sys, tempfile
import tensorflow as tf
from dlcli.training import loop
from dlcli.training import strategy
from recipes import cnn

config = cnn.Config(data=sys.argv[1])
config = dataclasses.replace(config, micro_batches=strategy.micro_batches(config, cnn, "default"))  # as `dlcli train`: before TensorFlow starts
splits = cnn.load_data(config)
splits = dataclasses.replace(splits, val=splits.test)  # the per-epoch evaluation is on the test set
with tempfile.TemporaryDirectory() as run_dir:
    loop.fit(cnn, config, splits, tf.distribute.get_strategy(), run_dir)
    history = open(run_dir + "/history.csv").read().splitlines()
header = history[0].split(",")
rows = [dict(zip(header, line.split(","))) for line in history[1:]]
seconds = itertools.accumulate(float(row["seconds"]) for row in rows)
print(json.dumps([{"epoch": int(r["epoch"]), "seconds": s, "accuracy": float(r["val_accuracy"])} for r, s in zip(rows, seconds)]))
"""


def run(code, target):
    return run_snippet(code, MNIST, target)


def time_to(epochs, target):
    """(seconds, epoch) when the accuracy first reached `target`, else (None, epochs run)."""
    for row in epochs:
        if row["accuracy"] >= target:
            return row["seconds"], row["epoch"]
    return None, len(epochs)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--target", type=float, default=0.992)
    options = parser.parse_args()
    if not MNIST.is_dir():
        raise SystemExit(f"{MNIST} not found: the benchmark needs ../shared/data/mnist beside the checkout.")
    times = {"keras-io": [], "dlcli": []}
    trained = {"keras-io": [], "dlcli": []}  # all the training seconds of each run
    for repeat in range(options.repeats):
        for name, code in (("keras-io", KERAS_IO), ("dlcli", DLCLI)):
            epochs = run(code, options.target)
            seconds, epoch = time_to(epochs, options.target)
            curve = " ".join(f"{row['accuracy']:.4f}" for row in epochs)
            if seconds is None:
                print(f"repeat {repeat + 1} {name:>8}: never reached {options.target} in {epoch} epochs "
                      f"({epochs[-1]['seconds']:.0f} s); test accuracy by epoch: {curve}", flush=True)
                seconds = float("inf")
            else:
                print(f"repeat {repeat + 1} {name:>8}: {seconds:6.1f} s (epoch {epoch}); test accuracy by epoch: {curve}", flush=True)
            times[name].append(seconds)
            trained[name].append(epochs[-1]["seconds"])
    # A run that never reached the target took longer than all its training: its time counts
    # as that total, which makes a median of such figures a lower bound.
    bounds = {k: [t if t != float("inf") else total for t, total in zip(times[k], trained[k])] for k in times}
    keras_io, dlcli = (statistics.median(bounds[k]) for k in ("keras-io", "dlcli"))
    missed = {k: sum(t == float("inf") for t in times[k]) for k in times}
    if missed["dlcli"]:
        print(f"dlcli missed {options.target} in {missed['dlcli']} of {options.repeats} runs")
    at_least = "at least " if missed["keras-io"] else ""
    print(f"median training seconds to test accuracy {options.target}: keras-io {at_least}{keras_io:.1f} "
          f"(reached in {options.repeats - missed['keras-io']} of {options.repeats} runs within its 15 epochs), dlcli {dlcli:.1f}")
    print(f"ratio dlcli / keras-io: {'at most ' if at_least else ''}{dlcli / keras_io:.2f}x (target <= 0.33x)")


if __name__ == "__main__":
    main()
