"""Classify digits with an LSTM that reads each image row by row.

Modernises the TF1 `tf.contrib.rnn.BasicLSTMCell` + `tf.nn.static_rnn` MNIST example (28 time
steps of 28 pixels) and the Keras snippet that fed the labels in as a second model input by
mistake: here the image is the only input, and the label is only the target.

Reference: the Keras hierarchical-RNN MNIST example reaches 0.986 test accuracy.

Reproduce: dlcli train rnn --data ../shared/data/mnist
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from dlcli.core.lazy import keras
from dlcli.models.config import AT_LEAST_ONE

# The data, loss, metric and predict hooks every image classifier shares:
from dlcli.models.image_classifier import DATA_KINDS, DATASETS, ImageConfig, describe, load_data, loss, metrics, read_inputs, read_instance  # noqa: F401

MODERNISES = [
    ("x = tf.placeholder(tf.float32, [None, 28, 28]); tf.unstack(x, 28, 1)", "keras.Input((28, 28, 1)) + layers.Reshape((28, 28))"),
    ("tf.contrib.rnn.BasicLSTMCell(128) + tf.nn.static_rnn(cell, x)", "layers.LSTM(128): fused cuDNN kernel on GPU"),
    ("tf.matmul(outputs[-1], W) + b", "layers.Dense(10) on the last state"),
    ("Model(inputs=[image, label], ...) (the label as an input: a bug)", "the image is the only input; the label is the target"),
    ("sess.run(optimizer, feed_dict={x: batch_x, y: batch_y})", "dlcli's strategy.run loop"),
]
QUICK = {"dataset": "digits", "epochs": 2, "units": 32}


@dataclass
class Config(ImageConfig):
    dataset: str = "mnist"
    epochs: int = 10
    batch_size: int = 128
    learning_rate: float = 2e-3
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    units: Annotated[int, AT_LEAST_ONE] = 128



# ## The model: rows are time steps, pixels of a row are features


def build_model(config, splits):
    height, width, channels = splits.input_shape
    inputs = keras.Input(shape=splits.input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Reshape((height, width * channels))(x)
    x = keras.layers.LSTM(config.units)(x)
    outputs = keras.layers.Dense(splits.num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name="row_lstm")
