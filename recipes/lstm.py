"""Tell positive from negative movie reviews with an LSTM over learned word embeddings.

Modernises the Keras/TF1 IMDB LSTM (`imdb.load_data` pre-tokenised integers,
`sequence.pad_sequences`, `Embedding -> LSTM(128, dropout=0.2, recurrent_dropout=0.2) ->
Dense(1, sigmoid)`, `model.fit`): raw review text goes through `keras.layers.TextVectorization`
(once, before training), and the saved model includes that layer, so it reads raw strings.

On a GPU, the LSTM uses the fused cuDNN kernel only when `recurrent_dropout` is 0 (the default
here: dropout acts on the inputs instead). `--set recurrent_dropout=0.2` gives the source's
exact model, several times slower on GPU; dlcli says so when it happens. `--set bidirectional=true`
reads each review both ways, as the keras-io bidirectional LSTM example does.

Datasets: `imdb_reviews` (tensorflow-datasets), `--data PATH` to an aclImdb folder or tarball
(`train/{pos,neg}`, `test/{pos,neg}`, one review per .txt; `unsup` is ignored), and `synthetic`
(a small generated corpus, offline). Your own texts with any number of classes: `--data` a
CSV/TSV/JSON Lines file (`--set text_column=... label_column=...` when not found), or a folder
of .txt files in class subfolders (train/ test/ optional). Two classes: one sigmoid output;
more: a softmax over the classes. `predict` answers with the class names.

Reference: keras-io's bidirectional LSTM reaches 0.843 IMDB test accuracy after 2 epochs.

Reproduce: dlcli train lstm --data ../shared/data/imdb
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

import numpy as np

from dlcli import data, ui
from dlcli.config import AT_LEAST_ONE, FRACTION, Range, TrainConfig
from dlcli.lazy import keras, tf
from dlcli.sources import tfds
from dlcli.sources.aclimdb import one_line

DATASETS = {
    "imdb_reviews": "IMDB movie reviews, 25k train / 25k test (tensorflow-datasets; downloads once)",
    "synthetic": "a small generated corpus of positive and negative reviews (offline)",
}
MODERNISES = [
    ("keras.datasets.imdb.load_data(num_words=20000) (pre-tokenised)", "raw text + layers.TextVectorization (splits.preprocess)"),
    ("sequence.pad_sequences(x, maxlen=80)", "TextVectorization(output_sequence_length=...)"),
    ("LSTM(128, dropout=0.2, recurrent_dropout=0.2)", "LSTM(128, dropout=0.2): cuDNN on GPU (recurrent_dropout is a setting)"),
    ("Dense(1, activation='sigmoid') + binary_crossentropy", "the same, the output kept in float32"),
    ("model.save('imdb.h5') without the tokenizer", "model.keras with TextVectorization: it reads raw strings"),
]
QUICK = {"dataset": "synthetic", "epochs": 2, "units": 16, "embedding_dim": 16, "sequence_length": 32, "learning_rate": 5e-3}
DATA_KINDS = {"text"}


@dataclass
class Config(TrainConfig):
    dataset: str = "imdb_reviews"
    epochs: int = 3
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    vocab_size: Annotated[int, Range(3, 10_000_000)] = 20000
    sequence_length: Annotated[int, AT_LEAST_ONE] = 400  # words kept per review: 200 cuts the ending of a third of them
    embedding_dim: Annotated[int, AT_LEAST_ONE] = 128
    units: Annotated[int, AT_LEAST_ONE] = 128
    dropout: Annotated[float, FRACTION] = 0.2
    recurrent_dropout: Annotated[float, FRACTION] = 0.0  # > 0 rules out the fused cuDNN kernel
    bidirectional: bool = False
    text_column: str = ""  # own CSV/TSV/JSONL data: the column of texts ("" = found when unambiguous)
    label_column: str = ""  # ... and the column of labels
    skip_bad: bool = False  # replace (and count) bytes that are not UTF-8 instead of stopping


# ## Prepare the data: raw text in; the loop turns it into integer sequences once, with `preprocess`


def load_data(config):
    class_names = ["negative", "positive"]
    if config.data is not None:
        found = data.load_local(config, DATA_KINDS)
        train, test, source, class_names = found.train, found.test, found.description, found.class_names
    elif config.dataset == "synthetic":
        train, test, source = synthetic_reviews(2000, seed=0), synthetic_reviews(500, seed=1), "synthetic reviews"
    else:
        builder = tfds.builder("imdb_reviews", config.data_dir)
        train, test = (decode_tfds(tfds.arrays(builder, split)) for split in ("train", "test"))
        source = "tensorflow-datasets imdb_reviews"
    if data.is_classes(train[1]):  # own texts, integer labels: a stratified, shuffled holdout
        train, val = data.holdout(train, config.validation_split, seed=config.seed)
        if len(class_names) == 2:  # one sigmoid output reads float labels
            train, val, test = ((x, y.astype(np.float32)[:, None]) for x, y in (train, val, test))
    else:
        # Reviews arrive grouped by label; mix them (fixed seed) before the validation tail is cut.
        order = np.random.default_rng(0).permutation(len(train[0]))
        train, val = data.holdout((train[0][order], train[1][order]), config.validation_split)
    vectorize = keras.layers.TextVectorization(
        max_tokens=config.vocab_size, output_sequence_length=config.sequence_length
    )
    # A list, not `.astype(str)`: that pads every review to the longest as a fixed-width array.
    vectorize.adapt(tf.data.Dataset.from_tensor_slices(list(train[0])).batch(1024))
    return data.Splits(
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


# ## Build the model


def build_model(config, splits):
    if config.recurrent_dropout > 0 and tf.config.list_logical_devices("GPU"):
        ui.err_console.print(
            f"notice: recurrent_dropout={config.recurrent_dropout} rules out the fused cuDNN LSTM kernel; "
            "training runs several times slower on GPU (--set recurrent_dropout=0 for cuDNN)."
        )
    inputs = keras.Input(shape=splits.input_shape, dtype="int64")
    x = keras.layers.Embedding(config.vocab_size, config.embedding_dim, mask_zero=True)(inputs)
    lstm = keras.layers.LSTM(config.units, dropout=config.dropout, recurrent_dropout=config.recurrent_dropout)
    x = keras.layers.Bidirectional(lstm)(x) if config.bidirectional else lstm(x)
    if splits.num_classes == 2:  # one sigmoid: the probability of the second class
        outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="positive")(x)
    else:
        outputs = keras.layers.Dense(splits.num_classes, activation="softmax", dtype="float32", name="classes")(x)
    return keras.Model(inputs, outputs, name="sentiment_lstm")


def inference_model(model, splits):
    """The trained model behind its TextVectorization layer: raw review strings in."""
    text = keras.Input(shape=(), dtype="string", name="review")
    return keras.Model(text, model(splits.preprocess(text)), name="sentiment_lstm_text")


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


def read_inputs(record, inputs):
    texts = [one_line(Path(x).read_text(encoding="utf-8", errors="replace") if Path(x).is_file() else x) for x in inputs]
    return np.array(texts, object), [x if len(x) <= 40 else x[:37] + "..." for x in inputs]


def describe(record, outputs, names, context):
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
