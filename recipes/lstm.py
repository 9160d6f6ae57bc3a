"""Tell positive from negative movie reviews with an LSTM over learned word embeddings.

Modernises the Keras/TF1 IMDB LSTM (`imdb.load_data` pre-tokenised integers,
`sequence.pad_sequences`, `Embedding -> LSTM(128, dropout=0.2, recurrent_dropout=0.2) ->
Dense(1, sigmoid)`, `model.fit`): raw review text goes through `keras.layers.TextVectorization`
(once, before training), and the saved model includes that layer, so it reads raw strings.

On a GPU, the LSTM uses the fused cuDNN kernel only when `recurrent_dropout` is 0 (the default
here: dropout acts on the inputs instead). `--set recurrent_dropout=0.2` gives the source's
exact model, several times slower on GPU; dlcli says so when it happens. `--set bidirectional=true`
reads each review both ways, as the keras-io bidirectional LSTM example does. `cell = lstm | gru
| rnn` and `layers = N` (stacked, dropout between) give the other recurrent cells: the source's
PyTorch IMDB model (`nn.RNN(100, 256, num_layers=2, dropout=0.2, bidirectional=True)`) is
`--set cell=rnn --set layers=2 --set bidirectional=true --set units=256 --set embedding_dim=100`.

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
from typing import Annotated, Literal

from dlcli.core import ui
from dlcli.core.lazy import keras, tf
from dlcli.data import text
from dlcli.models.config import AT_LEAST_ONE, FRACTION, Range, TrainConfig

DATASETS = text.DATASETS
DATA_KINDS = text.DATA_KINDS
MODERNISES = [
    ("keras.datasets.imdb.load_data(num_words=20000) (pre-tokenised)", "raw text + layers.TextVectorization (splits.preprocess)"),
    ("sequence.pad_sequences(x, maxlen=80)", "TextVectorization(output_sequence_length=...)"),
    ("LSTM(128, dropout=0.2, recurrent_dropout=0.2)", "LSTM(128, dropout=0.2): cuDNN on GPU (recurrent_dropout is a setting)"),
    ("Dense(1, activation='sigmoid') + binary_crossentropy", "the same, the output kept in float32"),
    ("model.save('imdb.h5') without the tokenizer", "model.keras with TextVectorization: it reads raw strings"),
    ("PyTorch nn.RNN(100, 256, num_layers=2, bidirectional=True) over nn.Embedding(vocab, 100)",
     "--set cell=rnn --set layers=2 --set bidirectional=true --set units=256 --set embedding_dim=100"),
    ("pack_padded_sequence(embedded, lengths)", "Embedding(mask_zero=True): the recurrent layers skip padding"),
]
CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn": "SimpleRNN"}
QUICK = {"dataset": "synthetic", "epochs": 2, "units": 16, "embedding_dim": 16, "sequence_length": 32, "learning_rate": 5e-3}


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
    cell: Literal["lstm", "gru", "rnn"] = "lstm"  # gru keeps cuDNN's defaults (reset_after=True)
    layers: Annotated[int, Range(1, 64)] = 1  # stacked recurrent layers, full sequences and dropout between them
    text_column: str = ""  # own CSV/TSV/JSONL data: the column of texts ("" = found when unambiguous)
    label_column: str = ""  # ... and the column of labels
    encoding: str = "auto"  # own text files: auto (UTF-8, a BOM's, else detected per corpus) or a codec name such as cp1252
    decode_errors: Literal["strict", "replace"] = "strict"  # replace: bytes the encoding cannot decode become U+FFFD, counted


# ## Prepare the data: raw text in; the loop turns it into integer sequences once, with `preprocess`
# (dlcli/data/text.py: the text sources the lstm and transformer recipes share)


def load_data(config):
    return text.load_splits(config)


# ## Build the model


def build_model(config, splits):
    if config.recurrent_dropout > 0 and tf.config.list_logical_devices("GPU"):
        ui.err_console.print(
            f"notice: recurrent_dropout={config.recurrent_dropout} rules out the fused cuDNN LSTM kernel; "
            "training runs several times slower on GPU (--set recurrent_dropout=0 for cuDNN)."
        )
    inputs = keras.Input(shape=splits.input_shape, dtype="int64")
    x = keras.layers.Embedding(config.vocab_size, config.embedding_dim, mask_zero=True)(inputs)
    cell = getattr(keras.layers, CELLS[config.cell])
    for i in range(config.layers):
        last = i == config.layers - 1
        # GRU and LSTM keep their cuDNN-compatible defaults (GRU reset_after=True); dropout acts on
        # each layer's inputs, so it also sits between stacked layers, as PyTorch's RNN dropout does.
        layer = cell(config.units, dropout=config.dropout, recurrent_dropout=config.recurrent_dropout, return_sequences=not last)
        x = keras.layers.Bidirectional(layer)(x) if config.bidirectional else layer(x)
    if splits.num_classes == 2:  # one sigmoid: the probability of the second class
        outputs = keras.layers.Dense(1, activation="sigmoid", dtype="float32", name="positive")(x)
    else:
        outputs = keras.layers.Dense(splits.num_classes, activation="softmax", dtype="float32", name="classes")(x)
    return keras.Model(inputs, outputs, name=f"sentiment_{config.cell}")


def inference_model(model, splits):
    """The trained model behind its TextVectorization layer: raw review strings in."""
    reviews = keras.Input(shape=(), dtype="string", name="review")
    return keras.Model(reviews, model(splits.preprocess(reviews)), name=f"{model.name}_text")


# ## Loss, metric and predict: shared with the transformer (dlcli/data/text.py)
loss, metrics, read_inputs, read_instance, describe = text.loss, text.metrics, text.read_texts, text.read_text, text.describe_classes
