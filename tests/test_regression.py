"""The regression recipe: gradient descent that lands on least squares, and its data readers."""

import numpy as np
import pytest
import tensorflow as tf

from dlcli.core.errors import DlcliError
from dlcli.data.sources import auto_mpg
from dlcli.models import config as config_lib
from dlcli.training import artifacts, loop, registry

regression = registry.load("regression")


def config(**values):
    return config_lib.resolve(regression.Config, "regression", toml_values=values)


def test_gradient_descent_recovers_the_true_weights_and_least_squares(tmp_path):
    cfg = config()
    splits = regression.load_data(cfg)
    result = loop.fit(regression, cfg, splits, tf.distribute.get_strategy(), tmp_path)
    final = artifacts.write(regression, cfg, splits, tmp_path, result.metrics)
    report = final["report"]
    assert report["max_weight_error_vs_truth"] <= 0.01
    assert report["weights_vs_least_squares"] <= 0.01
    assert report["test_r2"] > 0.99


def test_features_are_standardised_with_training_statistics_only():
    splits = regression.load_data(config())
    np.testing.assert_allclose(splits.info["mean"], splits.train[0].mean(0), rtol=1e-5)
    assert not np.allclose(splits.info["mean"], np.concatenate([splits.train[0], splits.test[0]]).mean(0), rtol=1e-7)


AUTO_MPG = (
    '18.0   8   307.0      130.0      3504.      12.0   70  1\t"chevrolet chevelle malibu"\n'
    '25.0   4   98.00      ?          2046.      19.0   71  1\t"ford pinto"\n'
    '26.0   4   97.00      46.00      1835.      20.5   70  2\t"volkswagen 1131 deluxe sedan"\n'
    '24.0   4   113.0      95.00      2372.      15.0   70  3\t"toyota corona mark ii"\n'
    '15.0   8   350.0      165.0      3693.      11.5   70  1\t"buick skylark 320"\n'
)


def test_auto_mpg_file_is_parsed_like_the_tensorflow_tutorial(tmp_path):
    path = tmp_path / "auto-mpg.data"
    path.write_text(AUTO_MPG)
    x, y, names, source, target = regression.columns(auto_mpg.load(path, None), regression.Config())
    assert x.shape == (4, 8) and list(y[:, 0]) == [18.0, 26.0, 24.0, 15.0] and target == "mpg"
    assert names[-2:] == ["europe", "japan"] and list(x[1, -2:]) == [1, 0] and list(x[2, -2:]) == [0, 1]
    assert "1 with missing values dropped" in source


def test_csv_with_a_target_column(tmp_path):
    path = tmp_path / "houses.csv"
    rng = np.random.default_rng(0)
    rows = ["rooms,area,price"] + [f"{r},{a:.1f},{3 * r + 0.5 * a:.2f}" for r, a in zip(rng.integers(1, 6, 50), rng.uniform(20, 90, 50))]
    rows.insert(5, "3,,200")
    path.write_text("\n".join(rows))
    splits = regression.load_data(config(data=str(path), target="price"))
    assert splits.input_shape == (2,) and splits.feature_names == ["rooms", "area"]
    # the blank cell is imputed inside the model: the row is kept
    assert len(splits.train[0]) + len(splits.test[0]) == 51 and "1 blank cells imputed" in splits.source
    assert splits.kind == "table cells"
    complete = tmp_path / "complete.csv"
    complete.write_text("\n".join(r for r in rows if ",," not in r))
    splits = regression.load_data(config(data=str(complete), target="price"))  # all numbers: plain float features
    assert splits.kind == "table" and splits.train[0].dtype == np.float32 and len(splits.train[0]) + len(splits.test[0]) == 50


@pytest.mark.parametrize(
    "text, values, message",
    [
        ("a,b\n1,2\n", {}, "say which column to predict: --set target=COLUMN. Columns of"),
        ("a,b\n1,2\n", {"target": "price"}, "has no column 'price'. Its columns: a, b"),
        ("a,name,y\n1,bob,3\n2,al,\n3,jo,x\n", {"target": "y"}, "line 4: the target 'y' holds 'x', not a number"),
        ("a,y\n", {"target": "y"}, "needs a header row and at least one data row"),
    ],
)
def test_bad_csv_is_one_clear_error(tmp_path, text, values, message):
    path = tmp_path / "table.csv"
    path.write_text(text)
    with pytest.raises(DlcliError, match=message.replace("(", r"\(").replace(")", r"\)")):
        regression.load_data(config(data=str(path), **values))


def test_csv_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("préçis,y\n1,2\n".encode("latin-1"))
    with pytest.raises(DlcliError, match="is not UTF-8 text"):
        regression.load_data(config(data=str(path), target="y"))


def test_a_csv_as_found_with_text_columns_and_blanks_trains_and_predicts_on_the_same_file(tmp_path):
    """A housing-like CSV: a category column, blank cells, a row without a target."""
    import json

    from typer.testing import CliRunner

    from dlcli.cli.app import app

    rng = np.random.default_rng(0)
    places = ["NEAR BAY", "INLAND", "ISLAND"]
    lines = ["rooms,age,ocean_proximity,price"]
    for i in range(300):
        rooms, age, place = rng.integers(1, 8), rng.integers(1, 50), rng.integers(0, 3)
        price = 50 * rooms - age + [100, 0, 300][place] + rng.normal(0, 1)
        cells = [str(rooms), str(age), places[place], f"{price:.2f}"]
        if i % 17 == 0:
            cells[1] = ""  # a blank age
        if i % 29 == 0:
            cells[2] = ""  # a blank category
        lines.append(",".join(cells))
    lines.append("3,10,INLAND,")  # no target: left out and counted
    path = tmp_path / "houses.csv"
    path.write_text("\n".join(lines) + "\n")
    runner = CliRunner()
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "regression", "--data", str(path), "--set", "target=price", "--set", "solver=adam",
                                 "--epochs", "40", "--set", "learning_rate=1.0", "--strategy", "default", "-o", str(run), "--json"])
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)
    assert final["report"]["test_r2"] > 0.9  # the category matters (+300 on the island): it was learnt
    assert "ocean_proximity=ISLAND" in final["report"]["weights"]
    record = json.loads((run / "config.json").read_text())
    assert "1 without a target left out" in record["data"]["source"] and "blank cells imputed" in record["data"]["source"]
    imputed = int(record["data"]["source"].split("target left out; ")[1].split(" blank")[0])
    assert imputed > 0
    predicted = runner.invoke(app, ["predict", str(run), str(path), "--json"])
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(predicted.stdout)
    assert len(rows) == 301 and all(np.isfinite(r["price"]) for r in rows)  # blank rows included
    assert abs(rows[1]["price"] - float(lines[2].split(",")[3])) < 40
