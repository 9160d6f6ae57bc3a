"""Classify handwritten digits, clothes or small photos with a convolutional network.

Modernises the TF1 MNIST CNN (`tf.placeholder` inputs, `tf.layers.conv2d`/`max_pooling2d`/
`dense`, a `tf.Session` feeding batches to `train_op`) and the PyTorch LeNet-5 snippet, as
Keras layers trained by dlcli's distributed loop.

Architectures (`--set arch=...`):
  source  Conv32 3x3 > MaxPool > Conv64 3x3 > MaxPool > Flatten > Dense64 > Dense10 (default)
  tf1     Conv32 5x5 > MaxPool > Flatten > Dense128 > Dense10 (the older TF1 variant)
  lenet5  Conv6 5x5 > AvgPool > Conv16 5x5 > AvgPool > Dense120 > Dense84 > Dense10
  photo   keras-io's "image classification from scratch", narrower: residual blocks of separable
          convolutions with BatchNormalization, global average pooling, dropout. The default for
          a folder of colour photos, with augmentation: MNIST's network flattens a photo into a
          huge Dense layer and cannot learn from a few hundred of them.
Pretrained backbones (`--set backbone=mobilenet_v3_small|mobilenet_v3_large|efficientnet_v2_b0|
resnet50_v2`, `--set weights=imagenet|none|PATH`): a keras.applications network with a new head,
trained in two phases as the Keras fine-tuning guide does: the frozen backbone, then its top
`fine_tune_layers` layers at `fine_tune_lr` for the last `fine_tune_epochs` epochs.

Reference: keras-io mnist_convnet reaches 0.9922 MNIST test accuracy after 15 epochs.

Reproduce: dlcli train cnn --data ../shared/data/mnist
           dlcli train cnn --data ../shared/data/fashion_mnist   (15 epochs: a per-dataset default)
           dlcli train cnn --data ./photos                       (the photo network: a per-data default)
           dlcli train cnn --data ./photos --set backbone=mobilenet_v3_small
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from dlcli.core import ui
from dlcli.core.errors import DlcliError
from dlcli.core.lazy import keras
from dlcli.data.sources import image_folder
from dlcli.models import backbones
from dlcli.models.config import FRACTION, POSITIVE, Range

# The data, loss, metric and predict hooks every image classifier shares:
from dlcli.models.image_classifier import DATA_KINDS, DATASETS, ImageConfig, describe, load_data, loss, metrics, read_inputs, read_instance  # noqa: F401

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
# Fashion-MNIST needs more epochs than MNIST (5 epochs end near 0.90, 15 reach 0.918). A folder
# of colour photos ("photos": dlcli.models.config.dataset_name) gets the photo network, augmentation,
# and a rate, batch and epoch count for a few hundred to a few hundred thousand pictures.
DATASET_DEFAULTS = {
    "fashion_mnist": {"epochs": 15},
    "photos": {"arch": "photo", "augment": True, "epochs": 60, "batch_size": 32, "learning_rate": 1e-3, "dropout": 0.5},
}
PHOTO_ARCHS = ("photo",)


def measured_on_cpu(config):
    """Where bf16 and micro-batches were measured faster on CPUs: MNIST's networks (bf16 1.9x
    float32 with AVX512_BF16/AMX, benchmarks/bf16_cpu.py; one micro-batch per core 1.11-1.25x,
    benchmarks/micro_batches_cpu.py). Not the photo network or the backbones: unmeasured, and
    their BatchNormalization would see per-part statistics."""
    return not config.backbone and config.arch not in PHOTO_ARCHS


BF16_CPU = CPU_MICRO_BATCHES = measured_on_cpu


@dataclass
class Config(ImageConfig):
    dataset: str = "mnist"
    epochs: int = 5  # with the cosine schedule: 0.993 on MNIST, past 0.992 in epoch 4 (keras-io: 15 epochs)
    batch_size: int = 128
    learning_rate: float = 3e-3
    lr_schedule: Literal["auto", "constant", "cosine"] = "auto"  # auto: cosine; constant with a backbone, whose phases set the rate
    arch: Literal["source", "tf1", "lenet5", "photo"] = "source"
    dropout: Annotated[float, FRACTION] = 0.25  # before the classifier (keras-io mnist_convnet has 0.5 and no Dense64)
    augment: bool = False  # random horizontal flip, rotation (10%) and zoom (10%), in training only
    backbone: Literal[("", *backbones.BACKBONES)] = ""  # a pretrained keras.applications network instead of `arch`
    weights: str = "imagenet"  # the backbone's: imagenet (Keras fetches them once), none, or a .weights.h5 / .keras file
    fine_tune_epochs: Annotated[int, Range(0, 1_000_000)] = 0  # the last N epochs fine-tune the backbone's top; 0 = the second half
    fine_tune_layers: Annotated[int, Range(0, 10_000)] = 30  # how many of the backbone's top layers fine-tuning unfreezes (0: none)
    fine_tune_lr: Annotated[float, POSITIVE] = 1e-5  # the rate while fine-tuning (the guide's: far below the head's)

    def __post_init__(self):
        """The automatic values, resolved as the config is made (config.json records what was chosen)."""
        if self.lr_schedule == "auto":
            self.lr_schedule = "constant" if self.backbone else "cosine"
        if self.backbone:
            self.image_size = self.image_size or str(backbones.BACKBONES[self.backbone].size)  # decoded at the backbone's size
            self.channels = self.channels or 3

    def validate(self):
        """Checks the backbone's settings, then every recipe's."""
        if self.backbone:
            if self.lr_schedule != "constant":
                raise DlcliError("a backbone trains at a constant rate per phase (learning_rate, then fine_tune_lr). Received: lr_schedule=cosine")
            if self.fine_tune_layers and self.fine_tune_epochs >= self.epochs:
                raise DlcliError(
                    f"fine_tune_epochs must leave the head at least one epoch with the backbone frozen: below epochs ({self.epochs}). "
                    f"Received: fine_tune_epochs={self.fine_tune_epochs}"
                )
        super().validate()

    def check_files(self):
        """Before training loads anything: a weights file must be there and of a kind Keras reads."""
        if self.backbone and self.weights not in ("imagenet", "none"):
            backbones.check_path(self.weights, self.backbone)


# ## Build the model


def build_model(config, splits):
    if config.backbone:
        return backbone_model(config, splits)
    layers = keras.layers
    inputs = keras.Input(shape=splits.input_shape)
    x = layers.Rescaling(1 / 255)(inputs)
    if config.augment:  # Keras' random layers are identities at inference: the saved model predicts as usual
        x = layers.RandomFlip("horizontal", seed=config.seed)(x)
        x = layers.RandomRotation(0.1, seed=config.seed)(x)
        x = layers.RandomZoom(0.1, seed=config.seed)(x)
    if config.arch == "photo":
        colour = splits.kind == "images" and splits.input_shape[-1] == 3 and min(splits.input_shape[:2]) >= 48
        ui.err_console.print(
            f"network photo: separable-convolution residual blocks, BatchNormalization, global average pooling"
            f"{', augmentation' if config.augment else ''} ({'made for a folder of colour photos' if colour else '--set arch=photo'}); "
            "--set arch=source for MNIST's network, --set backbone=mobilenet_v3_small for a pretrained one"
        )
        x = photo_blocks(x)
    elif config.arch == "source":
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


def batch_norm():
    return keras.layers.BatchNormalization(momentum=0.9)


def photo_blocks(x, widths=(32, 64, 128)):
    """keras-io's image classification from scratch (a small Xception), at a sixth of its widths:
    a few hundred photos train it on a CPU, and it generalises where a Flatten > Dense cannot.
    BatchNormalization's moving statistics follow at momentum 0.9, not Keras' 0.99: a few hundred
    photos make a few hundred steps, too few for 0.99 to forget its initial values."""
    layers = keras.layers
    x = layers.Conv2D(32, 3, strides=2, padding="same", use_bias=False)(x)
    x = layers.Activation("relu")(batch_norm()(x))
    previous = x
    for width in widths:
        for _ in range(2):
            x = layers.Activation("relu")(x)
            x = layers.SeparableConv2D(width, 3, padding="same", use_bias=False)(x)
            x = batch_norm()(x)
        x = layers.MaxPooling2D(3, strides=2, padding="same")(x)
        x = layers.add([x, layers.Conv2D(width, 1, strides=2, padding="same")(previous)])  # the residual, downsampled
        previous = x
    x = layers.SeparableConv2D(2 * widths[-1], 3, padding="same", use_bias=False)(x)
    x = layers.Activation("relu")(batch_norm()(x))
    return layers.GlobalAveragePooling2D()(x)


# ## Transfer learning: a pretrained backbone, a new head, two phases


def backbone_model(config, splits):
    layers = keras.layers
    size = image_folder.parse_size(config.image_size)  # the folder decoder's own reading of image_size
    inputs = keras.Input(shape=splits.input_shape)
    x = inputs
    if splits.input_shape[-1] == 1:  # grey arrays (MNIST, digits): the backbone reads colour
        x = layers.Concatenate()([x, x, x])
    if tuple(splits.input_shape[:2]) != size:  # arrays of another size; folders are decoded at `size`
        x = layers.Resizing(*size)(x)
    base = backbones.build(config.backbone, (*size, 3), config.weights)
    x = base(x, training=False)  # BatchNormalization in inference mode, in both phases
    x = layers.Dropout(config.dropout)(x)
    outputs = layers.Dense(splits.num_classes, dtype="float32", name="logits")(x)
    ui.err_console.print(f"network {config.backbone} ({config.weights} weights) with a new head: {phases_line(config)}")
    backbones.set_phase(base, bool(config.fine_tune_layers), config.fine_tune_layers)  # the optimizer builds for both phases
    return keras.Model(inputs, outputs, name=f"cnn_{config.backbone}")


def fine_tune_start(config):
    """The first epoch (0-based) of fine-tuning; `epochs` when the backbone stays frozen."""
    if not config.fine_tune_layers:
        return config.epochs
    return config.epochs - (config.fine_tune_epochs or config.epochs // 2)


def phases_line(config):
    start = fine_tune_start(config)
    head = f"epochs 1-{start} train the head (backbone frozen, rate {config.learning_rate:g})"
    if start >= config.epochs:
        return head
    return f"{head}, epochs {start + 1}-{config.epochs} fine-tune its top {config.fine_tune_layers} layers at {config.fine_tune_lr:g}"


def training_phase(config, model, optimizer, epoch):
    """Before each epoch: the head alone, then the top of the backbone too (decided by `epoch`
    alone, so a resumed run is in the phase the whole run would be)."""
    if not config.backbone:
        return None
    fine_tune = epoch >= fine_tune_start(config)
    backbones.set_phase(backbones.backbone_of(model), fine_tune, config.fine_tune_layers)
    optimizer.learning_rate = config.fine_tune_lr if fine_tune else config.learning_rate
    return "fine-tune" if fine_tune else "head"
