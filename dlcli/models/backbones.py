"""Pretrained `keras.applications` backbones for transfer learning on a few hundred photos, as in
TensorFlow's "Transfer learning with a pretrained ConvNet" tutorial and the Keras fine-tuning guide.

Each backbone takes raw pixels (0-255): its own preprocessing is part of the model (MobileNetV3
and EfficientNetV2 include it; ResNet50V2 gets its [-1, 1] scaling as a Rescaling layer), so
`predict`, `export` and the run record work as for any image model. Weights are `imagenet`
(fetched once by Keras into KERAS_HOME, as it does for every user), `none`, or a local file: a
`.weights.h5` of the same backbone, or a `.keras` model holding it (a run of dlcli's, or the
backbone saved alone). A file is checked against the backbone's size before it is read.
"""

import contextlib
import io
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError
from dlcli.core.lazy import keras


@dataclass(frozen=True)
class Backbone:
    constructor: str  # the keras.applications function
    size: int  # the input side its ImageNet weights were trained at
    own_preprocessing: bool  # include_preprocessing: the model rescales raw pixels itself


BACKBONES = {
    "mobilenet_v3_small": Backbone("MobileNetV3Small", 224, True),
    "mobilenet_v3_large": Backbone("MobileNetV3Large", 224, True),
    "efficientnet_v2_b0": Backbone("EfficientNetV2B0", 224, True),
    "resnet50_v2": Backbone("ResNet50V2", 224, False),
}
MIN_SIDE = 32  # the smallest input keras.applications accepts for these networks


def backbone_of(model):
    """The backbone inside a model: its one layer that is a model itself."""
    return next(layer for layer in model.layers if isinstance(layer, keras.Model))


def build(name, input_shape, weights):
    """The backbone `name` as a Keras model on `input_shape` (height, width, 3) of raw pixels,
    globally average-pooled, with `weights` ("imagenet", "none" or a file path) loaded."""
    spec = BACKBONES[name]
    height, width, channels = input_shape
    if channels != 3 or min(height, width) < MIN_SIDE:
        raise DlcliError(f"backbone {name} needs colour inputs of at least {MIN_SIDE}x{MIN_SIDE}. Received: {height}x{width}x{channels}")
    # Keras' own name is kept: EfficientNetV2 looks its blocks up by it.
    kwargs = {"input_shape": (height, width, 3), "include_top": False, "pooling": "avg"}
    if spec.own_preprocessing:
        kwargs["include_preprocessing"] = True
    constructor = getattr(keras.applications, spec.constructor)
    if weights == "imagenet":
        return imagenet(name, constructor, kwargs)
    model = constructor(weights=None, **kwargs)
    if weights != "none":
        load_file(model, name, weights)
    return model


def imagenet(name, constructor, kwargs):
    """The backbone with ImageNet weights, which Keras fetches once into KERAS_HOME/models."""
    try:
        # Keras prints its download line and progress on stdout (which --json keeps for the
        # result) and warns that non-224 inputs get the 224 weights (convolutions fit any size).
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return constructor(weights="imagenet", **kwargs)
    except Exception as e:  # Keras' get_file raises a bare Exception("URL fetch failure on URL: CODE -- REASON")
        url = re.search(r"(https?://[^\s:]+(?::\d+)?/\S*?)(?::\s|\s|$)", str(e))
        if url is None:
            raise DlcliError(f"cannot load the imagenet weights of {name}: {type(e).__name__}: {first_line(e)}") from None
        file = url.group(1).rsplit("/", 1)[-1]
        cache = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras") / "models" / file
        reason = first_line(e).rpartition(" -- ")[2] or type(e).__name__
        raise DlcliError(
            f"weights=imagenet: Keras could not download {file} ({reason}); with no network, copy it from "
            f"{url.group(1)} to {cache}, or pass --set weights=PATH (a .weights.h5 or .keras file) or weights=none."
        ) from None


def check_path(path, name):
    """A weights file that is there and named as Keras reads it (checked before training starts)."""
    path = Path(path)
    if not path.is_file():
        raise DlcliError(f"weights file not found: {path}. Pass imagenet, none, or a .weights.h5 or .keras file of {name}.")
    if not path.name.endswith((".h5", ".keras")):
        raise DlcliError(f"weights must be imagenet, none, a .weights.h5 or a .keras file. Received: weights={path}")


def load_file(model, name, path):
    """Loads a local `.weights.h5` of this backbone, or the backbone inside a `.keras` model."""
    path = Path(path)
    check_path(path, name)
    expected = sum(int(np.prod(w.shape)) for w in model.weights) * 4
    if path.stat().st_size > 2 * expected + (16 << 20):  # float32 weights plus a container's overhead
        raise DlcliError(
            f"{path} is {path.stat().st_size / 2**20:.0f} MiB, far more than the {expected / 2**20:.0f} MiB of {name}'s weights; "
            "it is not this backbone's weights file."
        )
    if path.name.endswith(".keras"):
        return copy_from_model(model, name, path)
    try:
        model.load_weights(str(path))
    except Exception as e:  # a truncated HDF5, another network's layers, a wrong shape
        raise DlcliError(f"cannot load {path} into {name}: {type(e).__name__}: {first_line(e)}") from None


def copy_from_model(model, name, path):
    """Copies the weights of the backbone `name` found in the .keras model at `path` (loaded in
    Keras' safe mode, within dlcli's size budget)."""
    from dlcli.models.safe_model import load_keras

    saved = load_keras(path)
    candidates = [saved] + [layer for layer in getattr(saved, "layers", []) if isinstance(layer, keras.Model)]
    found = next((m for m in candidates if m.name == model.name and len(m.weights) == len(model.weights)), None)
    if found is None:
        raise DlcliError(f"{path} holds no {name} backbone (its models: {', '.join(m.name for m in candidates)}).")
    try:
        model.set_weights(found.get_weights())
    except ValueError as e:
        raise DlcliError(f"the {found.name} in {path} does not fit {name} at this input size: {first_line(e)}") from None


def set_phase(backbone, fine_tune, top_layers):
    """Frozen backbone (the head trains), or its top `top_layers` layers unfrozen for fine-tuning.
    Its BatchNormalization layers stay in inference mode either way (the model calls the backbone
    with training=False), as the Keras fine-tuning guide does."""
    backbone.trainable = fine_tune
    if fine_tune:
        for layer in backbone.layers[: max(0, len(backbone.layers) - top_layers)]:
            layer.trainable = False


def first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__
