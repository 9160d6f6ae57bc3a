"""Datasets fetched by name: tensorflow-datasets builders, and plain files downloaded once into
the Keras cache. Offline, each fails at once with one line that says what to do instead."""

import os
import socket
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

import dlcli.data.sources.auto_mpg as auto_mpg
from dlcli.core.errors import DlcliError
from dlcli.core.lazy import import_tensorflow

# Plain-file downloads (not tensorflow-datasets): name -> (url, file name in the Keras cache)
DOWNLOADS = {"auto_mpg": (auto_mpg.URL, auto_mpg.FILENAME)}


def network_available(host="storage.googleapis.com", port=443, timeout=3.0):
    """Whether the dataset servers can be reached: a quick probe instead of minutes of retries."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _tfds():
    """tensorflow-datasets, imported after TensorFlow's quiet start (it imports TensorFlow)."""
    import_tensorflow()
    import tensorflow_datasets

    return tensorflow_datasets


def is_prepared(name, data_dir):
    return _tfds().builder(name, data_dir=data_dir).is_prepared()


def is_tfds_name(name):
    """Whether tensorflow-datasets has a builder called `name`."""
    tfds = _tfds()
    try:
        tfds.builder_cls(name)  # no network, unlike tfds.list_builders()
        return True
    except tfds.core.registered.DatasetNotFoundError:
        return False


def builder(name, data_dir):
    """A prepared tfds builder for `name`, downloading it first when the network allows."""
    tfds = _tfds()
    found = tfds.builder(name, data_dir=data_dir)
    if found.is_prepared():
        return found
    where = data_dir or "the default tfds data dir (~/tensorflow_datasets or $TFDS_DATA_DIR)"
    offline = (
        f"dataset '{name}' is not prepared in {where} and cannot be downloaded (no network). "
        "Use --dataset digits (bundled), --data PATH (local files, e.g. MNIST IDX files), "
        "or --data-dir DIR holding a copy prepared on a machine with network."
    )
    if not network_available():
        raise DlcliError(offline)
    try:
        found.download_and_prepare()
    except Exception as e:  # tfds raises many kinds (requests, OSError, DownloadError) for one cause
        raise DlcliError(f"downloading '{name}' failed ({type(e).__name__}: {str(e).splitlines()[0][:200]}). {offline}") from None
    return found


def arrays(found, split):
    """A supervised tfds split as (inputs, labels) numpy arrays, read in large batches."""
    tfds = _tfds()
    dataset = found.as_dataset(split=split, as_supervised=True).batch(10_000)
    parts = list(tfds.as_numpy(dataset))
    if not parts:
        raise DlcliError(f"the {split} split of '{found.name}' is empty.")
    x, y = (np.concatenate(column) for column in zip(*parts))
    return x, y.astype(np.int64)


def load_images(name, data_dir):
    """(train, test, class_names) of a tfds image-classification dataset, as uint8 arrays."""
    found = builder(name, data_dir)
    train, test = (arrays(found, split) for split in ("train", "test"))
    return train, test, found.info.features["label"].names


def keras_cache():
    """Where keras.utils.get_file keeps downloads: $KERAS_HOME/datasets, else ~/.keras/datasets."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser() / "datasets"


def download(name, offline_hint):
    """Downloads the plain file of dataset `name` once into the Keras cache; offline, fails at
    once with `offline_hint`."""
    from dlcli.core.lazy import keras

    url, filename = DOWNLOADS[name]
    cached = keras_cache() / filename
    if cached.is_file():
        return cached
    host = urlparse(url).hostname
    if not network_available(host, 443 if url.startswith("https") else 80):
        raise DlcliError(f"cannot download {filename} from {host} (no network). {offline_hint}")
    try:
        return Path(keras.utils.get_file(filename, url))
    except Exception as e:
        raise DlcliError(f"downloading {url} failed ({type(e).__name__}). {offline_hint}") from None
