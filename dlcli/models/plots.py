"""Pictures of a run, drawn with matplotlib's non-interactive Agg backend.

Training draws them at its end; `dlcli plot RUN_DIR` redraws them from the files the run keeps
(history.csv, confusion_matrix.csv, forecast.csv).
"""

import csv
import io
from pathlib import Path

import numpy as np

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
    names = [k for k in history[0] if k not in ("epoch", "learning_rate", "seconds", "examples_per_sec") and not k.startswith("val_")]
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
    rows = list(csv.reader(Path(path).open(newline="")))
    return np.array([[int(v) for v in row[1:]] for row in rows[1:]]), rows[0][1:]


def confusion(matrix, class_names, path):
    """The test set's confusion matrix, counts in each cell."""
    plt = _pyplot()
    size = max(4, 0.5 * len(class_names) + 2)
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
    """Draws every picture a run's saved files allow; returns their paths."""
    run_dir = Path(run_dir)
    drawn = []
    history = rundir.read_history(run_dir / "history.csv")
    if history:
        drawn.append(curves(history, run_dir / "curves.png"))
    if (run_dir / "confusion_matrix.csv").is_file():
        matrix, names = read_confusion_csv(run_dir / "confusion_matrix.csv")
        drawn.append(confusion(matrix, names, run_dir / "confusion_matrix.png"))
    if (run_dir / "forecast.csv").is_file():
        rows = list(csv.DictReader((run_dir / "forecast.csv").open(newline="")))
        drawn.append(forecast([float(r["truth"]) for r in rows], [float(r["forecast"]) for r in rows], run_dir / "forecast.png"))
    return drawn


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
