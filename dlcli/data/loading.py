"""Where a recipe's data comes from: a local path read by the source that recognises it, or a
named reference dataset (scikit-learn's bundled digits, tensorflow-datasets).
"""

from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError
from dlcli.data.splits import Files, Splits, arrays, holdout, input_shape, naming_undecodable_files, targets
from dlcli.runs import remote

IMAGE_DATASETS = {
    "mnist": "MNIST handwritten digits, 28x28 grey (tensorflow-datasets; downloads once)",
    "fashion_mnist": "Fashion-MNIST clothes, 28x28 grey (tensorflow-datasets; downloads once)",
    "cifar10": "CIFAR-10 objects, 32x32 colour (tensorflow-datasets; downloads once)",
    "digits": "scikit-learn's 1,797 8x8 digits, upscaled to 28x28 (bundled, works offline)",
}


def check_dataset(config, datasets, recipe):
    """Fails early, before TensorFlow loads, on a dataset name or path that cannot work."""
    if config.data is not None:
        if remote.is_remote(config.data):
            remote.local_data(config.data)  # checked and copied into the cache now, before TensorFlow builds anything
        elif not Path(config.data).exists():
            raise DlcliError(f"--data path does not exist: {config.data}")
    elif config.dataset not in datasets:
        raise DlcliError(
            f"unknown dataset '{config.dataset}' for recipe {recipe}. "
            f"Available: {', '.join(datasets)}; or --data PATH for local files."
        )


def load_local(config, kinds):
    """The `Dataset` or `Table` of `config.data`, read by the source that recognises it."""
    import dlcli.data.sources as sources  # not `from dlcli.data import`: the package imports this module

    path = remote.local_data(config.data)  # a gs:// URL is read from its copy in the cache
    return sources.find(str(path), kinds).load(path, config)


# ## Image classification: one entry point for every image recipe


def load_images(config):
    """The image-classification splits for `config.data`, else `config.dataset`."""
    val = None
    if config.data is not None:
        found = load_local(config, {"images"})
        train, test, class_names, source, val = found.train, found.test, found.class_names, found.description, found.val
        for key, value in found.settings.items():  # kept in the run config: evaluate decodes the same way
            if hasattr(config, key):
                setattr(config, key, value)
    elif config.dataset == "digits":
        train, test = load_digits()
        source, class_names = "scikit-learn digits (upscaled to 28x28)", [str(i) for i in range(10)]
    else:
        from dlcli.data.sources import tfds

        train, test, class_names = tfds.load_images(config.dataset, config.data_dir)
        source = f"tensorflow-datasets {config.dataset}"
    num_classes = len(class_names)
    for split, y in (("train", targets(train)), ("test", targets(test))):
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise DlcliError(f"{split} labels of {source} must lie in 0..{num_classes - 1}; found {y.min()}..{y.max()}.")
    if val is None:
        train, val = holdout(train, config.validation_split)
    if getattr(config, "cache", "") == "memory" and isinstance(train, Files):  # decoded once, in parallel
        with naming_undecodable_files(train, val, test):
            train, val, test = [arrays(split) if len(split) else (np.zeros((0, *input_shape(train)), np.uint8), split.targets) for split in (train, val, test)]
        source += "; decoded into memory (cache=memory)"
    return Splits(
        train=train, val=val, test=test, input_shape=input_shape(train), source=source,
        num_classes=num_classes, class_names=class_names, kind="images",
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
