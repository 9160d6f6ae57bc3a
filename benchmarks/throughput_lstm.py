"""Training throughput of `dlcli train lstm` against a keras-io-style script on IMDB.

Both sides train lstm's default model (Embedding 20000x128 with mask_zero > LSTM(128,
dropout=0.2) > Dense(1, sigmoid)) on real IMDB reviews (../shared/data/imdb), batch 64, Adam,
400 words per review, one process each, alternating `--repeats` times. The keras-io side is
`model.compile` + `model.fit` on padded integer arrays (the reviews vectorized up front, as
`imdb.load_data` + `pad_sequences` would give); dlcli reads raw text and runs its own loop.
Each epoch is cut to `--steps` steps (a full epoch takes minutes on a CPU); each side's
figure is its median examples/s over the epochs after the first (which pays for tracing).

    python benchmarks/throughput_lstm.py [--epochs 3] [--steps 40] [--repeats 2]
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.snippet import compare_throughput  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
IMDB = REPO.parent / "shared" / "data" / "imdb"

KERAS_IO = r"""
import json, sys, time
import numpy as np
import keras
from recipes import lstm

epochs, steps = int(sys.argv[1]), int(sys.argv[2])
config = lstm.Config(data=sys.argv[3])
splits = lstm.load_data(config)
texts, y = splits.train
x = np.asarray(splits.preprocess(texts[: steps * 64].astype(str)))  # padded integer sequences
y = y[: steps * 64]
model = lstm.build_model(config, splits)
model.compile(optimizer=keras.optimizers.Adam(config.learning_rate), loss="binary_crossentropy", metrics=["accuracy"])

class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        speeds.append(steps * 64 / (time.perf_counter() - self.start))

speeds = []
model.fit(x, y, batch_size=64, epochs=epochs, shuffle=True, verbose=0, callbacks=[Timer()])
print(json.dumps(speeds))
"""

DLCLI = r"""
import dlcli  # first, as the dlcli command: it sets TensorFlow's environment (oneDNN) before TensorFlow loads
import dataclasses, json, sys, tempfile
import tensorflow as tf
from dlcli.training import loop
from recipes import lstm

config = lstm.Config(data=sys.argv[3], epochs=int(sys.argv[1]), steps_per_epoch=int(sys.argv[2]), lr_schedule="constant")
splits = lstm.load_data(config)
# Only training is timed: keep the per-epoch validation and final test passes short.
splits = dataclasses.replace(splits, val=tuple(a[:64] for a in splits.val), test=tuple(a[:64] for a in splits.test))
with tempfile.TemporaryDirectory() as run_dir:
    loop.fit(lstm, config, splits, tf.distribute.get_strategy(), run_dir)
    history = open(run_dir + "/history.csv").read().splitlines()
column = history[0].split(",").index("examples_per_sec")
print(json.dumps([float(line.split(",")[column]) for line in history[1:]]))
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    options = parser.parse_args()
    if not IMDB.is_dir():
        raise SystemExit(f"{IMDB} not found: the benchmark needs ../shared/data/imdb beside the checkout.")
    compare_throughput({"keras-io fit": KERAS_IO, "dlcli": DLCLI}, (options.epochs, options.steps, IMDB), options.repeats)


if __name__ == "__main__":
    main()
