"""Softmax (multinomial logistic) regression on pixels, trained by backpropagation with SGD.

Modernises the TF1 "MNIST for ML beginners" / TF2 logistic-regression notebooks: `W` and `b`
as `tf.Variable`s, `tf.nn.softmax(tf.matmul(x, W) + b)`, a hand-written cross-entropy and
`tf.train.GradientDescentOptimizer`, as one Keras `Dense(10)` layer on flattened pixels.

Reference: the TF2 logistic-regression notebook reaches 0.915 MNIST test accuracy.

Reproduce: dlcli train softmax --data ../shared/data/mnist
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from dlcli.core.lazy import keras
from dlcli.models.config import FRACTION

# The data, loss, metric and predict hooks every image classifier shares:
from dlcli.models.image_classifier import DATA_KINDS, DATASETS, ImageConfig, describe, load_data, loss, metrics, read_inputs, read_instance  # noqa: F401

MODERNISES = [
    ("x = tf.placeholder(tf.float32, [None, 784])", "keras.Input(shape=(28, 28, 1)) + layers.Flatten()"),
    ("W = tf.Variable(tf.zeros([784, 10])); b = tf.Variable(tf.zeros([10]))", "layers.Dense(10, kernel_initializer='zeros')"),
    ("tf.nn.softmax(tf.matmul(x, W) + b)", "logits out; the softmax lives in the loss"),
    ("-tf.reduce_sum(y_ * tf.log(y), axis=1)", "SparseCategoricalCrossentropy(from_logits=True): stable, no log(0)"),
    ("tf.train.GradientDescentOptimizer(0.5).minimize(loss)", "keras.optimizers.SGD in dlcli's loop"),
]
QUICK = {"dataset": "digits", "epochs": 2}


@dataclass
class Config(ImageConfig):
    dataset: str = "mnist"
    epochs: int = 15
    batch_size: int = 128
    learning_rate: float = 0.5  # the TF1 tutorial's rate; inputs are scaled to [0, 1]
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    momentum: Annotated[float, FRACTION] = 0.0  # plain SGD, as the source



# ## The model: one affine map from pixels to class scores


def build_model(config, splits):
    inputs = keras.Input(shape=splits.input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(splits.num_classes, kernel_initializer="zeros", dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name="softmax_regression")


def optimizer(config, learning_rate):
    return keras.optimizers.SGD(learning_rate, momentum=config.momentum)
