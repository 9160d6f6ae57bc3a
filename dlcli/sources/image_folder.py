"""Folders of images, one subfolder per class (the `keras.utils.image_dataset_from_directory`
layout), with optional `train/` and `test/` subfolders; else a fixed 80/20 split."""

from collections import Counter
from pathlib import Path

import numpy as np

from dlcli.data import Dataset
from dlcli.errors import DlcliError
from dlcli.lazy import tf

NAME = "a folder of images in class-named subfolders (train/ test/ optional)"
KIND = "images"
EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif"}  # what tf.io.decode_image reads


def detect(path):
    path = Path(path)
    return path.is_dir() and any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir())


def describe(path):
    (x_train, y_train), (x_test, y_test), names = read(Path(path))
    return {
        "image_shape": list(x_train.shape[1:]),
        "classes": names,
        "splits": {
            split: {"examples": len(y), "per_class": {names[c]: n for c, n in sorted(Counter(y.tolist()).items())}}
            for split, y in (("train", y_train), ("test", y_test))
        },
    }


def load(path, config):
    train, test, names = read(Path(path))
    return Dataset(train=train, test=test, class_names=names, description=f"image folder {path}")


def image_files(folder):
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in EXTENSIONS)


def read_classes(root, class_names=None):
    """Reads root/<class>/* images; all images must share one size."""
    subfolders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    names = class_names or [p.name for p in subfolders]
    if len(names) < 2:
        raise DlcliError(f"image folder {root} needs at least two class subfolders; found {len(names)}.")
    paths, labels = [], []
    for label, name in enumerate(names):
        files = image_files(root / name) if (root / name).is_dir() else []
        if not files:
            raise DlcliError(f"class folder {root / name} holds no images ({', '.join(sorted(EXTENSIONS))}).")
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


def read(folder):
    """(train, test, class_names): the train/ and test/ subfolders if there are both, else a
    fixed 80/20 split of the class subfolders."""
    if (folder / "train").is_dir() and (folder / "test").is_dir():
        x_train, y_train, names = read_classes(folder / "train")
        x_test, y_test, _ = read_classes(folder / "test", class_names=names)
        if x_train.shape[1:] != x_test.shape[1:]:
            raise DlcliError(f"train and test images in {folder} differ in size.")
    else:
        x, y, names = read_classes(folder)
        order = np.random.default_rng(0).permutation(len(x))  # mixes the classes before splitting
        n_test = max(1, len(x) // 5)
        x_test, y_test, x_train, y_train = x[order[:n_test]], y[order[:n_test]], x[order[n_test:]], y[order[n_test:]]
    return (x_train, y_train), (x_test, y_test), names
