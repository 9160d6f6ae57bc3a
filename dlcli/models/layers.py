"""Keras layers of dlcli's own that saved models use; imported (registered) before any model is loaded."""

import math

from dlcli.core.lazy import keras, tf
from dlcli.data.sources.csv_table import MISSING


@keras.saving.register_keras_serializable(package="dlcli")
class TableFeatures(keras.layers.Layer):
    """Raw CSV cells (strings) to model features: numbers standardised (blanks -> the training
    mean), categories one-hot (blanks and unseen values -> all zeros)."""

    def __init__(self, spec, **kwargs):
        super().__init__(**kwargs)
        self.spec = spec

    def call(self, cells):
        out = []
        for j, column in enumerate(self.spec):
            cell = tf.strings.strip(cells[:, j])
            if "vocabulary" in column:
                out.append(tf.cast(tf.equal(cell[:, None], tf.constant(column["vocabulary"] or [""], tf.string)[None, :]), tf.float32)
                           if column["vocabulary"] else tf.zeros_like(cell, tf.float32)[:, None])
                continue
            missing = tf.reduce_any(tf.equal(tf.strings.lower(cell)[:, None], tf.constant(sorted(MISSING))[None, :]), -1)
            value = tf.strings.to_number(tf.where(missing, "0", cell), tf.float64)
            value = tf.where(missing, tf.constant(column["mean"], tf.float64), value)
            out.append(tf.cast((value - column["mean"]) / column["std"], tf.float32)[:, None])
        return tf.concat(out, -1)

    def get_config(self):
        return {**super().get_config(), "spec": self.spec}


def all_layers(layer):
    """A layer and every layer inside it (models, Bidirectional wrappers)."""
    yield layer
    for inner in [*getattr(layer, "layers", []), getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None)]:
        if inner is not None:
            yield from all_layers(inner)


def is_recurrent(layer):
    return isinstance(layer, (keras.layers.LSTM, keras.layers.GRU))


@keras.saving.register_keras_serializable(package="dlcli")
class RandomBackgroundNoise(keras.layers.Layer):
    """In training only, adds white noise to each clip's sound at a random level, from 60 dB
    below its peak up to `level` times its peak: the room and microphone of a voice the model
    never heard. Left out, the FSDD speaker whose upper bands never fall below ~35 dB under his
    peak (the five others' fall to 50-65) is recognised at 0.716, his "four" mostly as "two"; with
    noise up to 0.05 of the peak, 0.812 (up to 0.1: 0.858, but a clean voice fell from 0.89 to
    0.77, its "six" and "eight" heard as "nine"). The sound is the span between a clip's first
    and last non-zero sample: the zero padding around a clip stays silent, as it is at prediction
    (noise in the padding taught a difference that only training had). It computes in float32
    under any precision policy: the waveform is float32, and so are the random draws."""

    def __init__(self, level, seed=None, **kwargs):
        super().__init__(**{"dtype": "float32", **kwargs})
        self.level, self.seed = level, seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, wave, training=False):
        if not training or not self.level:
            return wave
        ops = keras.ops
        batch, length = ops.shape(wave)[0], ops.shape(wave)[1]
        sound = ops.cast(ops.abs(wave) > 0, "int32")
        first = ops.argmax(sound, axis=1)[:, None]
        last = length - 1 - ops.argmax(ops.flip(sound, axis=1), axis=1)[:, None]
        position = ops.arange(length)[None, :]
        inside = ops.cast((position >= first) & (position <= last), wave.dtype)
        db = keras.random.uniform((batch, 1), -60, 20 * math.log10(self.level), seed=self.seed_generator)
        peak = ops.max(ops.abs(wave), axis=1, keepdims=True)
        return wave + keras.random.normal((batch, length), seed=self.seed_generator) * peak * 10 ** (db / 20) * inside

    def get_config(self):
        return {**super().get_config(), "level": self.level, "seed": self.seed}
