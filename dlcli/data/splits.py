"""What every recipe's data becomes: `Splits` of examples, held as arrays or as files.

Local formats live in `dlcli.data.sources` (one module per family, one table); named datasets in
`dlcli.data.sources.tfds`. A split is either an (inputs, targets) pair of numpy arrays, or `Files`
decoded in tf.data as batches are drawn. Either way the loop cuts exact global batches of
example *indices* from a seeded shuffle, so any number of replicas sees the same batches and a
resumed run continues with the batches it would have seen.
"""

import contextlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError


@dataclass
class Files:
    """Examples kept on disk: `paths` and their `targets`, turned into model inputs by `decode`
    (a TensorFlow function of one path tensor) inside tf.data, so memory does not grow with
    the number of examples."""

    paths: np.ndarray
    targets: np.ndarray
    decode: object
    inputs_as_targets: bool = False  # an autoencoder's: the decoded input is also the target

    def __len__(self):
        return len(self.paths)

    def subset(self, index):
        return Files(self.paths[index], self.targets[index], self.decode, self.inputs_as_targets)


def utf8_name(path):
    """Whether a listed file name is valid UTF-8. On Linux a name is bytes; Python keeps the
    undecodable ones as surrogates, which TensorFlow and the terminal cannot take."""
    try:
        str(path).encode("utf-8")
        return True
    except UnicodeEncodeError:
        return False


def printable(path):
    """`path` for a message: undecodable bytes as \\xNN escapes."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


NOT_UTF8 = "file names that are not valid UTF-8 (rename them)"


def take(split, index):
    """The examples `index` of a split (arrays or `Files`), as the same kind of split."""
    return split.subset(index) if isinstance(split, Files) else tuple(a[index] for a in split)


def inputs(split, batch_size=256):
    """The inputs of a split as a tf.data of batches: files decoded as the loop decodes them."""
    from dlcli.core.lazy import tf

    if isinstance(split, Files):
        return tf.data.Dataset.from_tensor_slices(split.paths).map(split.decode, num_parallel_calls=tf.data.AUTOTUNE).batch(batch_size)
    return tf.data.Dataset.from_tensor_slices(split[0]).batch(batch_size)


def arrays(split, limit=None):
    """(inputs, targets) numpy arrays of a split, or of its first `limit` examples: what
    after-training reports and pictures read (file splits are decoded, so keep `limit` small)."""
    if not isinstance(split, Files):
        return tuple(a[:limit] for a in split)
    part = split.subset(np.arange(min(len(split), limit if limit is not None else len(split))))
    x = np.concatenate(list(inputs(part).as_numpy_iterator())) if len(part) else np.zeros((0,))
    return x, (x if part.inputs_as_targets else part.targets)


def targets(split):
    return split.targets if isinstance(split, Files) else split[1]


@contextlib.contextmanager
def naming_undecodable_files(*splits):
    """A decode failure in tf.data (one opaque "Graph execution error") becomes one line that
    names the file: the listed files of `splits` are decoded again, eagerly, to find it. The
    listing checks each image's header and end, so this is a file damaged inside."""
    from dlcli.core.lazy import tf

    try:
        yield
    except tf.errors.InvalidArgumentError:
        for split in splits:
            for path in split.paths if isinstance(split, Files) else ():
                try:
                    split.decode(tf.constant(path))
                except (tf.errors.OpError, ValueError) as e:
                    why = str(getattr(e, "message", e)).split("}}")[-1].split("[Op:")[0].strip().splitlines()[0][:120]
                    raise DlcliError(
                        f"{printable(path)} cannot be decoded ({why}): it is damaged inside, where the listing does not "
                        "look. Remove it, or let --set skip_bad=true decode every file at the start and skip such ones."
                    ) from None
        raise


def count(split):
    """The number of examples of a split: an (inputs, targets) pair or `Files`."""
    return len(split) if isinstance(split, Files) else len(split[0])


@dataclass
class Dataset:
    """What an example source gives: train and test examples, and what they mean."""

    train: object
    test: object
    class_names: list | None
    description: str
    val: object = None  # a validation split of the data's own (a val/ folder), else a holdout
    settings: dict = field(default_factory=dict)  # what the source chose from the data (image size), kept in the run config


@dataclass
class Table:
    """A table of raw cells read from a file; recipes pick columns (`sources.csv_table.numeric`)."""

    path: Path
    header: list
    rows: list
    description: str
    target: str | None = None  # the column a regression predicts when the user names none
    complete_rows: bool = False  # drop rows with a missing cell (Auto MPG, as its tutorial) rather than impute
    lines: list | None = None  # the file line where each row starts, for messages (else row i is line i + 2)


@dataclass
class Splits:
    """A recipe's data: each split is an (inputs, targets) pair of arrays, or `Files`.

    `kind`, `input_shape`, `class_names`, `feature_names`, `target` and `feature_kinds` are written to the run
    record (config.json), which is what `dlcli predict` and `evaluate` know of the data.
    """

    train: object
    val: object
    test: object
    input_shape: tuple
    source: str
    num_classes: int | None = None
    class_names: list | None = None
    preprocess: object = None  # a deterministic function of a batch of inputs, applied once before training
    info: dict = field(default_factory=dict)  # what else a recipe keeps for itself: stats, truth
    kind: str = ""  # images, text, table, series
    feature_names: list | None = None  # columns of a table, in the model's input order
    target: str | None = None  # what a regression predicts, by name
    feature_kinds: list | None = None  # per feature column, "number" or "category" (tables read as raw cells)


def is_classes(y):
    y = np.asarray(y)
    return y.ndim == 1 and np.issubdtype(y.dtype, np.integer)


def stratified_split(split, fraction, seed=0):
    """(rest, held out): a seeded, shuffled `fraction` of every class held out (at least one
    example of each class with two or more), so both parts hold every class."""
    y = np.asarray(targets(split))
    rng = np.random.default_rng(seed)
    classes, sizes = np.unique(y, return_counts=True)
    quota = sizes * fraction
    n = np.floor(quota).astype(int)  # largest remainders first, so the total is round(len * fraction)
    for i in np.argsort(-(quota - n), kind="stable")[: int(round(len(y) * fraction)) - n.sum()]:
        n[i] += 1
    if fraction > 0:
        for i in np.flatnonzero((n == 0) & (sizes > 1)):  # every class validated: taken from the largest share
            j = np.argmax(n)
            if n[j] > 1:
                n[i], n[j] = 1, n[j] - 1
    n = np.minimum(n, np.maximum(sizes - 1, 0))  # and every class trained on
    held = [rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, n)]
    held = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    rest = np.setdiff1d(np.arange(len(y)), held)
    return take(split, rest), take(split, held)


def holdout(train, fraction, seed=0):
    """Splits `fraction` of the training split (arrays or `Files`) off as validation data:
    stratified and shuffled for class labels, so every class is trained on and validated;
    the tail for other targets (regression values, series, kept in their order)."""
    if is_classes(targets(train)):
        return stratified_split(train, fraction, seed)
    x, y = train
    n_val = int(round(len(x) * fraction))
    if n_val == 0:
        return (x, y), (x[:0], y[:0])
    return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:])


def input_shape(split):
    """The shape of one input of a split (decoding one file for `Files`)."""
    if isinstance(split, Files):
        return tuple(int(d) for d in split.decode(split.paths[0]).shape) if len(split) else ()
    return split[0].shape[1:]
