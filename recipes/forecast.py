"""Forecast the next value of a time series with a stacked LSTM, against naive baselines.

Modernises the Keras/TF1 stock-price and airline-passenger LSTM tutorials (a scaler fitted on
the whole series, windows cut with Python loops, `Sequential([LSTM(50, return_sequences=True),
Dropout(0.2), ...])` and `model.fit`): windows come from `keras.utils.timeseries_dataset_from_array`,
the split is chronological (train, then validation, then test), and the normalisation uses the
training part only, so nothing of the future leaks into training.

Test MAE is reported in the series' own units next to two baselines computed in the same run:
the naive forecast (the last value) and the seasonal-naive forecast (the value one season ago).

Datasets: `synthetic` (a generated seasonal series with autocorrelated noise), or
`--data FILE.csv --set column=NAME` (rows in time order).

Reference: test MAE at least 20% below the better naive baseline on the synthetic series.

Reproduce: dlcli train forecast
"""

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

from dlcli import data
from dlcli.core.errors import DlcliError
from dlcli.core.lazy import keras
from dlcli.data.sources import csv_table
from dlcli.models import predict
from dlcli.models.config import AT_LEAST_ONE, FRACTION, Range, TrainConfig
from dlcli.runs import rundir

DATASETS = {"synthetic": "a seasonal series (period 24) with AR(1) noise (generated, offline)"}
DATA_KINDS = {"table"}
MODERNISES = [
    ("MinMaxScaler().fit(whole_series)", "Normalization layer with the training part's mean/std, inverted at the output"),
    ("for i in range(60, len(data)): X.append(data[i-60:i])", "keras.utils.timeseries_dataset_from_array"),
    ("train_test_split(X, y, shuffle=True)", "a chronological split: train, validation, then test"),
    ("Sequential([LSTM(50, return_sequences=True), Dropout(0.2), ...])", "the same stack, cuDNN-compatible"),
    ("print(model.evaluate(...)) alone", "test MAE next to naive and seasonal-naive baselines"),
]
QUICK = {"epochs": 2, "length": 600, "units": 16}


@dataclass
class Config(TrainConfig):
    dataset: str = "synthetic"
    epochs: int = 20
    batch_size: int = 32
    learning_rate: float = 3e-3
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    column: str = ""  # the CSV column holding the series
    window: Annotated[int, AT_LEAST_ONE] = 48  # past values the model sees
    season: Annotated[int, AT_LEAST_ONE] = 24  # period of the seasonal-naive baseline
    test_fraction: Annotated[float, Range(0, 1, low_open=True, high_open=True)] = 0.2  # the last part of the series
    units: Annotated[int, AT_LEAST_ONE] = 50
    dropout: Annotated[float, FRACTION] = 0.2
    length: Annotated[int, Range(20, 100_000_000)] = 3000  # synthetic


# ## Prepare the data: one series, split in time, windows cut from it


def load_data(config):
    if config.data is not None:
        series, source = read_series(config)
    else:
        series, source = synthetic(config.length), f"synthetic series ({config.length} steps)"
    n_test = int(len(series) * config.test_fraction)
    n_val = int((len(series) - n_test) * config.validation_split)
    train_end, val_end = len(series) - n_test - n_val, len(series) - n_test
    if train_end - config.window < 10 or n_test < 1:
        raise DlcliError(
            f"the series has {len(series)} values: too short for window={config.window} "
            f"(need at least {config.window + 10} training values); lower --set window=N or use a longer series."
        )
    mean, std = series[:train_end].mean(), series[:train_end].std() + 1e-12
    values = series.astype(np.float32)
    windows = keras.utils.timeseries_dataset_from_array(
        values[:-1], targets=values[config.window :], sequence_length=config.window, batch_size=len(values)
    )
    x, y = (np.asarray(a) for a in next(iter(windows)))
    target_index = np.arange(len(y)) + config.window  # where in the series each target sits
    parts = [(target_index < train_end), (target_index >= train_end) & (target_index < val_end), target_index >= val_end]
    train, val, test = ((x[p][..., None], y[p][:, None]) for p in parts)
    return data.Splits(
        train=train, val=val, test=test, input_shape=(config.window, 1), source=source,
        info={"mean": float(mean), "std": float(std), "series": series, "test_start": val_end}, kind="series",
    )


def synthetic(length):
    """A daily-like season plus AR(1) noise: predictable from the recent past, not from one value.

    The best possible one-step forecast (season + 0.8 x the last noise) has an MAE of ~0.24;
    the naive forecasts score ~0.39 (last value) and ~0.56 (one season ago).
    """
    rng = np.random.default_rng(0)
    t = np.arange(length)
    noise = np.zeros(length)
    shocks = rng.normal(0, 0.3, length)
    for i in range(1, length):
        noise[i] = 0.8 * noise[i - 1] + shocks[i]
    return 10 + 2 * np.sin(2 * np.pi * t / 24) + noise


def read_series(config):
    table = data.load_local(config, DATA_KINDS)
    if not config.column:
        raise DlcliError(f"say which column holds the series: --set column=NAME. Columns of {config.data}: {', '.join(table.header)}.")
    values, dropped = csv_table.numeric(table, [config.column])
    return values[:, 0], f"{config.data} column {config.column} ({len(values)} values, {dropped} missing dropped)"


# ## Build the model: three stacked LSTMs between the training part's normalisation and its inverse


def build_model(config, splits):
    mean, std = splits.info["mean"], splits.info["std"]
    inputs = keras.Input(shape=splits.input_shape)
    x = keras.layers.Normalization(mean=mean, variance=std**2)(inputs)
    for i in range(3):
        # Dropout between layers, not inside the LSTM, keeps the fused cuDNN kernel usable on GPU.
        x = keras.layers.LSTM(config.units, return_sequences=i < 2)(x)
        x = keras.layers.Dropout(config.dropout)(x)
    x = keras.layers.Dense(1, dtype="float32")(x)
    # Back to the series' units, so the saved model reads and predicts raw values.
    outputs = keras.layers.Rescaling(std, offset=mean, dtype="float32", name="next_value")(x)
    return keras.Model(inputs, outputs, name="stacked_lstm")


def loss(config):
    return keras.losses.MeanSquaredError(reduction=None)


def metrics(config):
    return [keras.metrics.MeanAbsoluteError(name="mae")]


# ## After training: MAE in the series' units, against the naive forecasts


def after_training(config, splits, model, run_dir):
    series, start = splits.info["series"], splits.info["test_start"]
    truth = series[start:]
    predicted = model.predict(splits.test[0], verbose=0)[:, 0]
    naive = series[start - 1 : -1]
    seasonal = series[start - config.season : len(series) - config.season]
    maes = {
        "test_mae": float(np.abs(predicted - truth).mean()),
        "naive_mae": float(np.abs(naive - truth).mean()),
        "seasonal_naive_mae": float(np.abs(seasonal - truth).mean()),
    }
    table = "truth,forecast\n" + "".join(f"{t:.6g},{p:.6g}\n" for t, p in zip(truth, predicted))
    rundir.atomic_write(run_dir / "forecast.csv", table)  # drawn as forecast.png
    best = min(maes["naive_mae"], maes["seasonal_naive_mae"])
    return {**maes, "improvement_over_best_naive": 1 - maes["test_mae"] / best}


# ## Predict: a CSV series in (its last `window` values are used), the next value out


def read_inputs(record, inputs):
    config = record.config
    windows = []
    for path in inputs:
        column = config["column"] or csv_table.load(path, None).header[-1]  # default: the last column
        series = predict.csv_rows(path, [column])[:, 0]
        if len(series) < config["window"]:
            raise DlcliError(f"{path} holds {len(series)} values; the model reads the last {config['window']}.")
        windows.append(series[-config["window"] :, None])
    return np.stack(windows), list(inputs)


def describe(record, outputs, names, context):
    return [{"input": name, "next_value": round(float(value), 4)} for name, value in zip(names, outputs[:, 0])]
