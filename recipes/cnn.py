"""Classify handwritten digits, clothes or small photos with a convolutional network.

Modernises the TF1 MNIST CNN (`tf.placeholder` inputs, `tf.layers.conv2d`/`max_pooling2d`/
`dense`, a `tf.Session` feeding batches to `train_op`) and the PyTorch LeNet-5 snippet, as
Keras layers trained by dlcli's distributed loop.

Architectures (`--set arch=...`):
  source  Conv32 3x3 > MaxPool > Conv64 3x3 > MaxPool > Flatten > Dense64 > Dense10 (default)
  tf1     Conv32 5x5 > MaxPool > Flatten > Dense128 > Dense10 (the older TF1 variant)
  lenet5  Conv6 5x5 > AvgPool > Conv16 5x5 > AvgPool > Dense120 > Dense84 > Dense10

Reference: keras-io mnist_convnet reaches 0.9922 MNIST test accuracy after 15 epochs.

Reproduce: dlcli train cnn --data ../shared/data/mnist
           dlcli train cnn --data ../shared/data/fashion_mnist   (15 epochs: a per-dataset default)
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from dlcli.core.lazy import keras
from dlcli.models.config import FRACTION

# The data, loss, metric and predict hooks every image classifier shares:
from dlcli.models.image_classifier import (  # noqa: F401
    DATA_KINDS,
    DATASETS,
    ImageConfig,
    describe,
    load_data,
    loss,
    metrics,
    read_inputs,
    read_instance,
)

MODERNISES = [
    ("x = tf.placeholder(tf.float32, [None, 784])", "keras.Input(shape=(28, 28, 1)), batches from tf.data"),
    ("tf.reshape(x, [-1, 28, 28, 1]) / 255", "layers.Rescaling(1 / 255) inside the model"),
    ("tf.layers.conv2d / max_pooling2d / dense", "keras.layers.Conv2D / MaxPooling2D / Dense"),
    ("tf.nn.softmax_cross_entropy_with_logits(labels=one_hot)", "SparseCategoricalCrossentropy(from_logits=True)"),
    ("tf.train.AdamOptimizer(lr).minimize(loss)", "keras.optimizers.Adam in dlcli's strategy.run loop"),
    ("with tf.Session() as sess: sess.run(train_op, feed_dict)", "dlcli train: tf.function steps under tf.distribute"),
    ("tf.train.Saver().save(sess, path)", "tf.train.CheckpointManager + model.save('model.keras')"),
]
QUICK = {"dataset": "digits", "epochs": 2}  # a fast offline run, for tests and smoke checks
# Applied before --config/--set/flags for `--dataset NAME` or a recognised `--data` folder:
# Fashion-MNIST needs more epochs than MNIST (5 epochs end near 0.90, 15 reach 0.918).
DATASET_DEFAULTS = {"fashion_mnist": {"epochs": 15}}
# precision=auto trains in mixed_bfloat16 on CPUs with AVX512_BF16/AMX-BF16: 1.9x float32's
# examples/s there, same accuracy (benchmarks/bf16_cpu.py; the recurrent and attention recipes were level or slower).
BF16_CPU = True
# micro_batches=auto cuts each batch into one part per CPU core, each op on one thread: 1.11-1.25x
# whole batches (every op split over both cores) on 2 cores (benchmarks/limit.py, micro_batches_cpu.py).
CPU_MICRO_BATCHES = True


@dataclass
class Config(ImageConfig):
    dataset: str = "mnist"
    epochs: int = 5  # with the cosine schedule: 0.993 on MNIST, past 0.992 in epoch 4 (keras-io: 15 epochs)
    batch_size: int = 128
    learning_rate: float = 3e-3
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    arch: Literal["source", "tf1", "lenet5"] = "source"
    dropout: Annotated[float, FRACTION] = 0.25  # before the classifier (keras-io mnist_convnet has 0.5 and no Dense64)
    augment: bool = False  # random horizontal flip, rotation (10%) and zoom (10%), in training only



# ## Build the model


def build_model(config, splits):
    layers = keras.layers
    inputs = keras.Input(shape=splits.input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    if config.augment:  # Keras' random layers are identities at inference: the saved model predicts as usual
        x = layers.RandomFlip("horizontal", seed=config.seed)(x)
        x = layers.RandomRotation(0.1, seed=config.seed)(x)
        x = layers.RandomZoom(0.1, seed=config.seed)(x)
    if config.arch == "source":
        x = layers.Conv2D(32, 3, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Conv2D(64, 3, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Flatten()(x)
        x = layers.Dense(64, activation="relu")(x)
    elif config.arch == "tf1":
        x = layers.Conv2D(32, 5, padding="same", activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Flatten()(x)
        x = layers.Dense(128, activation="relu")(x)
    else:  # LeNet-5 as in the PyTorch snippet: the 28x28 input is padded to LeNet's 32x32
        x = layers.ZeroPadding2D(2)(x) if splits.input_shape[0] == 28 else x
        x = layers.Conv2D(6, 5, activation="relu")(x)
        x = layers.AveragePooling2D(2)(x)  # Keras 3.15 needs the pool size
        x = layers.Conv2D(16, 5, activation="relu")(x)
        x = layers.AveragePooling2D(2)(x)  # Keras 3.15 needs the pool size
        x = layers.Flatten()(x)
        x = layers.Dense(120, activation="relu")(x)
        x = layers.Dense(84, activation="relu")(x)
    x = layers.Dropout(config.dropout)(x)
    # Logits in float32 even under mixed precision: the softmax lives in the loss.
    outputs = layers.Dense(splits.num_classes, dtype="float32", name="logits")(x)
    return keras.Model(inputs, outputs, name=f"cnn_{config.arch}")
