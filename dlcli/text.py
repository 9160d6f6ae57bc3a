"""Movie reviews as text: the IMDB sources the text recipes share (lstm, transformer).

Raw review text in (tensorflow-datasets `imdb_reviews`, an aclImdb folder or tarball, or a small
generated corpus); `load_splits` returns the splits with a `TextVectorization` as
`splits.preprocess`, which the loop applies once before training and the recipes fold into the
saved model, so it reads raw strings.
"""

import re
import tarfile
from pathlib import Path

import numpy as np

from dlcli import data
from dlcli.errors import DlcliError
from dlcli.lazy import keras, tf

DATASETS = {
    "imdb_reviews": "IMDB movie reviews, 25k train / 25k test (tensorflow-datasets; downloads once)",
    "synthetic": "a small generated corpus of positive and negative reviews (offline)",
}
REVIEW_PATH = re.compile(r"(?:^|/)(train|test)/(pos|neg)/[^/]+\.txt$")
CLASS_NAMES = ["negative", "positive"]


def load_splits(config):
    """Splits of raw reviews (labels (N, 1) float32, 1 = positive), vectorized by `preprocess`:
    `config.vocab_size` words, sequences padded or cut to `config.sequence_length`."""
    if config.data is not None:
        (train, test), source = read_aclimdb(Path(config.data))
    elif config.dataset == "synthetic":
        train, test, source = synthetic_reviews(2000, seed=0), synthetic_reviews(500, seed=1), "synthetic reviews"
    else:
        builder = data.tfds_builder("imdb_reviews", config.data_dir)
        train, test = (decode_tfds(data.tfds_arrays(builder, split)) for split in ("train", "test"))
        source = "tensorflow-datasets imdb_reviews"
    # Reviews arrive grouped by label; mix them (fixed seed) before the validation tail is cut.
    order = np.random.default_rng(0).permutation(len(train[0]))
    train, val = data.holdout((train[0][order], train[1][order]), config.validation_split)
    vectorize = keras.layers.TextVectorization(
        max_tokens=config.vocab_size, output_sequence_length=config.sequence_length
    )
    vectorize.adapt(tf.data.Dataset.from_tensor_slices(train[0].astype(str)).batch(1024))
    return data.Splits(
        train=train, val=val, test=test, input_shape=(config.sequence_length,), source=source,
        num_classes=2, class_names=CLASS_NAMES, preprocess=vectorize,
    )


def one_line(text):
    """The text with every line break Python knows (\\x85, \\u2028, ...) made a space.

    Keras saves the vocabulary one token per line and reads it back with splitlines(): a token
    holding such a character would make the saved model impossible to load.
    """
    return " ".join(text.splitlines())


def decode_tfds(arrays):
    texts, labels = arrays
    return np.array([one_line(t.decode("utf-8", "replace")) for t in texts], object), labels.astype(np.float32)[:, None]


def review_files(path):
    """(split, label, name, read) for every review of an aclImdb folder, tarball or folder of
    tarballs; `read()` returns its bytes. Tarballs are read in place, never extracted, so no
    archive member is written anywhere (links and devices are skipped)."""
    archives = [path] if path.is_file() else sorted([*path.glob("*.tar.gz"), *path.glob("*.tgz"), *path.glob("*.tar")])
    for archive in archives:
        try:
            with tarfile.open(archive) as tar:
                for member in tar:
                    match = REVIEW_PATH.search(member.name)
                    if member.isfile() and match:
                        yield (*match.groups(), member.name, lambda tar=tar, member=member: tar.extractfile(member).read())
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DlcliError(f"cannot read {archive} as a tar archive: {e}") from None
    if not archives:
        root = path / "aclImdb" if (path / "aclImdb").is_dir() else path
        for split in ("train", "test"):
            for label in ("pos", "neg"):
                folder = root / split / label
                for file in sorted(folder.glob("*.txt")) if folder.is_dir() else []:
                    yield split, label, f"{split}/{label}/{file.name}", file.read_bytes


def read_aclimdb(path):
    """((train_x, train_y), (test_x, test_y)) from an aclImdb folder, tarball, or folder of tarballs.

    Files that are not valid UTF-8 are decoded with replacement characters and counted.
    """
    reviews = {("train", "pos"): [], ("train", "neg"): [], ("test", "pos"): [], ("test", "neg"): []}
    not_utf8 = 0
    for split, label, name, read in review_files(path):
        raw = read()
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            text, not_utf8 = raw.decode("utf-8", "replace"), not_utf8 + 1
        reviews[(split, label)].append((name, one_line(text)))
    empty = [f"{split}/{label}" for (split, label), found in reviews.items() if not found]
    if empty:
        raise DlcliError(
            f"{path} is not an aclImdb dataset: no reviews in {', '.join(empty)} "
            "(expected train/pos, train/neg, test/pos, test/neg folders of .txt files)."
        )
    out = []
    for split in ("train", "test"):
        pairs = sorted(reviews[(split, "pos")]) + sorted(reviews[(split, "neg")])
        texts = np.array([text for _, text in pairs], object)
        labels = np.array([1.0] * len(reviews[(split, "pos")]) + [0.0] * len(reviews[(split, "neg")]), np.float32)
        out.append((texts, labels[:, None]))
    note = f", {not_utf8} files not UTF-8 (decoded with replacement)" if not_utf8 else ""
    return out, f"aclImdb reviews in {path}{note}"


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


# ## Predict: review texts (or text files) in, the probability of "positive" out


def read_texts(info, inputs):
    """(batch, names) for predict: each input is a text file's content or the text itself."""
    texts = [one_line(Path(x).read_text(encoding="utf-8", errors="replace") if Path(x).is_file() else x) for x in inputs]
    return np.array(texts, object), [x if len(x) <= 40 else x[:37] + "..." for x in inputs]


def describe_sentiment(info, outputs, names, context):
    """One row per review: the sentiment and the probability that it is positive."""
    return [
        {"input": name, "sentiment": "positive" if p >= 0.5 else "negative", "probability_positive": round(float(p), 4)}
        for name, p in zip(names, outputs[:, 0])
    ]
