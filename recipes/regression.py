"""Linear regression by gradient descent, checked against the closed-form least-squares fit.

Modernises the numpy/TF1 gradient-descent snippets (`W = tf.Variable(...)`, a hand-written
`tf.reduce_mean(tf.square(pred - y))`, `tf.train.GradientDescentOptimizer`, a `for` loop of
`sess.run`) as a Keras `Dense(1)` on standardised features, trained by full-batch gradient
descent (`solver=gd`, the source's algorithm: `tf.GradientTape` + plain SGD on every example at
once) or Adam (`solver=adam`). Features are standardised with training-split statistics only,
inside the model (a `Normalization` layer), so the saved model takes raw features.

After training it reports test MAE/MSE/R^2 and compares the learned weights with the
least-squares solution computed in the same run (and, on synthetic data, with the truth).

Datasets: `synthetic` (generated with known weights), `auto_mpg` (UCI; `--data auto-mpg.data`
reads the original file), or `--data FILE.csv --set target=COLUMN` for any CSV as found: when it
has text (categorical) columns or blank cells, the model takes the raw cells (`TableFeatures`):
categories one-hot over the training split's values, blanks imputed with the training means,
so `dlcli predict RUN same.csv` works on the same file, blank rows included. Rows without a
target value are left out of training (and counted).

Reference: the TensorFlow regression tutorial's linear model reaches ~2.5 MPG test MAE on Auto MPG.

Reproduce: dlcli train regression --data ../shared/data/auto_mpg/auto-mpg.data
"""

from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np

from dlcli import data
from dlcli.core.errors import DlcliError
from dlcli.core.lazy import keras, tf
from dlcli.data.sources import auto_mpg, csv_table, tfds
from dlcli.models import predict
from dlcli.models.config import Range, TrainConfig

DATASETS = {
    "synthetic": "y = x.w + b + noise with known w and b (generated, offline)",
    "auto_mpg": "UCI Auto MPG: predict miles per gallon from 9 car features (downloads once)",
}
MODERNISES = [
    ("X = tf.placeholder(...); W = tf.Variable(tf.random_normal([n, 1]))", "keras.Input + layers.Dense(1)"),
    ("(X - X.mean(0)) / X.std(0) over the whole data", "layers.Normalization with training-split statistics only"),
    ("cost = tf.reduce_mean(tf.square(pred - Y))", "keras.losses.MeanSquaredError"),
    ("tf.train.GradientDescentOptimizer(lr).minimize(cost) over all rows", "SGD on the full batch (batch_size=0) in dlcli's loop"),
    ("for epoch in range(n): sess.run(optimizer, feed_dict=...)", "epochs x steps_per_epoch gradient steps"),
]
DATA_KINDS = {"table"}
QUICK = {"epochs": 2, "steps_per_epoch": 100}


@dataclass
class Config(TrainConfig):
    dataset: str = "synthetic"
    epochs: int = 40
    batch_size: int = 0  # the whole training split: plain (not stochastic) gradient descent
    steps_per_epoch: int = 250
    steps_per_execution: int = 250
    learning_rate: float = 0.1
    validation_split: float = 0.0
    solver: Literal["gd", "adam"] = "gd"
    target: str = ""  # the CSV column to predict
    columns: str = ""  # comma-separated CSV feature columns; default: all but the target
    samples: Annotated[int, Range(10, 100_000_000)] = 10000  # synthetic
    features: Annotated[int, Range(1, 100_000)] = 3  # synthetic
    noise: Annotated[float, Range(0)] = 0.1  # synthetic


# ## Prepare the data: (features, target) arrays, 80/20 train/test split


def load_data(config):
    truth = None
    if config.data is not None:
        table = data.load_local(config, DATA_KINDS)
        if not table.complete_rows and not is_numeric(table, config):
            return cells_splits(table, config)
        x, y, names, source, target = columns(table, config)
    elif config.dataset == "auto_mpg":
        path = tfds.download("auto_mpg", "Pass the file with --data PATH/auto-mpg.data instead.")
        x, y, names, source, target = columns(auto_mpg.load(path, config), config)
    else:
        x, y, names, source, truth = synthetic(config)
        target = "y"
    test, train = fixed_split(len(x), config.data or config.dataset, target)
    train, val = data.holdout((x[train], y[train]), config.validation_split)
    info = {"truth": truth, "mean": train[0].mean(0), "std": train[0].std(0) + 1e-12}
    return data.Splits(
        train=train, val=val, test=(x[test], y[test]), input_shape=(x.shape[1],), source=source, info=info,
        kind="table", feature_names=names, target=target,
    )


def fixed_split(n, where, target):
    """(test, train) row indices: a fixed 80/20 split, whatever the training seed. A fifth of
    the rows is the test set, so at least 5 rows are needed."""
    if n // 5 == 0:
        raise DlcliError(f"{where} has {n} row(s) with a target '{target}'; at least 5 are needed (a fifth is the test set).")
    order = np.random.default_rng(0).permutation(n)
    return order[: n // 5], order[n // 5 :]


def columns(table, config):
    """(features, target values, feature names, source, target name) from a table: the target is `--set target`,
    else the table's own (mpg for Auto MPG); the features `--set columns`, else the rest."""
    target = config.target or table.target
    if not target:
        raise DlcliError(f"say which column to predict: --set target=COLUMN. Columns of {table.path}: {', '.join(table.header)}.")
    features = [c.strip() for c in config.columns.split(",") if c.strip()] or [c for c in table.header if c != target]
    values, dropped = csv_table.numeric(table, [target, *features])
    source = f"{table.description} ({len(values)} rows, {dropped} with missing values dropped)"
    return values[:, 1:].astype(np.float32), values[:, :1].astype(np.float32), features, source, target


# ## Tables as found: text columns and blanks, encoded inside the model


def target_and_features(table, config):
    target = config.target or table.target
    if not target:
        raise DlcliError(f"say which column to predict: --set target=COLUMN. Columns of {table.path}: {', '.join(table.header)}.")
    features = [c.strip() for c in config.columns.split(",") if c.strip()] or [c for c in table.header if c != target]
    for name in [target, *features]:
        if name not in table.header:
            raise DlcliError(f"{table.path} has no column '{name}'. Its columns: {', '.join(table.header)}.")
    return target, features


def is_numeric(table, config):
    """Whether every chosen cell is a number: the plain float path (no blanks, no text)."""
    target, features = target_and_features(table, config)
    index = [table.header.index(c) for c in [target, *features]]
    return all(csv_table.cell(row, i).strip().lower() not in csv_table.MISSING and csv_table.is_number_or_missing(csv_table.cell(row, i))
               for row in table.rows for i in index)


def cells_splits(table, config):
    """Raw cells (strings) in, the target out; statistics and categories from the training rows."""
    target, features = target_and_features(table, config)
    t, index = table.header.index(target), [table.header.index(c) for c in features]
    rows, no_target = [], 0
    for line, row in zip(csv_table.line_numbers(table), table.rows):
        value = csv_table.cell(row, t).strip()
        if value.lower() in csv_table.MISSING:
            no_target += 1
            continue
        if not csv_table.is_number(value):
            raise DlcliError(f"{table.path} line {line}: the target '{target}' holds {value!r}, not a number.")
        rows.append((float(value), [csv_table.cell(row, i).strip() for i in index]))
    y = np.array([[v] for v, _ in rows], np.float32)
    x = np.array([cells for _, cells in rows], object).reshape(len(rows), len(features))
    test, train = fixed_split(len(x), table.path, target)  # the same fixed 80/20 split as numeric tables
    train, val = data.holdout((x[train], y[train]), config.validation_split)
    # A column's kind is the whole file's (a word in a test row makes it categorical), its statistics the training rows'.
    kinds = ["number" if all(csv_table.is_number_or_missing(c) for c in x[:, j]) else "category" for j in range(len(features))]
    spec, _ = table_spec(train[0], features, kinds)
    imputed = sum(c.lower() in csv_table.MISSING for c in x.reshape(-1))
    one_hot = ", ".join(f"{c['name']} ({len(c['vocabulary'])} categories)" for c in spec if "vocabulary" in c)
    source = (f"{table.description} ({len(x)} rows; {no_target} without a target left out; {imputed} blank cells "
              f"imputed with training means{'; one-hot: ' + one_hot if one_hot else ''})")
    return data.Splits(
        train=train, val=val, test=(x[test], y[test]), input_shape=(len(features),), source=source,
        info={"spec": spec}, kind="table cells", feature_names=features, target=target,
        feature_kinds=["number" if "mean" in c else "category" for c in spec],
    )


def table_spec(x, names, kinds=None):
    """Per column: numeric (mean, std of the training cells) or categorical (its training
    values); `kinds` ("number" or "category" per column) when decided on more rows than `x`."""
    spec, imputed = [], 0
    for j, name in enumerate(names):
        cells = [c for c in x[:, j] if c.lower() not in csv_table.MISSING]
        imputed += len(x) - len(cells)
        numeric = all(csv_table.is_number_or_missing(c) for c in cells) if kinds is None else kinds[j] == "number"
        if cells and numeric:
            values = np.array(cells, np.float64)
            spec.append({"name": name, "mean": float(values.mean()), "std": float(values.std() + 1e-12)})
        else:
            spec.append({"name": name, "vocabulary": sorted(set(cells))[:1000]})
    return spec, imputed


def encoded_names(spec):
    """The names of TableFeatures' outputs: a numeric column, or column=category."""
    names = []
    for column in spec:
        if "vocabulary" in column:
            names += [f"{column['name']}={v}" for v in column["vocabulary"]] or [f"{column['name']}="]
        else:
            names.append(column["name"])
    return names


def synthetic(config):
    rng = np.random.default_rng(0)
    weights = np.round(rng.uniform(-3, 3, config.features), 2)
    bias = 4.0
    x = rng.normal(rng.uniform(-5, 5, config.features), rng.uniform(0.5, 3, config.features), (config.samples, config.features))
    y = x @ weights + bias + rng.normal(0, config.noise, config.samples)
    names = [f"x{i}" for i in range(config.features)]
    truth = {"weights": weights.tolist(), "bias": bias}
    return x.astype(np.float32), y[:, None].astype(np.float32), names, f"synthetic ({config.samples} rows)", truth


# ## The model: standardise, then one linear unit


def build_model(config, splits):
    if "spec" in splits.info:  # raw cells in
        inputs = keras.Input(shape=splits.input_shape, dtype="string")
        from dlcli.models.layers import TableFeatures

        x = TableFeatures(splits.info["spec"], name="table_features")(inputs)
        outputs = keras.layers.Dense(1, kernel_initializer="zeros", dtype="float32", name="linear")(x)
        return keras.Model(inputs, outputs, name="linear_regression")
    inputs = keras.Input(shape=splits.input_shape)
    x = keras.layers.Normalization(mean=splits.info["mean"], variance=splits.info["std"] ** 2)(inputs)
    outputs = keras.layers.Dense(1, kernel_initializer="zeros", dtype="float32", name="linear")(x)
    return keras.Model(inputs, outputs, name="linear_regression")


def optimizer(config, learning_rate):
    if config.solver == "gd":
        return keras.optimizers.SGD(learning_rate)  # w <- w - lr * dMSE/dw, nothing more
    return keras.optimizers.Adam(learning_rate)


def loss(config):
    return keras.losses.MeanSquaredError(reduction=None)


def metrics(config):
    return [keras.metrics.MeanAbsoluteError(name="mae"), keras.metrics.MeanSquaredError(name="mse")]


# ## After training: R^2, and the weights against least squares (and the truth)


def after_training(config, splits, model, run_dir):
    x, y = splits.train
    names = splits.feature_names
    if "spec" in splits.info:  # the model's own encoding of the cells is the design matrix
        standardised = np.asarray(model.get_layer("table_features")(tf.constant(x.astype(str))))
        names = encoded_names(splits.info["spec"])
        x_test = tf.constant(splits.test[0].astype(str))
    else:
        mean, std = splits.info["mean"], splits.info["std"]
        standardised, x_test = (x - mean) / std, splits.test[0]
    design = np.column_stack([standardised, np.ones(len(x))])
    least_squares = np.linalg.lstsq(design, y[:, 0].astype(np.float64), rcond=None)[0]
    kernel, bias = model.get_layer("linear").get_weights()
    learned = np.append(kernel[:, 0], bias[0])
    y_test = splits.test[1]
    pred = model.predict(x_test, verbose=0)[:, 0]
    residual = y_test[:, 0] - pred
    report = {
        "test_mae": float(np.abs(residual).mean()),
        "test_mse": float((residual**2).mean()),
        "test_r2": float(1 - (residual**2).sum() / ((y_test[:, 0] - y_test[:, 0].mean()) ** 2).sum()),
        "weights_vs_least_squares": float(np.linalg.norm(learned - least_squares) / np.linalg.norm(least_squares)),
        "weights": dict(zip([*names, "bias"], learned.round(5).tolist())),
        "least_squares": dict(zip([*names, "bias"], least_squares.round(5).tolist())),
    }
    truth = splits.info.get("truth")
    if truth:
        # Back from standardised to raw units: w_raw = w / std, b_raw = b - sum(w * mean / std).
        raw_weights = kernel[:, 0] / std
        raw_bias = bias[0] - float((kernel[:, 0] * mean / std).sum())
        report["max_weight_error_vs_truth"] = float(np.abs(raw_weights - truth["weights"]).max())
        # The intercept sits far outside the data (features are not centred), so its error is larger.
        report["bias_error_vs_truth"] = float(abs(raw_bias - truth["bias"]))
    return report


# ## Predict: CSV files with the feature columns in, one prediction per row out


def read_inputs(record, inputs):
    features = record.data.feature_names
    if record.data.kind == "table cells":  # raw cells, blanks and categories as found
        tables = [table_cells(csv_table.load(path, None), features, record.data.feature_kinds) for path in inputs]
        names = [f"{path}:{row + 2}" for path, table in zip(inputs, tables) for row in range(len(table))]
        return np.concatenate(tables).astype(object), names
    tables = [predict.csv_rows(path, features) for path in inputs]
    names = [f"{path}:{row + 2}" for path, table in zip(inputs, tables) for row in range(len(table))]
    return np.concatenate(tables), names


def read_instance(record, value):
    """`dlcli serve`'s instance: a row as a JSON object of the CSV's columns, read as that row of
    a CSV file is (null or "" a blank cell, category strings as in training)."""
    table = predict.json_row(value, record.data.feature_names)
    if record.data.kind == "table cells":
        return table_cells(table, record.data.feature_names, record.data.feature_kinds)[0]
    return predict.table_rows(table, record.data.feature_names)[0]


def table_cells(table, features, kinds=None):
    """The model's raw cells (stripped strings) of the named columns, one row per table row,
    checked as training checked them: numbers float32 holds (`csv_table.load`), and in the columns
    the model read as numbers (`kinds`), only numbers or blanks."""
    for name in features:
        if name not in table.header:
            raise DlcliError(f"{table.path} has no column '{name}', which the model reads. Its columns: {', '.join(table.header)}.")
    index = [table.header.index(name) for name in features]
    cells = [[csv_table.cell(row, i).strip() for i in index] for row in table.rows]
    for line, row in zip(csv_table.line_numbers(table), cells):  # (numbers float32 cannot hold: refused by load)
        for name, kind, text in zip(features, kinds or [], row):
            if kind == "number" and not csv_table.is_number_or_missing(text):
                raise DlcliError(
                    f"{table.path} line {line}: column '{name}' holds {text!r}, not a number; the model read numbers there "
                    "in training. Fix or blank that cell."
                )
    return np.array(cells, object).reshape(len(table.rows), len(features))


def describe(record, outputs, names, context):
    target = record.data.target or "y"
    return [{"input": name, target: round(float(value), 4)} for name, value in zip(names, outputs[:, 0])]
