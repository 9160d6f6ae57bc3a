"""The hooks every image classifier recipe (cnn, softmax, rnn) shares: the same data, loss,
metric and predict path. A recipe imports them and keeps only its model and defaults."""

from dlcli import data, predict
from dlcli.lazy import keras

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
