"""Compress images to a small code and back with a dense autoencoder, against a PCA baseline.

Modernises the TF1 autoencoder example (`tf.placeholder` for the 784 pixels, encoder and
decoder weights as dicts of `tf.Variable`s, `tf.nn.sigmoid(tf.add(tf.matmul(...)))` layers,
`tf.train.RMSPropOptimizer` on `tf.reduce_mean(tf.pow(y_true - y_pred, 2))`) as Keras `Dense`
layers: 784 -> 256 -> 128 -> latent -> 128 -> 256 -> 784 (sigmoid), trained on the MSE.

The linear baseline it must beat, PCA with the same number of components, is fitted on the
same training images in the same run; both test MSEs are reported side by side, and a PNG
grid of test images (top) and their reconstructions (bottom) is written to the run folder.
The source used a latent size of 20 (`--set latent=20`); the reference uses 32.

Reference: test reconstruction MSE below the PCA-32 MSE on MNIST.

Reproduce: dlcli train autoencoder --data ../shared/data/mnist
"""

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from dlcli import data
from dlcli.core.lazy import keras, tf
from dlcli.models import predict
from dlcli.models.config import AT_LEAST_ONE
from dlcli.models.image_classifier import ImageConfig
from dlcli.runs import rundir

DATASETS = {k: v for k, v in data.IMAGE_DATASETS.items() if k != "cifar10"}
DATA_KINDS = {"images"}
MODERNISES = [
    ("X = tf.placeholder('float', [None, 784])", "keras.Input((28, 28, 1)) + Rescaling + Flatten"),
    ("weights = {'encoder_h1': tf.Variable(tf.random_normal([784, 256])), ...}", "layers.Dense(256), created and tracked by Keras"),
    ("tf.nn.sigmoid(tf.add(tf.matmul(x, w), b))", "layers.Dense(..., activation=...)"),
    ("tf.reduce_mean(tf.pow(y_true - y_pred, 2))", "a per-example MSE averaged over the global batch"),
    ("tf.train.RMSPropOptimizer(0.01).minimize(loss)", "keras.optimizers.Adam in dlcli's loop"),
]
QUICK = {"dataset": "digits", "epochs": 2}
GRID_IMAGES = 10
FILES_LIMIT = 10_000  # images decoded from an image folder for the PCA baseline


@dataclass
class Config(ImageConfig):
    dataset: str = "mnist"
    epochs: int = 20
    batch_size: int = 128
    learning_rate: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    latent: Annotated[int, AT_LEAST_ONE] = 32


# ## Prepare the data: the images are both the input and the target


def load_data(config):
    splits = data.load_images(config)
    splits.train, splits.val, splits.test = (
        data.Files(s.paths, s.targets, s.decode, inputs_as_targets=True) if isinstance(s, data.Files) else (s[0], s[0])
        for s in (splits.train, splits.val, splits.test)
    )
    splits.num_classes = splits.class_names = None  # the labels are dropped: nothing to classify
    return splits


# ## Build the model


def build_model(config, splits):
    pixels = int(np.prod(splits.input_shape))
    inputs = keras.Input(shape=splits.input_shape)
    x = keras.layers.Rescaling(1 / 255)(inputs)
    x = keras.layers.Flatten()(x)
    x = keras.layers.Dense(256, activation="relu")(x)
    x = keras.layers.Dense(128, activation="relu")(x)
    code = keras.layers.Dense(config.latent, name="latent")(x)
    x = keras.layers.Dense(128, activation="relu")(code)
    x = keras.layers.Dense(256, activation="relu")(x)
    outputs = keras.layers.Dense(pixels, activation="sigmoid", dtype="float32", name="reconstruction")(x)
    return keras.Model(inputs, outputs, name="autoencoder")


def reconstruction_mse(images, reconstruction):
    """Per-image mean squared error between the [0, 1]-scaled pixels and their reconstruction."""
    target = keras.ops.reshape(keras.ops.cast(images, "float32") / 255, keras.ops.shape(reconstruction))
    return keras.ops.mean(keras.ops.square(target - reconstruction), axis=-1)


def loss(config):
    return reconstruction_mse


def metrics(config):
    return []  # the loss is the metric: reconstruction MSE


# ## After training: the PCA baseline and a picture


def after_training(config, splits, model, run_dir):
    from sklearn.decomposition import PCA

    flat = lambda images: images.reshape(len(images), -1).astype(np.float32) / 255
    # Image files are decoded for the baseline up to a bound; arrays are used whole.
    limit = FILES_LIMIT if isinstance(splits.train, data.Files) else None
    train_images, test_images = data.arrays(splits.train, limit)[0], data.arrays(splits.test, limit)[0]
    pca = PCA(n_components=config.latent, random_state=0).fit(flat(train_images))
    test = flat(test_images)
    pca_mse = float(np.mean((pca.inverse_transform(pca.transform(test)) - test) ** 2))
    reconstructions = model.predict(test_images, verbose=0)
    autoencoder_mse = float(np.mean((reconstructions - test) ** 2))
    write_grid(test_images[:GRID_IMAGES], reconstructions[:GRID_IMAGES], run_dir / "reconstructions.png")
    return {
        "test_mse": autoencoder_mse,
        f"pca{config.latent}_test_mse": pca_mse,
        "beats_pca": autoencoder_mse < pca_mse,
        "pictures": ["reconstructions.png"],
    }


def write_grid(originals, reconstructions, path):
    """Originals in the top row, reconstructions below, as one greyscale PNG."""
    shape = originals.shape[1:]
    recon = np.clip(reconstructions * 255, 0, 255).astype(np.uint8).reshape(-1, *shape)
    rows = [np.concatenate(list(images), axis=1) for images in (originals, recon)]
    grid = np.concatenate(rows, axis=0)
    rundir.atomic_write(path, tf.io.encode_png(grid).numpy())


# ## Predict: image files in, reconstructions written out (`dlcli serve`: sent back as PNGs)

read_inputs = predict.read_images


def read_instance(record, value):
    return predict.checked_image(predict.binary(value, "an image"), "this file")  # decoded with its batch


def describe(record, outputs, names, context):
    out_dir = context["out_dir"]  # None under `dlcli serve`: the reconstruction goes back as {"b64": PNG}
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    images = context["batch"]
    rows = []
    for name, image, reconstruction in zip(names, images, outputs):
        mse = float(np.mean((reconstruction - image.reshape(-1) / 255) ** 2))
        if out_dir is None:
            pixels = np.clip(reconstruction * 255, 0, 255).astype(np.uint8).reshape(image.shape)
            picture = {"b64": base64.b64encode(tf.io.encode_png(pixels).numpy()).decode("ascii")}
        else:
            path = out_dir / f"{Path(name).stem}.reconstruction.png"
            write_grid(image[None], reconstruction[None], path)
            picture = str(path)
        rows.append({"input": name, "reconstruction": picture, "mse": round(mse, 5)})
    return rows
