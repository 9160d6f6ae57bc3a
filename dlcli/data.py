"""Datasets every image recipe shares: tfds, scikit-learn's digits, IDX files, image folders.

Every loader returns a `Splits` of in-memory numpy arrays; `dlcli.loop` turns them into
tf.data pipelines. The datasets these recipes use fit in memory, and arrays let the loop cut
exact, reproducible global batches for any number of replicas and resume mid-epoch.
"""

import csv
import gzip
import io
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from dlcli.errors import DlcliError
from dlcli.lazy import tf

IMAGE_DATASETS = {
    "mnist": "MNIST handwritten digits, 28x28 grey (tensorflow-datasets; downloads once)",
    "fashion_mnist": "Fashion-MNIST clothes, 28x28 grey (tensorflow-datasets; downloads once)",
    "cifar10": "CIFAR-10 objects, 32x32 colour (tensorflow-datasets; downloads once)",
    "digits": "scikit-learn's 1,797 8x8 digits, upscaled to 28x28 (bundled, works offline)",
}
IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_MAGIC = {3: 2051, 1: 2049}  # ndim -> magic number of an unsigned-byte IDX file
# MD5 of the decompressed train-labels file, as published with each dataset: recognises a
# local copy by its content (gz or not, whatever the folder is called).
KNOWN_TRAIN_LABELS = {
    "a25bea736e30d166cdddb491f175f624": "mnist",
    "9018921c3c673c538a1fc5bad174d6f9": "fashion_mnist",
}


@dataclass
class Splits:
    """A dataset as arrays: each split is an (inputs, targets) pair."""

    train: tuple
    val: tuple
    test: tuple
    input_shape: tuple
    source: str
    num_classes: int | None = None
    class_names: list | None = None
    preprocess: object = None  # a deterministic function of a batch of inputs, applied once before training
    info: dict = field(default_factory=dict)  # what else a recipe wants to keep: stats, names, truth


def holdout(train, fraction):
    """Splits the last `fraction` of the (x, y) training pair off as validation data."""
    x, y = train
    n_val = int(round(len(x) * fraction))
    if n_val == 0:
        return (x, y), (x[:0], y[:0])
    return (x[:-n_val], y[:-n_val]), (x[-n_val:], y[-n_val:])


def check_dataset(config, datasets, recipe):
    """Fails early, before TensorFlow loads, on a dataset name or path that cannot work."""
    if config.data is not None:
        if not Path(config.data).exists():
            raise DlcliError(f"--data path does not exist: {config.data}")
    elif config.dataset not in datasets:
        raise DlcliError(
            f"unknown dataset '{config.dataset}' for recipe {recipe}. "
            f"Available: {', '.join(datasets)}; or --data PATH for local files."
        )


# ## Image classification: one entry point for every image recipe


def load_images(config):
    """The image-classification splits for `config.data`, else `config.dataset`."""
    if config.data is not None:
        path = Path(config.data)
        if path.is_dir() and find_idx(path, IDX_FILES["train"][0]) is not None:
            idx = read_idx_folder(path)
            train, test, source = idx["train"], idx["test"], f"IDX files in {path}"
            class_names = [str(i) for i in range(int(max(train[1].max(), test[1].max())) + 1)]
        elif path.is_dir():
            train, test, class_names = read_image_folder(path)
            source = f"image folder {path}"
        else:
            raise DlcliError(
                f"--data {path} is neither a folder of MNIST-format IDX files "
                "(train-images-idx3-ubyte[.gz], ...) nor a folder of class-named image subfolders."
            )
    elif config.dataset == "digits":
        train, test = load_digits()
        source, class_names = "scikit-learn digits (upscaled to 28x28)", [str(i) for i in range(10)]
    else:
        train, test, class_names = load_tfds_images(config.dataset, config.data_dir)
        source = f"tensorflow-datasets {config.dataset}"
    num_classes = len(class_names)
    for split, (_, y) in (("train", train), ("test", test)):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DlcliError(f"{split} labels of {source} must lie in 0..{num_classes - 1}; found {y.min()}..{y.max()}.")
    train, val = holdout(train, config.validation_split)
    return Splits(
        train=train, val=val, test=test, input_shape=train[0].shape[1:],
        source=source, num_classes=num_classes, class_names=class_names,
    )


def load_digits():
    """scikit-learn's digits as MNIST-like 28x28 uint8 images: a fixed 80/20 train/test split.

    The 8x8 images are zoomed to 20x20 and centred in 28x28, as MNIST centres its digits,
    so a model trained on digits reads MNIST-style pictures too.
    """
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images = zoom(bunch.images, (1, 2.5, 2.5), order=1).clip(0, 16)
    images = np.pad(images, ((0, 0), (4, 4), (4, 4)))
    x = np.round(images * (255 / 16)).astype(np.uint8)[..., None]
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))  # fixed: the test split never changes
    n_test = len(x) // 5
    test, train = order[:n_test], order[n_test:]
    return (x[train], y[train]), (x[test], y[test])


# ## IDX files (the original MNIST / Fashion-MNIST distribution format)


def find_idx(folder, stem):
    """`stem` or `stem.gz` in `folder` (also spelt `train-images.idx3-ubyte`), or None."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def read_idx(path, ndim):
    """Reads an unsigned-byte IDX file with `ndim` dimensions, checking magic number and size."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError) as e:
        raise DlcliError(f"cannot read IDX file {path}: {e}") from None
    header = 4 + 4 * ndim
    magic = int.from_bytes(raw[:4], "big") if len(raw) >= 4 else None
    if magic != IDX_MAGIC[ndim]:
        raise DlcliError(
            f"{path} is not a {ndim}-d unsigned-byte IDX file: magic number {magic}, expected {IDX_MAGIC[ndim]}."
        )
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    size = int(np.prod(shape))
    if len(raw) != header + size:
        raise DlcliError(f"{path} is truncated or padded: header says {shape} = {size} bytes, file holds {len(raw) - header}.")
    return np.frombuffer(raw, np.uint8, offset=header).reshape(shape)


def read_idx_folder(folder):
    """Reads the four MNIST-format files of `folder` into {'train': (x, y), 'test': (x, y)}."""
    out = {}
    for split, (images_stem, labels_stem) in IDX_FILES.items():
        images_path, labels_path = find_idx(folder, images_stem), find_idx(folder, labels_stem)
        if images_path is None or labels_path is None:
            missing = images_stem if images_path is None else labels_stem
            raise DlcliError(f"IDX folder {folder} lacks {missing}[.gz]; it needs the four MNIST-format files.")
        x, y = read_idx(images_path, 3), read_idx(labels_path, 1)
        if len(x) != len(y):
            raise DlcliError(f"{images_path} holds {len(x)} images but {labels_path} holds {len(y)} labels.")
        out[split] = (x[..., None], y.astype(np.int64))
    if out["train"][0].shape[1:] != out["test"][0].shape[1:]:
        raise DlcliError(f"IDX train and test images in {folder} differ in shape.")
    return out


def recognise(path):
    """The dataset name of a local IDX folder ('mnist', 'fashion_mnist'), or None.

    Read from the train labels' content, so a renamed folder is still recognised and a folder
    merely named `fashion_mnist` is not. Unreadable files are left for the loader to report.
    """
    import hashlib

    labels = find_idx(path, IDX_FILES["train"][1]) if Path(path).is_dir() else None
    if labels is None:
        return None
    try:
        with (gzip.open if labels.suffix == ".gz" else open)(labels, "rb") as f:
            return KNOWN_TRAIN_LABELS.get(hashlib.md5(f.read()).hexdigest())
    except (OSError, EOFError):
        return None


# ## Folders of images, one subfolder per class


def _image_files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)


def _read_class_folders(root, class_names=None):
    """Reads root/<class>/* images; all images must share one size."""
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = class_names or [p.name for p in subfolders]
    if len(names) < 2:
        raise DlcliError(f"image folder {root} needs at least two class subfolders; found {len(names)}.")
    paths, labels = [], []
    for label, name in enumerate(names):
        files = _image_files(root / name) if (root / name).is_dir() else []
        if not files:
            raise DlcliError(f"class folder {root / name} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}).")
        paths += files
        labels += [label] * len(files)
    images, first_shape = [], None
    for path in paths:
        try:
            image = tf.io.decode_image(tf.io.read_file(str(path)), expand_animations=False).numpy()
        except tf.errors.InvalidArgumentError:
            raise DlcliError(f"{path} is not a readable image.") from None
        if first_shape is None:
            first_shape = image.shape
        if image.shape[:2] != first_shape[:2]:
            raise DlcliError(
                f"{path} is {image.shape[1]}x{image.shape[0]} but {paths[0]} is "
                f"{first_shape[1]}x{first_shape[0]}; resize the images to one size."
            )
        if image.shape[2] != first_shape[2]:
            # Grey and colour pictures mixed: convert all to the first picture's channel count.
            image = image[..., :3] if first_shape[2] == 3 else image[..., :1]
            image = np.repeat(image, 3, axis=2) if image.shape[2] < first_shape[2] else image
        images.append(image)
    return np.stack(images), np.array(labels, np.int64), names


def read_image_folder(folder):
    """(train, test, class_names) of an image folder: its train/ and test/ subfolders if it
    has them, else a fixed 80/20 split of its class subfolders."""
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        x_train, y_train, names = _read_class_folders(folder / "train")
        x_test, y_test, _ = _read_class_folders(folder / "test", class_names=names)
        if x_train.shape[1:] != x_test.shape[1:]:
            raise DlcliError(f"train and test images in {folder} differ in size.")
    else:
        x, y, names = _read_class_folders(folder)
        order = np.random.default_rng(0).permutation(len(x))  # mixes the classes before splitting
        n_test = max(1, len(x) // 5)
        x_test, y_test, x_train, y_train = x[order[:n_test]], y[order[:n_test]], x[order[n_test:]], y[order[n_test:]]
    return (x_train, y_train), (x_test, y_test), names


# ## tensorflow-datasets, with an offline failure that says what to do


def network_available(host="storage.googleapis.com", port=443, timeout=3.0):
    """Whether the dataset servers can be reached: a quick probe instead of minutes of retries."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def tfds_builder(name, data_dir):
    """A prepared tfds builder for `name`, downloading it first when the network allows."""
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if builder.is_prepared():
        return builder
    where = data_dir or "the default tfds data dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    offline = (
        f"dataset '{name}' is not prepared in {where} and cannot be downloaded (no network). "
        "Use --dataset digits (bundled), --data PATH (local files, e.g. MNIST IDX files), "
        "or --data-dir DIR holding a copy prepared on a machine with network."
    )
    if not network_available():
        raise DlcliError(offline)
    try:
        builder.download_and_prepare()
    except Exception as e:  # tfds raises many kinds (requests, OSError, DownloadError) for one cause
        raise DlcliError(f"downloading '{name}' failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}). {offline}") from None
    return builder


def load_tfds_images(name, data_dir):
    """(train, test, class_names) of a tfds image-classification dataset, as uint8 arrays."""
    builder = tfds_builder(name, data_dir)
    train, test = (tfds_arrays(builder, split) for split in ("train", "test"))
    return train, test, builder.info.features["label"].names


def tfds_arrays(builder, split):
    """A supervised tfds split as (inputs, labels) numpy arrays, read in large batches."""
    import tensorflow_datasets as tfds

    dataset = builder.as_dataset(split=split, as_supervised=True).batch(10_000)
    parts = list(tfds.as_numpy(dataset))
    if not parts:
        raise DlcliError(f"the {split} split of '{builder.name}' is empty.")
    x, y = (np.concatenate(column) for column in zip(*parts))
    return x, y.astype(np.int64)


def download(url, filename, offline_hint):
    """Downloads `url` once into the Keras cache; offline, fails at once with `offline_hint`."""
    from dlcli.lazy import keras

    cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets" / filename
    if cached.is_file():
        return cached
    host = urlparse(url).hostname
    if not network_available(host, 443 if url.startswith("https") else 80):
        raise DlcliError(f"cannot download {filename} from {host} (no network). {offline_hint}")
    try:
        return Path(keras.utils.get_file(filename, url))
    except Exception as e:
        raise DlcliError(f"downloading {url} failed ({type(e).__name__}). {offline_hint}") from None


# ## CSV files


MISSING = {"", "na", "nan", "null", "none", "?"}


def read_csv(path):
    """(header, rows) of a CSV file whose first row names the columns."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DlcliError(f"{path} is not UTF-8 text; save it as UTF-8 CSV.") from None
    except OSError as e:
        raise DlcliError(f"cannot read {path}: {e.strerror}") from None
    try:
        rows = [row for row in csv.reader(io.StringIO(text)) if any(cell.strip() for cell in row)]
    except csv.Error as e:
        raise DlcliError(f"{path} is not valid CSV: {e}") from None
    if len(rows) < 2:
        raise DlcliError(f"{path} needs a header row and at least one data row.")
    return [name.strip() for name in rows[0]], rows[1:]


def csv_columns(path, names):
    """The named CSV columns as a float64 array (rows, columns), and the number of rows dropped.

    Rows with a missing cell (empty, NA, NaN, null, ?) are dropped and counted; any other
    cell that is not a number is an error naming its line and column.
    """
    header, rows = read_csv(path)
    for name in names:
        if name not in header:
            raise DlcliError(f"{path} has no column '{name}'. Its columns: {', '.join(header)}.")
    index = [header.index(name) for name in names]
    values, dropped = [], 0
    for line, row in enumerate(rows, start=2):
        cells = [row[i].strip() if i < len(row) else "" for i in index]
        if any(cell.lower() in MISSING for cell in cells):
            dropped += 1
            continue
        try:
            values.append([float(cell) for cell in cells])
        except ValueError:
            bad = next(n for n, c in zip(names, cells) if not _is_number(c))
            raise DlcliError(
                f"{path} line {line}: column '{bad}' holds {cells[names.index(bad)]!r}, not a number. "
                "Choose numeric columns (--set columns=a,b,c) or clean the file."
            ) from None
    if not values:
        raise DlcliError(f"{path}: no complete numeric rows in columns {', '.join(names)}.")
    return np.array(values, np.float64), dropped


def _is_number(text):
    try:
        float(text)
        return True
    except ValueError:
        return False
