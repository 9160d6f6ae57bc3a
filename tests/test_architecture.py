"""The seams other work plugs into: the source table, the recipe contract, the run record,
file-backed examples in the loop, epoch-end hooks, and a quiet TensorFlow start."""

import json
import types
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from typer.testing import CliRunner

from dlcli import data
from dlcli.cli.app import app
from dlcli.core.errors import DlcliError
from dlcli.data import sources
from dlcli.runs.record import DataSpec, Run, RunRecord
from dlcli.training import loop, registry
from recipes.cnn import Config
from tests.helpers import write_png

runner = CliRunner()


def npz_source():
    """A new format in one small module: images and labels in one .npz file."""
    module = types.ModuleType("npz_images")
    module.NAME, module.KIND = "a .npz file of images and labels", "images"
    module.detect = lambda path: Path(path).suffix == ".npz"
    module.describe = lambda path: {"examples": len(np.load(path)["y"])}

    def load(path, config):
        arrays = np.load(path)
        x, y = arrays["x"], arrays["y"]
        return data.Dataset(train=(x[:80], y[:80]), test=(x[80:], y[80:]), class_names=["a", "b"], description=f"npz {path}")

    module.load = load
    return module


def test_a_source_in_the_table_is_found_by_train_and_data_info(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "SOURCES", [npz_source(), *sources.SOURCES])
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 100)
    np.savez(tmp_path / "pets.npz", x=(rng.random((100, 8, 8, 1)) * 100 + 100 * y[:, None, None, None]).astype(np.uint8), y=y)
    result = runner.invoke(app, ["data", "info", str(tmp_path / "pets.npz"), "--json"])
    assert result.exit_code == 0, result.output
    facts = json.loads(result.stdout)
    assert facts["format"] == "a .npz file of images and labels" and facts["examples"] == 100
    assert set(facts["read_by"]) == {"cnn", "softmax", "rnn", "autoencoder"}
    run_dir = tmp_path / "run"
    result = runner.invoke(app, ["train", "softmax", "--data", str(tmp_path / "pets.npz"), "--epochs", "2", "--batch-size", "16", "-o", str(run_dir), "--json"])
    assert result.exit_code == 0, result.output
    record = Run(run_dir).record
    assert record.data.source == f"npz {tmp_path / 'pets.npz'}" and record.data.class_names == ["a", "b"]
    # A source of another kind is refused for this recipe, naming what it reads.
    with pytest.raises(DlcliError, match="is a .npz file of images and labels, not data this recipe reads. Expected: aclImdb"):
        data.load_local(Config(data=str(tmp_path / "pets.npz")), {"text"})


def test_a_path_no_source_reads_is_one_line_listing_the_formats(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(DlcliError, match="is not a format dlcli reads. Expected: .*IDX.*; .*aclImdb.*; .*images.*CSV.*Auto MPG"):
        sources.find(tmp_path / "notes.txt")


def complete_recipe(**changes):
    cnn = registry.load("cnn")
    module = types.ModuleType("recipes.fake")
    for name in (*registry.REQUIRED, "after_training"):
        if hasattr(cnn, name):
            setattr(module, name, getattr(cnn, name))
    for name, value in changes.items():
        if value is None:
            delattr(module, name)
        else:
            setattr(module, name, value)
    return module


def test_every_recipe_meets_the_contract_and_a_broken_one_is_named():
    for name in registry.recipe_names():
        registry.check_contract(name, registry.load(name))
    registry.check_contract("fake", complete_recipe())
    with pytest.raises(DlcliError, match="recipe 'fake' is incomplete: it lacks describe"):
        registry.check_contract("fake", complete_recipe(describe=None))
    with pytest.raises(DlcliError, match=r"read_inputs takes \(inputs\), not \(record, inputs\)"):
        registry.check_contract("fake", complete_recipe(read_inputs=lambda inputs: None))
    with pytest.raises(DlcliError, match=r"after_training takes \(config\), not \(config, splits, model, run_dir\)"):
        registry.check_contract("fake", complete_recipe(after_training=lambda config: None))


def test_docs_recipe_template_matches_the_contract():
    """The architecture page's "Adding a recipe" template names every required attribute and hook with the
    Protocol's parameters, and each optional hook."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    template = page.split("## Adding a recipe", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    for name in registry.REQUIRED_ATTRIBUTES:
        assert f"\n{name} = " in template or f"class {name}(" in template, name
    for name, params in {**registry.REQUIRED_HOOKS, **registry.OPTIONAL_HOOKS}.items():
        assert f"def {name}({', '.join(params)})" in template, name


def test_config_json_round_trips_through_the_run_record(tmp_path):
    record = RunRecord(
        recipe="regression", config={"epochs": 3, "target": "price"},
        data=DataSpec(kind="table", source="houses.csv", input_shape=[2], feature_names=["rooms", "area"], target="price"),
        strategy={"name": "default", "replicas": 1}, versions={"dlcli": "0"}, command=["dlcli", "train"],
    )
    record.write(tmp_path / "config.json")
    assert RunRecord.read(tmp_path / "config.json") == record
    assert json.loads((tmp_path / "config.json").read_text())["schema"] == 2


def test_a_dlcli_0_1_config_json_is_read_and_a_wrong_one_refused(tmp_path):
    old = {"recipe": "cnn", "config": {"epochs": 2}, "data_source": "digits",
           "data": {"input_shape": [28, 28, 1], "class_names": ["0", "1"], "feature_names": None}}
    (tmp_path / "config.json").write_text(json.dumps(old))
    record = RunRecord.read(tmp_path / "config.json")
    assert record.data.source == "digits" and record.data.input_shape == [28, 28, 1]
    for bad, fragment in (([1, 2], "it holds a JSON list"), ({**old, "data": {**old["data"], "input_shape": "28"}}, "'data.input_shape' is str"),
                          ({**old, "schema": 9}, "schema 9")):
        (tmp_path / "config.json").write_text(json.dumps(bad))
        with pytest.raises(DlcliError, match=f"is not a dlcli run record: {fragment}"):
            RunRecord.read(tmp_path / "config.json")


def image_splits(tmp_path, as_files):
    """A small two-class image set, as arrays or as PNG files decoded in tf.data."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 120)
    x = (rng.random((120, 8, 8, 1)) * 120 + 120 * y[:, None, None, None]).astype(np.uint8)
    if as_files:
        paths = []
        for i, image in enumerate(x):
            write_png(tmp_path / f"{i}.png", image)
            paths.append(str(tmp_path / f"{i}.png"))
        decode = lambda path: tf.ensure_shape(tf.io.decode_png(tf.io.read_file(path), channels=1), (8, 8, 1))  # noqa: E731
        split = lambda a, b: data.Files(np.array(paths[a:b]), y[a:b], decode)  # noqa: E731
    else:
        split = lambda a, b: (x[a:b], y[a:b])  # noqa: E731
    return data.Splits(train=split(0, 80), val=split(80, 100), test=split(100, 120), input_shape=(8, 8, 1),
                       source="tiny", num_classes=2, class_names=["a", "b"], kind="images")


def test_file_backed_examples_train_on_exactly_the_batches_arrays_give(tmp_path):
    config = Config(arch="tf1", epochs=2, batch_size=16, dropout=0.0, deterministic=True)
    tf.config.experimental.enable_op_determinism()
    try:
        arrays = loop.fit(registry.load("cnn"), config, image_splits(tmp_path, False), tf.distribute.get_strategy(), tmp_path / "a")
        (tmp_path / "png").mkdir()
        files = loop.fit(registry.load("cnn"), config, image_splits(tmp_path / "png", True), tf.distribute.get_strategy(), tmp_path / "f")
    finally:
        from tensorflow.python.framework import config as tf_config

        tf_config.disable_op_determinism()  # the setting is process-wide: leave the other tests as they were
    assert files.metrics["test"] == arrays.metrics["test"] and files.metrics["test_examples"] == 20
    assert [row["loss"] for row in files.history] == [row["loss"] for row in arrays.history]


def test_a_hook_at_epoch_end_can_stop_training(tmp_path):
    seen = []

    class StopAfterOne:
        def on_epoch_end(self, state, row):
            seen.append(row["epoch"])
            return True

    config = Config(arch="tf1", epochs=5, batch_size=16)
    result = loop.fit(registry.load("cnn"), config, image_splits(tmp_path, False), tf.distribute.get_strategy(), tmp_path / "r", hooks=[StopAfterOne()])
    assert seen == [1] and len(result.history) == 1 and (tmp_path / "r" / "metrics.json").is_file()


def test_version_and_help_show_defaults():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.startswith("dlcli ")
    help_text = " ".join(runner.invoke(app, ["train", "--help"], env={"COLUMNS": "400"}).stdout.split())
    assert "[default: runs/RECIPE-TIMESTAMP" in help_text and "[default: the recipe's default" in help_text
    assert "auto|default|one-device|mirrored|multi-worker|tpu" in help_text.replace(" ", "")
    assert "float32|mixed_float16|mixed_bfloat16" in help_text.replace(" ", "")
    for command in (["train"], ["predict"], ["export"]):
        assert "--output" in runner.invoke(app, [*command, "--help"]).stdout


def test_tensorflow_start_up_lines_stay_out_of_the_terminal(dlcli_subprocess, tmp_path):
    bad = tmp_path / "idx"
    bad.mkdir()
    (bad / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x01garbage")
    result = dlcli_subprocess("train", "cnn", "--data", bad, "-o", tmp_path / "run")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.startswith("error: "), result.stderr
    assert "cuInit" not in result.stderr and "cudart" not in result.stderr
    debug = dlcli_subprocess("train", "cnn", "--data", bad, "-o", tmp_path / "run", env={"DLCLI_DEBUG": "1"})
    assert debug.returncode == 2 and debug.stderr.strip().splitlines()[-1].startswith("error: ")
