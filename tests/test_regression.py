"""The regression recipe: gradient descent that lands on least squares, and its data readers."""

import numpy as np
import pytest
import tensorflow as tf

from dlcli import config as config_lib
from dlcli import artifacts, loop, registry
from dlcli.errors import DlcliError
from dlcli.sources import auto_mpg

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
    assert len(splits.train[0]) + len(splits.test[0]) == 50 and "1 with missing values dropped" in splits.source


@pytest.mark.parametrize(
    "text, values, message",
    [
        ("a,b\n1,2\n", {}, "say which column to predict: --set target=COLUMN. Columns of"),
        ("a,b\n1,2\n", {"target": "price"}, "has no column 'price'. Its columns: a, b"),
        ("a,name,y\n1,bob,3\n", {"target": "y"}, "line 2: column 'name' holds 'bob', not a number"),
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
