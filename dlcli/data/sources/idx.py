"""IDX files, the original MNIST / Fashion-MNIST distribution format: four (optionally gzipped)
files in one folder, `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`, `t10k-...`."""

import gzip
import math
from collections import Counter
from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError
from dlcli.data.splits import Dataset

NAME = "a folder of MNIST-format IDX files (train-images-idx3-ubyte[.gz], ...)"
KIND = "images"
FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
MAGIC = {3: 2051, 1: 2049}  # ndim -> magic number of an unsigned-byte IDX file
MAX_BYTES = 8 << 30  # 8 GiB: far past any IDX dataset, short of what a forged header could ask for


def detect(path):
    return Path(path).is_dir() and find_file(path, FILES["train"][0]) is not None


def describe(path):
    splits = read_folder(path)
    return {
        "image_shape": list(splits["train"][0].shape[1:]),
        "classes": sorted(int(c) for c in set(splits["train"][1]) | set(splits["test"][1])),
        "splits": {
            name: {"examples": len(y), "per_class": dict(sorted(Counter(int(c) for c in y).items()))}
            for name, (_, y) in splits.items()
        },
    }


def load(path, config):
    splits = read_folder(path)
    train, test = splits["train"], splits["test"]
    top = max(int(train[1].max(initial=0)), int(test[1].max(initial=0)))
    return Dataset(train=train, test=test, class_names=[str(i) for i in range(top + 1)], description=f"IDX files in {path}")


def find_file(folder, stem):
    """`stem` or `stem.gz` in `folder` (also spelt `train-images.idx3-ubyte`), or None."""
    dotted = stem.replace("-idx", ".idx")
    for name in (stem, stem + ".gz", dotted, dotted + ".gz"):
        if (Path(folder) / name).is_file():
            return Path(folder) / name
    return None


def read(path, ndim):
    """Reads an unsigned-byte IDX file with `ndim` dimensions, checking magic number and size.
    Reads no more than the header declares (and refuses a declaration past MAX_BYTES), so a
    forged header or a decompression bomb cannot exhaust memory."""
    opener = gzip.open if path.suffix == ".gz" else open
    header = 4 + 4 * ndim
    try:
        with opener(path, "rb") as f:
            head = f.read(header)
            magic = int.from_bytes(head[:4], "big") if len(head) >= 4 else None
            if magic != MAGIC[ndim]:
                raise DlcliError(f"{path} is not a {ndim}-d unsigned-byte IDX file: magic number {magic}, expected {MAGIC[ndim]}.")
            if len(head) < header:
                raise DlcliError(f"{path} is truncated: its header is cut short.")
            shape = tuple(int.from_bytes(head[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
            size = math.prod(shape)  # Python ints: a forged header cannot overflow this
            if size > MAX_BYTES:
                raise DlcliError(f"{path} declares {shape} = {size} bytes, more than dlcli reads ({MAX_BYTES}).")
            raw = f.read(size + 1)
    except (OSError, EOFError) as e:
        raise DlcliError(f"cannot read IDX file {path}: {e}") from None
    if len(raw) != size:
        raise DlcliError(f"{path} is truncated or padded: header says {shape} = {size} bytes, file holds {'more' if len(raw) > size else len(raw)}.")
    return np.frombuffer(raw, np.uint8).reshape(shape)


def read_folder(folder):
    """Reads the four MNIST-format files of `folder` into {'train': (x, y), 'test': (x, y)}."""
    out = {}
    for split, (images_stem, labels_stem) in FILES.items():
        images_path, labels_path = find_file(folder, images_stem), find_file(folder, labels_stem)
        if images_path is None or labels_path is None:
            missing = images_stem if images_path is None else labels_stem
            raise DlcliError(f"IDX folder {folder} lacks {missing}[.gz]; it needs the four MNIST-format files.")
        x, y = read(images_path, 3), read(labels_path, 1)
        if len(x) == 0:  # a well-formed header of 0 images: say so, not "batch_size is larger than 0 examples"
            raise DlcliError(f"{images_path} holds 0 images: the {split} split needs at least one. Use the full file.")
        if 0 in x.shape[1:]:
            raise DlcliError(f"{images_path} holds images of {x.shape[1]}x{x.shape[2]} pixels: nothing to see. Use the full file.")
        if len(x) != len(y):
            raise DlcliError(f"{images_path} holds {len(x)} images but {labels_path} holds {len(y)} labels.")
        out[split] = (x[..., None], y.astype(np.int64))
    if out["train"][0].shape[1:] != out["test"][0].shape[1:]:
        raise DlcliError(f"IDX train and test images in {folder} differ in shape.")
    return out


# MD5 of the decompressed train-labels file, as published with each dataset: recognises a
# local copy by its content (gz or not, whatever the folder is called).
KNOWN_TRAIN_LABELS = {
    "a25bea736e30d166cdddb491f175f624": "mnist",
    "9018921c3c673c538a1fc5bad174d6f9": "fashion_mnist",
}


def recognise(path):
    """The dataset name of a local IDX folder ('mnist', 'fashion_mnist'), or None.

    Read from the train labels' content, so a renamed folder is still recognised and a folder
    merely named `fashion_mnist` is not. Unreadable files are left for the loader to report.
    """
    import hashlib

    labels = find_file(path, FILES["train"][1]) if Path(path).is_dir() else None
    if labels is None:
        return None
    try:
        with (gzip.open if labels.suffix == ".gz" else open)(labels, "rb") as f:
            return KNOWN_TRAIN_LABELS.get(hashlib.md5(f.read(1 << 20)).hexdigest())
    except (OSError, EOFError):
        return None
