"""`dlcli data list|download|info`."""

import json

from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.data.sources import tfds as tfds_source
from tests.helpers import write_idx_folder, write_image_folder

runner = CliRunner()


def info(path):
    result = runner.invoke(app, ["data", "info", str(path), "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_info_on_the_real_mnist_and_imdb(shared_data):
    mnist = info(shared_data / "mnist")
    assert mnist["splits"]["train"]["examples"] == 60000 and mnist["splits"]["test"]["examples"] == 10000
    assert mnist["classes"] == list(range(10)) and mnist["image_shape"] == [28, 28, 1]
    assert mnist["splits"]["test"]["per_class"]["1"] == 1135
    imdb = info(shared_data / "imdb")
    assert imdb["splits"] == {
        "train": {"examples": 25000, "pos": 12500, "neg": 12500},
        "test": {"examples": 25000, "pos": 12500, "neg": 12500},
    }


def test_info_on_small_local_data(tmp_path):
    assert info(write_idx_folder(tmp_path / "idx", n_train=30, n_test=10))["splits"]["train"]["examples"] == 30
    folder = info(write_image_folder(tmp_path / "pets", per_class=5))
    assert folder["classes"] == ["cat", "dog"] and folder["image_shape"] == [12, 12, 3]
    csv = tmp_path / "t.csv"
    csv.write_text("a,b,name\n1,2,x\n3,,y\n")
    facts = info(csv)
    assert facts["rows"] == 2 and facts["numeric_columns"] == ["a", "b"] and facts["rows_with_missing_values"] == 1
    assert facts["column_types"]["name"].startswith("text (2 distinct") and facts["blank_cells"] == {"b": 1}


def test_info_and_download_refuse_bad_input(tmp_path, monkeypatch):
    result = runner.invoke(app, ["data", "info", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not found" in result.stderr
    result = runner.invoke(app, ["data", "download", "imagenet"])
    assert result.exit_code == 2 and "unknown dataset 'imagenet'" in result.stderr
    monkeypatch.setattr(tfds_source, "network_available", lambda *a, **k: False)
    result = runner.invoke(app, ["data", "download", "mnist", "--data-dir", str(tmp_path / "tfds")])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1
    assert "cannot be downloaded (no network)" in result.stderr


def test_list_names_every_recipe_dataset(tmp_path):
    result = runner.invoke(app, ["data", "list", "--data-dir", str(tmp_path), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert {r["recipe"] for r in rows if r["dataset"] == "digits"} == {"cnn", "softmax", "rnn", "autoencoder"}
    assert next(r for r in rows if r["dataset"] == "mnist")["here"].startswith("not downloaded")
