"""Pictures of a run, drawn with matplotlib's non-interactive Agg backend.

Training draws them at its end; `dlcli plot RUN_DIR` redraws them from the files the run keeps
(history.csv, confusion_matrix.csv, forecast.csv).
"""

import csv
import io
import math
import re
from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError
from dlcli.runs import rundir


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # no display needed, on servers and in containers
    import matplotlib.pyplot as plt

    return plt


def _save(figure, path):
    plt = _pyplot()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(figure)
    rundir.atomic_write(path, buffer.getvalue())
    return path


def curves(history, path):
    """Loss and each metric per epoch, training against validation."""
    plt = _pyplot()
    names = metric_names(history[0])
    figure, axes = plt.subplots(1, len(names), figsize=(5 * len(names), 3.5), squeeze=False)
    epochs = [row["epoch"] for row in history]
    for ax, name in zip(axes[0], names):
        ax.plot(epochs, [row[name] for row in history], marker="o", label="train")
        if f"val_{name}" in history[0]:
            ax.plot(epochs, [row[f"val_{name}"] for row in history], marker="o", label="validation")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend()
    return _save(figure, path)


def metric_names(columns):
    """The metrics of a history's columns, each drawn with its val_ twin."""
    return [k for k in columns if k not in ("epoch", "learning_rate", "seconds", "examples_per_sec") and not k.startswith("val_")]


def confusion_matrix(truth, predicted, num_classes):
    matrix = np.zeros((num_classes, num_classes), np.int64)
    np.add.at(matrix, (truth, predicted), 1)
    return matrix


def write_confusion_csv(matrix, class_names, path):
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["true\\predicted", *class_names])
    for name, row in zip(class_names, matrix):
        writer.writerow([name, *row.tolist()])
    rundir.atomic_write(path, out.getvalue())


def read_confusion_csv(path):
    """(matrix, class names) of a confusion_matrix.csv as `write_confusion_csv` writes it: a
    header of class names, then per class its name and one count per class. Anything else (text,
    a ragged or missing row, an empty file) is one line naming the file and the line."""
    rows = [row for row in _csv_rows(path) if row]
    if not rows or len(rows[0]) < 2:
        raise _damaged(path, "has no header row of class names")
    names = rows[0][1:]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(names) + 1:
            raise _damaged(path, f"line {line} has {len(row) - 1} counts for {len(names)} classes")
        bad = next((v for v in row[1:] if not COUNT.fullmatch(v.strip())), None)
        if bad is not None:
            raise _damaged(path, f"line {line} holds {bad[:40]!r}, not a count")
    if len(rows) - 1 != len(names):
        raise _damaged(path, f"has {len(rows) - 1} rows of counts for {len(names)} classes")
    return np.array([[int(v) for v in row[1:]] for row in rows[1:]], np.int64).reshape(len(names), len(names)), names


COUNT = re.compile(r"[0-9]{1,15}")  # a test set's count: far below int64's range


def _csv_rows(path):
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise _damaged(path, f"cannot be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _damaged(path, why):
    return DlcliError(f"{path} {why}: it is not as `dlcli train` wrote it. Retrain the run, or move the file away to draw the rest.")


def _numbers(path, columns):
    """The named columns of a run's CSV (history.csv, forecast.csv) as lists of floats (a blank
    cell is NaN, which matplotlib leaves out); text, a missing column or a ragged row is one line."""
    rows = _csv_rows(path)
    if not rows:
        raise _damaged(path, "is empty")
    header = [h.strip() for h in rows[0]]
    missing = [c for c in columns if c not in header]
    if missing:
        raise _damaged(path, f"has no column '{missing[0]}'")
    out = {c: [] for c in columns}
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != len(header):
            raise _damaged(path, f"line {line} has {len(row)} cells for {len(header)} columns")
        for c in columns:
            text = row[header.index(c)].strip()
            try:
                value = float(text) if text else math.nan
            except ValueError:
                raise _damaged(path, f"line {line}: column '{c}' holds {text[:40]!r}, not a number") from None
            out[c].append(value)
    return out


def confusion(matrix, class_names, path):
    """The test set's confusion matrix, counts in each cell."""
    plt = _pyplot()
    size = min(max(4, 0.5 * len(class_names) + 2), 60)  # inches: 6000 px at most, however many classes
    figure, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(class_names)), class_names, rotation=45, ha="right")
    ax.set_yticks(range(len(class_names)), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if len(class_names) <= 20:
        for (i, j), count in np.ndenumerate(matrix):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black", fontsize=8)
    ax.set_title(f"confusion matrix (accuracy {np.trace(matrix) / max(1, matrix.sum()):.4f})")
    return _save(figure, path)


def samples(images, truth, predicted, class_names, path, count=10):
    """The first test images with their predicted and true classes (wrong ones in red)."""
    plt = _pyplot()
    count = min(count, len(images))
    figure, axes = plt.subplots(1, count, figsize=(1.6 * count, 2), squeeze=False)
    for ax, image, t, p in zip(axes[0], images[:count], truth[:count], predicted[:count]):
        ax.imshow(image.squeeze(), cmap="gray" if image.shape[-1] == 1 else None)
        ax.set_title(f"{class_names[p]}\n(true {class_names[t]})", fontsize=8, color="black" if t == p else "red")
        ax.axis("off")
    return _save(figure, path)


def forecast(truth, predicted, path):
    plt = _pyplot()
    figure, ax = plt.subplots(figsize=(10, 3.5))
    ax.plot(truth, label="truth", linewidth=1)
    ax.plot(predicted, label="forecast", linewidth=1)
    ax.set_xlabel("test step")
    ax.set_title("one-step forecast on the test part")
    ax.legend()
    ax.grid(alpha=0.3)
    return _save(figure, path)


def redraw(run_dir):
    """Draws every picture a run's saved files allow; returns their paths. Every file is read
    and checked first, so a damaged one is one line and no picture is half redrawn."""
    run_dir = Path(run_dir)
    history = read_history(run_dir / "history.csv")
    matrix = read_confusion_csv(run_dir / "confusion_matrix.csv") if (run_dir / "confusion_matrix.csv").is_file() else None
    series = _numbers(run_dir / "forecast.csv", ["truth", "forecast"]) if (run_dir / "forecast.csv").is_file() else None
    drawn = []
    if history:
        drawn.append(curves(history, run_dir / "curves.png"))
    if matrix is not None:
        drawn.append(confusion(*matrix, run_dir / "confusion_matrix.png"))
    if series is not None:
        drawn.append(forecast(series["truth"], series["forecast"], run_dir / "forecast.png"))
    return drawn


def read_history(path):
    """history.csv as rows of numbers (one dict per epoch), checked: an epoch column, and
    numbers (or blanks) in every cell."""
    if not Path(path).is_file():
        return []
    header = next(iter(_csv_rows(path)), [])
    columns = _numbers(path, [h.strip() for h in header if h.strip()] or ["epoch"])
    if "epoch" not in columns:
        raise _damaged(path, "has no column 'epoch'")
    if not metric_names(columns):
        raise _damaged(path, "has no metric columns (loss, ...)")
    return [{c: values[i] for c, values in columns.items()} for i in range(len(columns["epoch"]))]


def classifier_pictures(model, splits, run_dir):
    """For classifiers: the test confusion matrix (CSV, drawn by redraw) and sample predictions."""
    from dlcli import data
    from dlcli.core.lazy import tf

    test = splits.test
    if isinstance(test, data.Files):  # decoded batch by batch, as the loop does
        outputs = np.asarray(model.predict(data.inputs(test), verbose=0))
    else:
        x = test[0]
        # Text arrays (object dtype) go in as a string tensor; fixed-width numpy strings would be huge.
        outputs = np.asarray(model.predict(tf.constant(list(x)) if x.dtype == object else x, batch_size=256, verbose=0))
    predicted = outputs.argmax(-1) if outputs.shape[-1] > 1 else (outputs[:, 0] >= 0.5).astype(np.int64)
    truth = np.asarray(data.targets(test)).reshape(-1).astype(np.int64)
    names = splits.class_names or [str(i) for i in range(splits.num_classes)]
    write_confusion_csv(confusion_matrix(truth, predicted, splits.num_classes), names, Path(run_dir) / "confusion_matrix.csv")
    if splits.kind == "images":
        x, _ = data.arrays(test, limit=10)
        return [samples(x, truth, predicted, names, Path(run_dir) / "samples.png")]
    return []
