"""Tell positive from negative movie reviews with a small Transformer encoder trained from scratch.

Modernises keras-io's `text_classification_with_transformer` (a hand-written
`TransformerBlock` and `TokenAndPositionEmbedding` over `imdb.load_data` integers cut to 200
words, `model.fit`): raw review text goes through `keras.layers.TextVectorization` (once, before
training, shared with the lstm recipe in `dlcli/data/text.py`), then token + position embeddings,
`blocks` encoder blocks (`keras.layers.MultiHeadAttention`, LayerNormalization, a feed-forward
layer, residuals), an average over the real (non-padding) tokens, and a sigmoid. A width-3
convolution before the first block gives every token its neighbours (a bigram-ish signal that
attention alone learns slowly). The saved model includes the TextVectorization: it reads raw strings.

Datasets: as lstm: `imdb_reviews` (tensorflow-datasets), `--data PATH` to an aclImdb folder or
tarball, and `synthetic` (a small generated corpus, offline).

Reference: keras-io's text_classification_with_transformer reaches about 0.88 IMDB test
accuracy (2 epochs, 200 words); the target here is >= 0.88 in less training time than lstm.

Reproduce: dlcli train transformer --data ../shared/data/imdb
"""

from dataclasses import dataclass
from typing import Annotated, Literal

from dlcli.core.lazy import keras
from dlcli.data import text
from dlcli.models.config import AT_LEAST_ONE, FRACTION, Range, TrainConfig, check

DATASETS = text.DATASETS
DATA_KINDS = text.DATA_KINDS
MODERNISES = [
    ("keras.datasets.imdb.load_data(num_words=20000); pad_sequences(maxlen=200)", "raw text + TextVectorization(output_sequence_length=...) (dlcli/data/text.py)"),
    ("class TokenAndPositionEmbedding(layers.Layer)", "two keras.layers.Embedding, positions from keras.ops.cumsum: no custom layer to register"),
    ("class TransformerBlock(layers.Layer): att + ffn, no padding mask", "MultiHeadAttention with the padding mask, pre-norm residual blocks"),
    ("GlobalAveragePooling1D() over padding too", "GlobalAveragePooling1D(x, mask): the mean of the real tokens"),
    ("Dense(2, softmax) + sparse_categorical_crossentropy, Adam", "Dense(1, sigmoid) kept in float32, AdamW with cosine decay"),
    ("model.save() without the tokenizer", "model.keras with TextVectorization: it reads raw strings"),
]
# micro_batches=auto: one part of each batch per CPU core, each op on one thread: 1.06-1.16x whole
# batches on 2 cores (benchmarks/micro_batches_cpu.py); LayerNormalization keeps the update the same.
CPU_MICRO_BATCHES = True
QUICK = {
    "dataset": "synthetic", "epochs": 2, "sequence_length": 32, "embedding_dim": 16, "heads": 2,
    "feed_forward": 32, "learning_rate": 5e-3,
}


@dataclass
class Config(TrainConfig):
    dataset: str = "imdb_reviews"
    epochs: int = 2
    batch_size: int = 64
    learning_rate: float = 1e-3
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    weight_decay: Annotated[float, Range(0)] = 0.01  # AdamW
    vocab_size: Annotated[int, Range(3, 10_000_000)] = 20000
    sequence_length: Annotated[int, AT_LEAST_ONE] = 320  # words kept per review (mean review: ~230 words)
    embedding_dim: Annotated[int, AT_LEAST_ONE] = 64
    blocks: Annotated[int, Range(1, 64)] = 1
    heads: Annotated[int, AT_LEAST_ONE] = 2
    feed_forward: Annotated[int, AT_LEAST_ONE] = 128
    dropout: Annotated[float, FRACTION] = 0.3  # it overfits by epoch 2 otherwise (train 0.95, validation 0.89)
    text_column: str = ""  # own CSV/TSV/JSONL data: the column of texts ("" = found when unambiguous)
    label_column: str = ""  # ... and the column of labels
    encoding: str = "auto"  # own text files: auto (UTF-8, a BOM's, else detected per corpus) or a codec name such as cp1252
    decode_errors: Literal["strict", "replace"] = "strict"  # replace: bytes the encoding cannot decode become U+FFFD, counted

    def validate(self):
        super().validate()
        check(self.embedding_dim % self.heads == 0, "heads", self.heads, f"a divisor of embedding_dim={self.embedding_dim}")


# ## Prepare the data: the IMDB sources lstm uses, vectorized once before training


def load_data(config):
    return text.load_splits(config)


# ## Build the model


def encoder_block(x, mask, config):
    """Pre-norm Transformer encoder block: self-attention, then a feed-forward layer, each residual."""
    layers = keras.layers
    h = layers.LayerNormalization(epsilon=1e-6)(x)
    # (batch, 1, length): every query attends to the real tokens only.
    attention_mask = keras.ops.expand_dims(mask, 1)
    # No dropout on the attention weights: on CPU it cost a third of each step (a random mask
    # per head and token pair), for nothing measurable with one or two blocks.
    h = layers.MultiHeadAttention(config.heads, config.embedding_dim // config.heads)(h, h, attention_mask=attention_mask)
    x = layers.Add()([x, layers.Dropout(config.dropout)(h)])
    h = layers.LayerNormalization(epsilon=1e-6)(x)
    h = layers.Dense(config.feed_forward, activation="gelu")(h)
    h = layers.Dense(config.embedding_dim)(layers.Dropout(config.dropout)(h))
    return layers.Add()([x, layers.Dropout(config.dropout)(h)])


def build_model(config, splits):
    layers = keras.layers
    tokens = keras.Input(shape=splits.input_shape, dtype="int64")
    mask = keras.ops.not_equal(tokens, 0)  # TextVectorization pads with 0
    positions = keras.ops.cumsum(keras.ops.ones_like(tokens), axis=1) - 1
    x = layers.Add()([
        layers.Embedding(config.vocab_size, config.embedding_dim)(tokens),
        layers.Embedding(config.sequence_length, config.embedding_dim)(positions),
    ])
    x = layers.SpatialDropout1D(config.dropout)(x)  # drops whole embedding channels: the classic IMDB regulariser
    x = layers.Add()([x, layers.Conv1D(config.embedding_dim, 3, padding="same")(x)])  # neighbours: bigrams
    for _ in range(config.blocks):
        x = encoder_block(x, mask, config)
    x = layers.LayerNormalization(epsilon=1e-6)(x)
    x = layers.GlobalAveragePooling1D()(x, mask=mask)
    x = layers.Dropout(config.dropout)(x)
    if splits.num_classes == 2:  # one sigmoid: the probability of the second class
        outputs = layers.Dense(1, activation="sigmoid", dtype="float32", name="positive")(x)
    else:
        outputs = layers.Dense(splits.num_classes, activation="softmax", dtype="float32", name="classes")(x)
    return keras.Model(tokens, outputs, name="text_transformer")


def inference_model(model, splits):
    """The trained model behind its TextVectorization layer: raw review strings in."""
    reviews = keras.Input(shape=(), dtype="string", name="review")
    return keras.Model(reviews, model(splits.preprocess(reviews)), name="sentiment_transformer_text")


def optimizer(config, learning_rate):
    return keras.optimizers.AdamW(learning_rate, weight_decay=config.weight_decay)


# ## Loss, metric and predict: shared with lstm (dlcli/data/text.py)
loss, metrics, read_inputs, read_instance, describe = text.loss, text.metrics, text.read_texts, text.read_text, text.describe_classes
