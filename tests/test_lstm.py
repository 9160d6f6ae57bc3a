"""The lstm recipe: aclImdb readers (folder and tarball), learning, a model that reads strings."""

import io
import tarfile

import keras
import pytest
import tensorflow as tf

from dlcli.core.errors import DlcliError
from dlcli.data.sources import aclimdb
from dlcli.models import config as config_lib
from dlcli.training import batches, loop, registry


def read_aclimdb(path):
    found = aclimdb.load(path, None)
    return found.train, found.test

lstm = registry.load("lstm")

REVIEWS = {
    "train/pos/0_9.txt": b"A wonderful film.<br />Loved it.",
    "train/pos/1_8.txt": b"Great acting and a moving story.",
    "train/neg/0_2.txt": b"Boring and dull.",
    "train/neg/1_1.txt": "Awful, na\u00efve script.".encode("latin-1"),  # not UTF-8
    "test/pos/0_10.txt": b"Superb.",
    "test/neg/0_3.txt": b"Tedious.",
    "train/unsup/0_0.txt": b"unlabelled, ignored",
}


def write_folder(root):
    for name, content in REVIEWS.items():
        path = root / "aclImdb" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    return root


def write_tarball(path):
    with tarfile.open(path, "w:gz") as tar:
        for name, content in REVIEWS.items():
            info = tarfile.TarInfo(f"aclImdb/{name}")
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
    return path


@pytest.mark.parametrize("layout", ["folder", "tarball"])
def test_aclimdb_is_read_from_a_folder_or_a_tarball(tmp_path, layout):
    path = write_folder(tmp_path) if layout == "folder" else write_tarball(tmp_path / "aclImdb_v1.tar.gz")
    (train_x, train_y), (test_x, test_y) = read_aclimdb(path)
    assert len(train_x) == 4 and list(train_y[:, 0]) == [1, 1, 0, 0]
    assert len(test_x) == 2 and "unlabelled" not in " ".join(train_x)
    assert "1 files not UTF-8" in aclimdb.load(path, None).description


def test_aclimdb_without_pos_and_neg_is_refused(tmp_path):
    (tmp_path / "train" / "pos").mkdir(parents=True)
    (tmp_path / "train" / "pos" / "0_9.txt").write_text("good")
    with pytest.raises(DlcliError, match="is not an aclImdb dataset: no reviews in train/neg, test/pos, test/neg"):
        read_aclimdb(tmp_path)


def test_a_corrupt_tarball_is_refused(tmp_path):
    path = tmp_path / "broken.tar.gz"
    path.write_bytes(b"\x1f\x8b not really gzip")
    with pytest.raises(DlcliError, match="cannot read .*broken.tar.gz as a tar archive"):
        read_aclimdb(path)


def test_lstm_learns_the_synthetic_corpus_and_saves_a_model_that_reads_text(tmp_path):
    config = config_lib.resolve(lstm.Config, "lstm", toml_values={**lstm.QUICK, "epochs": 3})
    final = loop.fit(lstm, config, lstm.load_data(config), tf.distribute.get_strategy(), tmp_path).metrics
    assert final["test"]["accuracy"] >= 0.9
    model = keras.saving.load_model(tmp_path / "model.keras")
    scores = model.predict(tf.constant(["great wonderful superb film", "awful boring dull film"]), verbose=0)
    assert scores[0, 0] > 0.5 > scores[1, 0]


def test_line_breaks_inside_reviews_do_not_break_the_saved_vocabulary(tmp_path):
    """Keras writes the vocabulary one token per line and reads it with splitlines()."""
    reviews = dict(REVIEWS)
    reviews["train/pos/5_9.txt"] = "great\u2028wonderful film\x85superb\x1cacting".encode()
    for name, content in reviews.items():
        path = tmp_path / "aclImdb" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
    config = config_lib.resolve(lstm.Config, "lstm", toml_values={**lstm.QUICK, "data": str(tmp_path), "epochs": 1, "batch_size": 2, "validation_split": 0.0})
    splits = lstm.load_data(config)
    assert all(len(text.splitlines()) <= 1 for text in splits.train[0])
    loop.fit(lstm, config, splits, tf.distribute.get_strategy(), tmp_path / "run")
    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.predict(tf.constant(["great film"]), verbose=0).shape == (1, 1)


def test_reviews_are_vectorized_once_before_training_and_the_raw_splits_stay_raw():
    config = config_lib.resolve(lstm.Config, "lstm", toml_values={**lstm.QUICK, "validation_split": 0.0})
    splits = lstm.load_data(config)
    inputs = batches.preprocessed(splits)
    assert inputs.preprocess is None and inputs.train[0].shape == (len(splits.train[0]), config.sequence_length)
    assert inputs.train[0].dtype.kind == "i" and len(inputs.val[0]) == 0
    first = splits.preprocess(tf.constant([splits.train[0][0]])).numpy()[0]
    assert (inputs.train[0][0] == first).all() and splits.train[0].dtype == object


@pytest.mark.parametrize("cell", ["gru", "rnn"])
def test_other_cells_stack_and_learn(cell, tmp_path):
    config = config_lib.resolve(lstm.Config, "lstm", toml_values={**lstm.QUICK, "cell": cell, "layers": 2, "epochs": 6})
    splits = lstm.load_data(config)
    model = lstm.build_model(config, splits)
    recurrent = [l for l in model.layers if isinstance(l, (keras.layers.GRU, keras.layers.SimpleRNN))]
    assert len(recurrent) == 2 and recurrent[0].return_sequences and not recurrent[1].return_sequences
    if cell == "gru":  # cuDNN-compatible: reset_after, no recurrent dropout
        assert all(l.cell.reset_after and l.cell.recurrent_dropout == 0 for l in recurrent)
    final = loop.fit(lstm, config, splits, tf.distribute.get_strategy(), tmp_path).metrics
    assert final["test"]["accuracy"] >= 0.8, final["test"]


def test_the_pytorch_imdb_model_is_a_set_of_overrides():
    sets = {"cell": "rnn", "layers": "2", "bidirectional": "true", "units": "256", "embedding_dim": "100"}
    config = config_lib.resolve(lstm.Config, "lstm", toml_values=lstm.QUICK, sets=sets)
    model = lstm.build_model(config, lstm.load_data(config))
    wrappers = [l for l in model.layers if isinstance(l, keras.layers.Bidirectional)]
    assert len(wrappers) == 2 and wrappers[-1].output.shape[-1] == 512
    assert isinstance(wrappers[0].forward_layer, keras.layers.SimpleRNN)
    assert lstm.Config().cell == "lstm" and lstm.Config().layers == 1  # the default model is unchanged
