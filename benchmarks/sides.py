"""The contestants of the issue-18 benchmarks, each a snippet run in a fresh process
(benchmarks/snippet.py) that trains `epochs` x `steps` steps and prints, as its last line,
JSON with its examples/s per epoch ("speeds"; the first epoch pays for tracing and is not
counted). All read the same data through the recipe's own `load_data`, so every side trains
on the same examples; only the training is timed.

Arguments of every snippet: recipe name, data path, epochs, steps, JSON config overrides.
"""

import json
import statistics
import time

from benchmarks.snippet import run_snippet

# dlcli's own loop, as `dlcli train` runs it (constant learning rate; validation and test cut
# to `test_examples` so that only training is timed, unless a figure needs the whole test set).
DLCLI = r"""
import dlcli  # first, as the dlcli command: it sets TensorFlow's environment (oneDNN) before TensorFlow loads
import dataclasses, json, sys, tempfile
import keras, numpy as np, tensorflow as tf
from dlcli.training import loop
from dlcli.training import registry

name, data, epochs, steps, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
test_examples = overrides.pop("test_examples", 64)
recipe = registry.load(name)
config = recipe.Config(data=data, epochs=epochs, steps_per_epoch=steps, lr_schedule="constant", **overrides)
from dlcli.training import strategy
config = dataclasses.replace(config, micro_batches=strategy.micro_batches(config, recipe, "default"))  # as `dlcli train`: before TensorFlow starts
keras.mixed_precision.set_global_policy(strategy.resolve_precision(config, recipe, tf.distribute.get_strategy())[0])  # as `dlcli train` does
splits = recipe.load_data(config)
# Evenly spaced examples: a test split may be sorted by class (IMDB's is), so its head is not a sample.
picked = np.linspace(0, len(splits.test[1]) - 1, min(test_examples, len(splits.test[1]))).astype(int) if test_examples else None
cut = (lambda a: a[picked]) if test_examples else (lambda a: a)
splits = dataclasses.replace(splits, val=tuple(a[:64] for a in splits.val), test=tuple(cut(a) for a in splits.test))  # val: timing only
with tempfile.TemporaryDirectory() as run_dir:
    result = loop.fit(recipe, config, splits, tf.distribute.get_strategy(), run_dir)
print(json.dumps({"speeds": [row["examples_per_sec"] for row in result.history], "test": result.metrics["test"]}))
"""

# Keras `fit` with the tf.data pipeline the TensorFlow guides recommend, on the recipe's model,
# loss, metrics and optimizer: the fair Keras peer (not only `fit` on numpy arrays).
KERAS_TFDATA = r"""
import os
os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)  # TensorFlow's own default, whatever a parent process set
import json, sys, time
import keras, tensorflow as tf
from dlcli.training import loop
from dlcli.training import registry

name, data, epochs, steps, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
recipe = registry.load(name)
config = recipe.Config(data=data, epochs=epochs, steps_per_epoch=steps, lr_schedule="constant", **overrides)
splits = batches.preprocessed(recipe.load_data(config))  # lstm/transformer: reviews vectorized once, as dlcli does
x, y = splits.train
from dlcli.training import strategy
keras.mixed_precision.set_global_policy(strategy.resolve_precision(config, recipe, tf.distribute.get_strategy())[0])  # dlcli's precision
keras.utils.set_random_seed(config.seed)
model = recipe.build_model(config, splits)
per_example = recipe.loss(config)
model.compile(optimizer=steps.make_optimizer(recipe, config, epochs * steps),
              loss=lambda t, p: per_example(t, p), metrics=recipe.metrics(config))
dataset = (tf.data.Dataset.from_tensor_slices((x, y)).cache().shuffle(len(x), seed=config.seed).repeat()
           .batch(config.batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE))

class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        speeds.append(steps * config.batch_size / (time.perf_counter() - self.start))

speeds = []
model.fit(dataset, epochs=epochs, steps_per_epoch=steps, verbose=0, callbacks=[Timer()])
print(json.dumps({"speeds": speeds}))
"""

# The same Keras peer with TensorFlow's oneDNN kernels forced on, as dlcli sets them: on CPUs
# where TensorFlow leaves them off (AVX2-only), this separates dlcli's loop from that setting.
KERAS_TFDATA_ONEDNN = KERAS_TFDATA.replace('os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)', 'os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"')
assert KERAS_TFDATA_ONEDNN != KERAS_TFDATA

# An idiomatic PyTorch CPU eager loop with the cnn's `source` model, batch, optimizer and loss.
# Batches are sliced from tensors held in memory (faster than a DataLoader's per-example
# collation on MNIST): the strongest plain-PyTorch opponent.
TORCH_CNN = r"""
import json, sys, time
import numpy as np, torch
from torch import nn
from recipes import cnn

name, data, epochs, steps, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
config = cnn.Config(data=data, **overrides)
x, y = cnn.load_data(config).train
x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()  # uint8 NCHW
y = torch.from_numpy(y.astype(np.int64))
torch.manual_seed(config.seed)
model = nn.Sequential(
    nn.Conv2d(1, 32, 3), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
    nn.Flatten(), nn.Linear(1600, 64), nn.ReLU(), nn.Dropout(config.dropout), nn.Linear(64, 10),
)
optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
loss_fn = nn.CrossEntropyLoss()
batch, speeds, correct = config.batch_size, [], 0
model.train()
for epoch in range(epochs):
    order = torch.randperm(len(x))
    start = time.perf_counter()
    for step in range(steps):
        index = order[(step * batch) % (len(x) - batch):][:batch]
        xb, yb = x[index].float().div_(255), y[index]
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=config.precision == "mixed_bfloat16"):  # PyTorch's mixed bf16
            logits = model(xb)
            loss = loss_fn(logits.float(), yb)
        loss.backward()
        optimizer.step()
        correct += (logits.argmax(1) == yb).sum()  # a running accuracy, as the other sides keep
    speeds.append(steps * batch / (time.perf_counter() - start))
print(json.dumps({"speeds": speeds, "threads": torch.get_num_threads()}))
"""

# PyTorch nn.LSTM with the lstm recipe's model: Embedding(20000, 128) > dropout 0.2 > LSTM(128)
# over packed (unpadded) sequences, as Keras' mask_zero does > Linear(1) with a sigmoid loss.
TORCH_LSTM = r"""
import json, sys, time
import numpy as np, torch
from torch import nn
from dlcli.training import loop
from recipes import lstm

name, data, epochs, steps, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
config = lstm.Config(data=data, **overrides)
x, y = batches.preprocessed(lstm.load_data(config)).train
x, y = torch.from_numpy(x.astype(np.int64)), torch.from_numpy(y.astype(np.float32).reshape(-1))
torch.manual_seed(config.seed)

class Sentiment(nn.Module):
    def __init__(self):
        super().__init__()
        self.embedding = nn.Embedding(config.vocab_size, config.embedding_dim, padding_idx=0)
        self.dropout = nn.Dropout(config.dropout)
        self.lstm = nn.LSTM(config.embedding_dim, config.units, batch_first=True)
        self.out = nn.Linear(config.units, 1)

    def forward(self, tokens):
        lengths = (tokens != 0).sum(1).clamp(min=1)
        packed = nn.utils.rnn.pack_padded_sequence(self.dropout(self.embedding(tokens)), lengths, batch_first=True, enforce_sorted=False)
        _, (h, _) = self.lstm(packed)
        return self.out(h[-1]).squeeze(1)

model = Sentiment()
optimizer = torch.optim.Adam(model.parameters(), lr=config.learning_rate)
loss_fn = nn.BCEWithLogitsLoss()
batch, speeds, correct = config.batch_size, [], 0
model.train()
for epoch in range(epochs):
    order = torch.randperm(len(x))
    start = time.perf_counter()
    for step in range(steps):
        index = order[(step * batch) % (len(x) - batch):][:batch]
        optimizer.zero_grad(set_to_none=True)
        logits = model(x[index])
        loss = loss_fn(logits, y[index])
        loss.backward()
        optimizer.step()
        correct += ((logits > 0) == (y[index] > 0.5)).sum()
    speeds.append(steps * batch / (time.perf_counter() - start))
print(json.dumps({"speeds": speeds, "threads": torch.get_num_threads()}))
"""

# keras-io's text_classification_with_transformer as published (its own blocks, 200 words,
# embed 32, 2 heads, ff 32, batch 32, `fit` on integer arrays), on the same vectorized reviews.
KERAS_IO_TRANSFORMER = r"""
import os
os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)  # TensorFlow's own default, as the example runs
import json, sys, time
import keras
from keras import layers, ops
from dlcli.training import loop
from recipes import transformer
from dlcli.training import batches
from dlcli.training import steps

name, data, epochs, steps, overrides = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), json.loads(sys.argv[5])
maxlen, vocab_size, embed_dim, num_heads, ff_dim, batch = 200, 20000, 32, 2, 32, 32
x, y = batches.preprocessed(transformer.load_data(transformer.Config(data=data, sequence_length=maxlen))).train
x, y = x[: steps * batch], y[: steps * batch]

class TransformerBlock(layers.Layer):
    def __init__(self, embed_dim, num_heads, ff_dim, rate=0.1):
        super().__init__()
        self.att = layers.MultiHeadAttention(num_heads=num_heads, key_dim=embed_dim)
        self.ffn = keras.Sequential([layers.Dense(ff_dim, activation="relu"), layers.Dense(embed_dim)])
        self.layernorm1 = layers.LayerNormalization(epsilon=1e-6)
        self.layernorm2 = layers.LayerNormalization(epsilon=1e-6)
        self.dropout1 = layers.Dropout(rate)
        self.dropout2 = layers.Dropout(rate)

    def call(self, inputs, training=False):
        attn_output = self.dropout1(self.att(inputs, inputs), training=training)
        out1 = self.layernorm1(inputs + attn_output)
        ffn_output = self.dropout2(self.ffn(out1), training=training)
        return self.layernorm2(out1 + ffn_output)

class TokenAndPositionEmbedding(layers.Layer):
    def __init__(self, maxlen, vocab_size, embed_dim):
        super().__init__()
        self.token_emb = layers.Embedding(input_dim=vocab_size, output_dim=embed_dim)
        self.pos_emb = layers.Embedding(input_dim=maxlen, output_dim=embed_dim)

    def call(self, x):
        positions = self.pos_emb(ops.arange(start=0, stop=ops.shape(x)[-1], step=1))
        return self.token_emb(x) + positions

inputs = layers.Input(shape=(maxlen,))
h = TransformerBlock(embed_dim, num_heads, ff_dim)(TokenAndPositionEmbedding(maxlen, vocab_size, embed_dim)(inputs))
h = layers.Dropout(0.1)(layers.GlobalAveragePooling1D()(h))
h = layers.Dropout(0.1)(layers.Dense(20, activation="relu")(h))
model = keras.Model(inputs=inputs, outputs=layers.Dense(2, activation="softmax")(h))
model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])

class Timer(keras.callbacks.Callback):
    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
    def on_epoch_end(self, epoch, logs=None):
        speeds.append(steps * batch / (time.perf_counter() - self.start))

speeds = []
model.fit(x, y, batch_size=batch, epochs=epochs, verbose=0, callbacks=[Timer()])
print(json.dumps({"speeds": speeds}))
"""


def torch_missing():
    """Why the PyTorch sides cannot run here, or None when they can."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return "PyTorch is not installed (pip install -e '.[bench]')"
    return None


def alternate(sides, args, repeats, log=print):
    """Runs each side of `sides` ({label: snippet}) once per repeat, alternating, in fresh
    processes, with the snippet arguments `args` (the same for every side, or {label: args});
    returns {label: [median examples/s of each run]} and {label: [raw results]}."""
    figures = {label: [] for label in sides}
    results = {label: [] for label in sides}
    for repeat in range(repeats):
        for label, code in sides.items():
            started = time.perf_counter()
            result = run_snippet(code, *(args[label] if isinstance(args, dict) else args))
            figures[label].append(statistics.median(result["speeds"][1:]))  # the first epoch pays for tracing
            results[label].append(result)
            log(f"repeat {repeat + 1} {label:>24}: {figures[label][-1]:8.1f} examples/s ({time.perf_counter() - started:.0f} s)", flush=True)
    return figures, results


def compare_dlcli_settings(recipe, data, epochs, steps, repeats, settings):
    """dlcli's loop on `recipe` under each of `settings` ({label: (code, config overrides)}, the
    code a variant of DLCLI), alternating in fresh processes `repeats` times; returns what
    `alternate` returns."""
    codes = {label: code for label, (code, _) in settings.items()}
    args = {label: (recipe, data, epochs, steps, json.dumps(overrides)) for label, (_, overrides) in settings.items()}
    return alternate(codes, args, repeats)


def settings_line(recipe, figures, results, base, other):
    """One summary line: `base` against `other` in examples/s (the median of paired ratios) and
    the short runs' test accuracy."""
    ratio, low, high = ratio_line(figures, base, other)
    speed = {label: statistics.median(figures[label]) for label in (base, other)}
    accuracy = {label: statistics.median(r["test"]["accuracy"] for r in results[label]) for label in (base, other)}
    return (f"{recipe:>11}: {base} {speed[base]:.0f} vs {other} {speed[other]:.0f} examples/s = {ratio:.2f}x "
            f"(per-repeat {low:.2f}-{high:.2f}); short-run test accuracy {accuracy[base]:.4f} vs {accuracy[other]:.4f}")


def ratio_line(figures, base, other):
    """`base / other` as the median of per-repeat ratios (each pair measured back to back)."""
    ratios = [a / b for a, b in zip(figures[base], figures[other])]
    return statistics.median(ratios), min(ratios), max(ratios)
