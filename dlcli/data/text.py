"""Texts and their classes: the data, loss, metric and predict hooks the text recipes share
(lstm, transformer).

Raw text in (tensorflow-datasets `imdb_reviews`, any text source of `dlcli.data.sources`: an aclImdb
folder or tarball, a CSV/TSV/JSON Lines file, class folders of .txt files; or a small generated
corpus); `load_splits` returns the splits with a `TextVectorization` as `splits.preprocess`,
which the loop applies once before training and the recipes fold into the saved model, so it
reads raw strings. Two classes: one sigmoid output; more: a softmax over the classes.
"""

from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError, json_type
from dlcli.core.lazy import keras, tf
from dlcli.data.loading import load_local
from dlcli.data.sources import tfds
from dlcli.data.sources.aclimdb import one_line
from dlcli.data.splits import Splits, holdout, is_classes

DATASETS = {
    "imdb_reviews": "IMDB movie reviews, 25k train / 25k test (tensorflow-datasets; downloads once)",
    "synthetic": "a small generated corpus of positive and negative reviews (offline)",
}
DATA_KINDS = {"text"}


def load_splits(config):
    """Splits of raw texts, vectorized by `preprocess`: `config.vocab_size` words, sequences
    padded or cut to `config.sequence_length`."""
    class_names = ["negative", "positive"]
    if config.data is not None:
        found = load_local(config, DATA_KINDS)
        train, test, source, class_names = found.train, found.test, found.description, found.class_names
    elif config.dataset == "synthetic":
        train, test, source = synthetic_reviews(2000, seed=0), synthetic_reviews(500, seed=1), "synthetic reviews"
    else:
        builder = tfds.builder("imdb_reviews", config.data_dir)
        train, test = (decode_tfds(tfds.arrays(builder, split)) for split in ("train", "test"))
        source = "tensorflow-datasets imdb_reviews"
    if is_classes(train[1]):  # own texts, integer labels: a stratified, shuffled holdout
        train, val = holdout(train, config.validation_split, seed=config.seed)
        if len(class_names) == 2:  # one sigmoid output reads float labels
            train, val, test = ((x, y.astype(np.float32)[:, None]) for x, y in (train, val, test))
    else:
        # Reviews arrive grouped by label; mix them (fixed seed) before the validation tail is cut.
        order = np.random.default_rng(0).permutation(len(train[0]))
        train, val = holdout((train[0][order], train[1][order]), config.validation_split)
    vectorize = keras.layers.TextVectorization(
        max_tokens=config.vocab_size, output_sequence_length=config.sequence_length
    )
    # A list, not `.astype(str)`: that pads every review to the longest as a fixed-width array.
    vectorize.adapt(tf.data.Dataset.from_tensor_slices(list(train[0])).batch(1024))
    if vectorize.vocabulary_size() <= 2:  # only the padding and out-of-vocabulary tokens
        raise DlcliError(
            f"the training texts of {source} hold no words (empty, or only punctuation and spaces): "
            "nothing to learn from. Check the files, or name the text column with --set text_column=NAME."
        )
    return Splits(
        train=train, val=val, test=test, input_shape=(config.sequence_length,), source=source,
        num_classes=len(class_names), class_names=class_names, preprocess=vectorize, kind="text",
    )


def decode_tfds(arrays):
    texts, labels = arrays
    return np.array([one_line(t.decode("utf-8", "replace")) for t in texts], object), labels.astype(np.float32)[:, None]


POSITIVE = "great wonderful superb moving brilliant delightful charming excellent".split()
NEGATIVE = "awful boring dull terrible clumsy tedious weak dreadful".split()
FILLER = "the film plot acting story cast director music was and a with quite its".split()


def synthetic_reviews(n, seed):
    """Reviews of filler words and a few opinion words; the label is the majority opinion."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    texts = []
    for label in labels:
        own, other = (POSITIVE, NEGATIVE) if label else (NEGATIVE, POSITIVE)
        words = list(rng.choice(FILLER, rng.integers(8, 20))) + list(rng.choice(own, 3)) + list(rng.choice(other, 1))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return np.array(texts, object), labels.astype(np.float32)[:, None]


# ## Loss and metric: one sigmoid output for two classes, a softmax for more


def loss(config):
    binary = keras.losses.BinaryCrossentropy(reduction=None)
    classes = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    # One output: binary cross-entropy on float labels; N outputs: over N classes.
    return lambda y, p: binary(y, p) if p.shape[-1] == 1 else classes(y, p)


def accuracy(y, p):
    return keras.metrics.binary_accuracy(y, p) if p.shape[-1] == 1 else keras.metrics.sparse_categorical_accuracy(y, p)


def metrics(config):
    return [keras.metrics.MeanMetricWrapper(accuracy, name="accuracy")]


# ## Predict: texts (or text files) in, the class name and its probability out


def read_texts(record, inputs):
    texts = [one_line(read_text_file(x) if Path(x).is_file() else x) for x in inputs]
    return np.array(texts, object), [x if len(x) <= 40 else x[:37] + "..." for x in inputs]


def read_text(record, value):
    """`dlcli serve`'s instance: a text (a JSON string), or a text file's bytes ({"b64": ...}),
    read as `read_texts` reads a text or a text file. A string is never taken for a file name."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")  # one_line joins \r\n as read_text's newlines
    if not isinstance(value, str):
        raise DlcliError(f"send a text as a JSON string (or a text file as {{\"b64\": ...}}), not as a JSON {json_type(value)}.")
    return np.array(one_line(value), object)


def describe_classes(record, outputs, names, context):
    classes = record.data.class_names or ["negative", "positive"]
    outputs = np.asarray(outputs, np.float32)
    if outputs.shape[-1] == 1:  # the sigmoid's probability of the second class
        outputs = np.concatenate([1 - outputs, outputs], axis=-1)
    rows = []
    for name, p in zip(names, outputs):
        order = np.argsort(-p)[: context["top_k"]]
        rows.append({
            "input": name, "class": classes[order[0]], "probability": round(float(p[order[0]]), 4),
            "top_k": [{"class": classes[i], "probability": round(float(p[i]), 4)} for i in order],
        })
    return rows


def read_text_file(path):
    """A text file given to predict, in whatever encoding `encodings` recognises (undecodable
    bytes replaced: a prediction needs the text, not a refusal)."""
    import dlcli.data.encodings as encodings

    return encodings.decode(Path(path).read_bytes(), path, "auto", "replace")[0]
