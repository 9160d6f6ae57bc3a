"""The shared image loaders: digits, IDX files, image folders, tensorflow-datasets."""

import numpy as np
import pytest

from dlcli import data
from dlcli.core.errors import DlcliError
from dlcli.data.sources import tfds as tfds_source
from recipes.cnn import Config
from tests.helpers import write_idx, write_idx_folder, write_image_folder, write_png


def test_digits_look_like_mnist_and_split_the_same_way_every_time():
    splits = data.load_images(Config(dataset="digits"))
    x_train, y_train = splits.train
    assert splits.input_shape == (28, 28, 1) and x_train.dtype == np.uint8
    assert len(x_train) + len(splits.val[0]) + len(splits.test[0]) == 1797
    assert splits.num_classes == 10 and set(np.unique(y_train)) == set(range(10))
    assert x_train.max() == 255 and x_train[:, :4].max() == 0  # centred with an empty border
    again = data.load_images(Config(dataset="digits"))
    np.testing.assert_array_equal(again.test[0], splits.test[0])


def test_validation_holdout_is_stratified_and_shuffled_for_classes_the_tail_otherwise():
    y = np.repeat([0, 1, 2], [30, 60, 10])  # sorted by class, as folders are read
    (x, ty), (vx, vy) = data.holdout((np.arange(100), y), 0.1)
    assert sorted(np.bincount(vy).tolist()) == [1, 3, 6] and set(ty) == {0, 1, 2}
    assert sorted([*x, *vx]) == list(range(100))
    assert list(vx) != list(range(90, 100))
    (x, _), (vx, _) = data.holdout((np.arange(10), np.arange(10.0)), 0.2)  # regression values
    assert list(x) == list(range(8)) and list(vx) == [8, 9]
    (x, _), (vx, _) = data.holdout((np.arange(10), np.arange(10)), 0.0)
    assert len(x) == 10 and len(vx) == 0


def test_idx_folder_round_trip(tmp_path):
    folder = write_idx_folder(tmp_path / "idx", n_train=50, n_test=20)
    splits = data.load_images(Config(data=str(folder), validation_split=0.2))
    assert splits.train[0].shape == (40, 28, 28, 1)
    assert splits.val[0].shape == (10, 28, 28, 1)
    assert splits.test[0].shape == (20, 28, 28, 1)
    assert splits.source.startswith("IDX files")


def test_idx_uncompressed_and_dotted_names_are_accepted(tmp_path):
    rng = np.random.default_rng(0)
    for stem in ("train-images.idx3-ubyte", "t10k-images.idx3-ubyte"):
        write_idx(tmp_path / stem, rng.integers(0, 255, (5, 28, 28)), compress=False)
    for stem in ("train-labels.idx1-ubyte", "t10k-labels.idx1-ubyte"):
        write_idx(tmp_path / stem, np.arange(5), compress=False)
    splits = data.load_images(Config(data=str(tmp_path), validation_split=0))
    assert len(splits.train[0]) == 5


def test_idx_wrong_magic_is_refused_with_the_file_name(tmp_path):
    folder = write_idx_folder(tmp_path)
    write_idx(folder / "train-images-idx3-ubyte.gz", np.zeros((60, 28, 28)), magic=2049)
    with pytest.raises(DlcliError, match=r"train-images-idx3-ubyte.gz is not a 3-d unsigned-byte IDX file: magic number 2049"):
        data.load_images(Config(data=str(folder)))


def test_idx_truncated_file_and_count_mismatch_are_refused(tmp_path):
    folder = write_idx_folder(tmp_path)
    path = folder / "t10k-labels-idx1-ubyte.gz"
    import gzip

    path.write_bytes(gzip.compress(gzip.decompress(path.read_bytes())[:-3]))
    with pytest.raises(DlcliError, match="truncated"):
        data.load_images(Config(data=str(folder)))
    write_idx(path, np.arange(7) % 10)
    with pytest.raises(DlcliError, match="holds 20 images but .* holds 7 labels"):
        data.load_images(Config(data=str(folder)))


def test_idx_missing_file_and_corrupt_gzip(tmp_path):
    folder = write_idx_folder(tmp_path)
    (folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DlcliError, match="lacks t10k-labels-idx1-ubyte"):
        data.load_images(Config(data=str(folder)))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DlcliError, match="cannot read IDX file"):
        data.load_images(Config(data=str(folder)))


def test_image_folder_with_class_subfolders(tmp_path):
    folder = write_image_folder(tmp_path / "pets", per_class=10)
    splits = data.load_images(Config(data=str(folder), validation_split=0))
    assert splits.class_names == ["cat", "dog"]
    assert splits.input_shape == (12, 12, 3)
    assert isinstance(splits.train, data.Files)  # listed, decoded in tf.data
    assert len(splits.train) == 16 and len(splits.test) == 4
    assert set(splits.train.targets) == {0, 1} and set(splits.test.targets) == {0, 1}


def test_image_folder_with_train_and_test(tmp_path):
    write_image_folder(tmp_path / "train", per_class=4)
    write_image_folder(tmp_path / "test", per_class=2)
    splits = data.load_images(Config(data=str(tmp_path), validation_split=0))
    assert len(splits.train) == 8 and len(splits.test) == 4


def test_image_folder_mixed_sizes_empty_classes_and_non_images(tmp_path):
    folder = write_image_folder(tmp_path / "a")
    write_png(folder / "cat" / "big.png", np.zeros((20, 30, 3)))
    splits = data.load_images(Config(data=str(folder)))
    assert splits.input_shape == (12, 12, 3)  # the most common size
    x, _ = data.arrays(splits.train)
    assert x.shape[1:] == (12, 12, 3)
    folder = write_image_folder(tmp_path / "b")
    (folder / "bird").mkdir()
    with pytest.raises(DlcliError, match=r"class folder\(s\) bird of .* hold no readable images"):
        data.load_images(Config(data=str(folder)))
    folder = write_image_folder(tmp_path / "c")
    (folder / "dog" / "notes.png").write_text("this is not a picture")
    with pytest.raises(DlcliError, match=r"notes.png is not a readable image.*skip_bad=true"):
        data.load_images(Config(data=str(folder)))
    splits = data.load_images(Config(data=str(folder), skip_bad=True))
    assert "1 skipped: unreadable image" in splits.source
    assert len(splits.train) + len(splits.val) + len(splits.test) == 10


def test_grey_and_colour_images_are_all_colour(tmp_path):
    folder = write_image_folder(tmp_path, channels=1)
    write_png(folder / "dog" / "colour.png", np.full((12, 12, 3), 200))
    splits = data.load_images(Config(data=str(folder), validation_split=0))
    assert splits.input_shape == (12, 12, 3)
    grey = write_image_folder(tmp_path / "grey", channels=1)
    assert data.load_images(Config(data=str(grey))).input_shape == (12, 12, 1)


def test_data_that_is_neither_idx_nor_image_folder(tmp_path):
    path = tmp_path / "file.txt"
    path.write_text("hello")
    with pytest.raises(DlcliError, match="not a format dlcli reads. Expected: a folder of MNIST-format IDX files"):
        data.load_images(Config(data=str(path)))


def test_check_dataset_names_the_choices(tmp_path):
    with pytest.raises(DlcliError, match="unknown dataset 'mnits' for recipe cnn. Available: mnist, fashion_mnist"):
        data.check_dataset(Config(dataset="mnits"), data.IMAGE_DATASETS, "cnn")
    with pytest.raises(DlcliError, match="--data path does not exist"):
        data.check_dataset(Config(data=str(tmp_path / "nope")), data.IMAGE_DATASETS, "cnn")


def test_tfds_path_with_mock_data(monkeypatch, tmp_path):
    import tensorflow_datasets as tfds

    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: True)
    with tfds.testing.mock_data(num_examples=12):
        splits = data.load_images(Config(dataset="mnist", data_dir=str(tmp_path), validation_split=0.25))
    assert splits.train[0].shape == (9, 28, 28, 1) and splits.train[0].dtype == np.uint8
    assert splits.test[0].shape == (12, 28, 28, 1)
    assert splits.num_classes == 10 and splits.source == "tensorflow-datasets mnist"


def test_tfds_offline_fails_fast_with_the_way_out(monkeypatch, tmp_path):
    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: False)
    with pytest.raises(DlcliError) as e:
        data.load_images(Config(dataset="fashion_mnist", data_dir=str(tmp_path)))
    message = str(e.value)
    assert "fashion_mnist" in message and "--dataset digits" in message and "--data PATH" in message
    assert "--data-dir" in message
