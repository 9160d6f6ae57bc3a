"""The forecast recipe: a chronological split, training-only normalisation, clear errors."""

import numpy as np
import pytest

from dlcli.core.errors import DlcliError
from dlcli.models import config as config_lib
from dlcli.training import registry

forecast = registry.load("forecast")


def config(**values):
    return config_lib.resolve(forecast.Config, "forecast", toml_values=values)


def test_split_is_chronological_and_normalised_on_the_training_part_only():
    cfg = config(length=1000, window=24)
    splits = forecast.load_data(cfg)
    series = splits.info["series"]
    n_test = 200
    train_end = 1000 - n_test - int(800 * cfg.validation_split)
    assert splits.info["mean"] == pytest.approx(series[:train_end].mean())
    assert len(splits.test[0]) == n_test and splits.info["test_start"] == 1000 - n_test
    assert splits.info["std"] == pytest.approx(series[:train_end].std())
    # the last test window ends right before the last value, which is its target
    np.testing.assert_allclose(splits.test[0][-1, :, 0], series[-25:-1], rtol=1e-5)
    np.testing.assert_allclose(splits.test[1][-1, 0], series[-1], rtol=1e-5)
    # no training target lies beyond the training part
    assert len(splits.train[0]) == train_end - cfg.window


def test_csv_series(tmp_path):
    path = tmp_path / "sales.csv"
    path.write_text("day,sales\n" + "\n".join(f"{i},{10 + np.sin(i / 3):.3f}" for i in range(300)))
    splits = forecast.load_data(config(data=str(path), column="sales", window=12))
    assert splits.input_shape == (12, 1) and "column sales" in splits.source


@pytest.mark.parametrize(
    "text, values, message",
    [
        ("day,sales\n1,2\n", {}, "say which column holds the series: --set column=NAME"),
        ("day,sales\n1,2\n", {"column": "price"}, "has no column 'price'"),
        ("day,sales\n" + "\n".join(f"{i},{i}" for i in range(30)), {"column": "sales"}, "too short for window=48"),
    ],
)
def test_bad_series_is_one_clear_error(tmp_path, text, values, message):
    path = tmp_path / "series.csv"
    path.write_text(text)
    with pytest.raises(DlcliError, match=message):
        forecast.load_data(config(data=str(path), **values))
