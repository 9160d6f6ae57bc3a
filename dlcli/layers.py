"""Keras layers of dlcli's own that saved models use; imported (registered) before any model is loaded."""

from dlcli.lazy import keras, tf
from dlcli.sources.csv_table import MISSING


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


@keras.saving.register_keras_serializable(package="dlcli")
class LogMelNormalization(keras.layers.Layer):
    """A mel power spectrogram (batch, mel bins, frames) to normalised log-mel (batch, frames,
    mel bins), each clip on its own: decibels floored `top_db` below the clip's own peak, then
    standardised over the clip's voiced frames only (any band above the floor), all bands
    together or, with `per_band`, each band over time (cepstral mean and variance
    normalisation: a speaker's microphone and room), in units of that spread above the clip's
    (or band's) lowest voiced value. Silent frames, the zero padding of short clips above all,
    are 0.

    Why not MelSpectrogram's own dB scale and a LayerNormalization: its floor is `top_db` below
    the loudest clip of the *batch*, so a clip's features depended on its batch mates, and the
    padding's frames entered the mean and spread, so the same word spoken faster (more padding)
    was scaled differently."""

    def __init__(self, top_db=80.0, per_band=False, **kwargs):
        super().__init__(**kwargs)
        self.top_db, self.per_band = top_db, per_band

    def call(self, power):
        ops = keras.ops
        db = 10.0 * ops.log10(ops.maximum(ops.transpose(power, (0, 2, 1)), 1e-10))
        floor = ops.max(db, axis=(1, 2), keepdims=True) - self.top_db
        db = ops.maximum(db, floor)
        voiced = ops.cast(ops.max(db, axis=2, keepdims=True) > floor, db.dtype)  # (batch, frames, 1)
        axes = 1 if self.per_band else (1, 2)
        count = ops.maximum(ops.sum(voiced * ops.ones_like(db), axis=axes, keepdims=True), 1.0)
        mean = ops.sum(db * voiced, axis=axes, keepdims=True) / count
        variance = ops.sum(ops.square(db - mean) * voiced, axis=axes, keepdims=True) / count
        normalised = (db - mean) * ops.rsqrt(variance + 1e-3)
        lowest = ops.min(ops.where(voiced > 0, normalised, ops.full_like(normalised, 1e9)), axis=axes, keepdims=True)
        # Measured from the clip's floor: silence is 0, as in the zeros that time shifts and
        # zooms fill in with (0 as the mean level would put loud noise into their margins).
        return ops.where(voiced > 0, normalised - ops.minimum(lowest, 0.0), 0.0)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[2], input_shape[1])

    def get_config(self):
        return {**super().get_config(), "top_db": self.top_db, "per_band": self.per_band}
