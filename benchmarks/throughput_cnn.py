"""Training throughput of `dlcli train cnn` against a keras-io-style script, same model and data.

Both sides train the recipe's default architecture on real MNIST (../shared/data/mnist) with
global batch 128 and Adam, one process each, alternating `--repeats` times; each side's figure
is its median examples/s over the epochs after the first (which pays for tracing). The
keras-io side is `model.compile` + `model.fit` on numpy arrays, as in keras-io mnist_convnet.

    python benchmarks/throughput_cnn.py [--epochs 3] [--repeats 3]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.snippet import compare_throughput  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"

KERAS_IO = r"""
import json, sys, time
import numpy as np
import keras
from dlcli import data
from recipes import cnn

epochs = int(sys.argv[1])
config = cnn.Config(data=sys.argv[2], epochs=epochs, dropout=0.25)
splits = data.load_images(config)
model = cnn.build_model(config, splits)
model.compile(optimizer=keras.optimizers.Adam(config.learning_rate),
              loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])

class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        speeds.append(len(splits.train[0]) // 128 * 128 / (time.perf_counter() - self.start))

speeds = []
x, y = splits.train
model.fit(x, y, batch_size=128, epochs=epochs, shuffle=True, verbose=0, callbacks=[Timer()])
print(json.dumps(speeds))
"""

DLCLI = r"""
import dlcli  # first, as the dlcli command: it sets TensorFlow's environment (oneDNN) before TensorFlow loads
import dataclasses, json, sys, tempfile
import tensorflow as tf
from dlcli.training import loop
from dlcli.training import strategy
from recipes import cnn

config = cnn.Config(data=sys.argv[2], epochs=int(sys.argv[1]), lr_schedule="constant")
config = dataclasses.replace(config, micro_batches=strategy.micro_batches(config, cnn, "default"))  # as `dlcli train`: before TensorFlow starts
splits = cnn.load_data(config)
with tempfile.TemporaryDirectory() as run_dir:
    loop.fit(cnn, config, splits, tf.distribute.get_strategy(), run_dir)
    history = open(run_dir + "/history.csv").read().splitlines()
column = history[0].split(",").index("examples_per_sec")
print(json.dumps([float(line.split(",")[column]) for line in history[1:]]))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    if not MNIST.is_dir():
        raise SystemExit(f"{MNIST} not found: the benchmark needs ../shared/data/mnist beside the checkout.")
    compare_throughput({"keras-io fit": KERAS_IO, "dlcli": DLCLI}, (options.epochs, MNIST), options.repeats)


if __name__ == "__main__":
    main()
