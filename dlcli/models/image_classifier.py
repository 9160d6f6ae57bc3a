"""The hooks every image classifier recipe (cnn, softmax, rnn) shares: the same data, loss,
metric and predict path. A recipe imports them and keeps only its model and defaults."""

import typing
from dataclasses import dataclass

from dlcli import data
from dlcli.core.lazy import keras
from dlcli.models import predict
from dlcli.models.config import TrainConfig


@dataclass
class ImageConfig(TrainConfig):
    """What image recipes add to every recipe's settings: how image files become inputs."""

    image_size: str = ""  # HEIGHTxWIDTH (or SIDE) for image folders; "" = the most common size, at most 128
    channels: int = 0  # 1 grey or 3 colour for image folders; 0 = colour if any picture is
    resize: typing.Literal["stretch", "crop", "pad"] = "stretch"  # other aspect ratios: stretched, centre-cropped or padded
    skip_bad: bool = False  # skip (and count) unreadable image files instead of stopping at the first
    cache: typing.Literal["", "memory"] = ""  # "memory": decode an image folder once into RAM (data that fits); "" streams

DATASETS = data.IMAGE_DATASETS
DATA_KINDS = {"images"}


def load_data(config):
    """uint8 images (N, height, width, channels) with integer labels; scaling to [0, 1]
    happens in the model, so a saved model takes raw pixels."""
    return data.load_images(config)


def loss(config):
    # Logits out of the model, the softmax in the loss: stable, and no log(0).
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)


def metrics(config):
    return [keras.metrics.SparseCategoricalAccuracy(name="accuracy")]


# Predict: image files in (any size, grey or colour, converted to the model's input), classes out
read_inputs = predict.read_images
describe = predict.classify


def read_instance(record, value):
    """`dlcli serve`'s instance: an image file's bytes, checked; decoded with the rest of its
    batch by the function `read_inputs` decodes a file with (predict.ImageBytes)."""
    return predict.checked_image(predict.binary(value, "an image"), "this file")
