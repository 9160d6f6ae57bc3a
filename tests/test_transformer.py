"""The transformer recipe: it learns the synthetic corpus, and its saved model reads raw strings."""

import json

import keras
import tensorflow as tf
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.models import config as config_lib
from dlcli.runs.record import DataSpec, RunRecord
from dlcli.training import loop, registry

transformer = registry.load("transformer")
runner = CliRunner()


def test_transformer_learns_and_predicts_from_raw_strings(tmp_path):
    run = tmp_path / "run"
    config = config_lib.resolve(transformer.Config, "transformer", toml_values={**transformer.QUICK, "epochs": 3})
    final = loop.fit(transformer, config, transformer.load_data(config), tf.distribute.get_strategy(), run).metrics
    assert final["test"]["accuracy"] >= 0.9, final["test"]
    model = keras.saving.load_model(run / "model.keras")
    assert model.input.dtype == "string"
    record = RunRecord(recipe="transformer", config={}, data=DataSpec(kind="text", source="reviews", input_shape=[32], class_names=["negative", "positive"]))
    (run / "config.json").write_text(json.dumps(record.to_dict()))
    review = tmp_path / "review.txt"
    review.write_text("awful boring dull film, a dreadful plot")
    result = runner.invoke(app, ["predict", str(run), "great wonderful superb film", str(review), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [row["class"] for row in rows] == ["positive", "negative"]
