"""Keras layers of dlcli's own that saved models use; imported (registered) before any model is loaded."""

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
