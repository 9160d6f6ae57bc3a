"""`dlcli runs [FOLDER]`: the run folders under FOLDER as one table, to compare them.

Reads only what `dlcli train` wrote (config.json, metrics.json, history.csv): no TensorFlow.
"""

import fcntl
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from dlcli.cli import options
from dlcli.core import ui
from dlcli.core.errors import DlcliError
from dlcli.models import config as config_lib
from dlcli.runs import rundir
from dlcli.runs.record import RunRecord
from dlcli.tuning import hypertune

DEPTH = 2  # runs/RUN and runs/SEARCH/trial-NNN
# Shown in their own columns, or never different in a way worth a column.
NOT_COMPARED = ("dataset", "data", "data_dir")


def runs_command(
    folder: Annotated[
        Path | None, typer.Argument(help="Folder of run folders \\[default: $DLCLI_RUNS or ./runs].", show_default=False)
    ] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            help="Sort by a metric: test.accuracy, val_loss, seconds, ... Best first (max for accuracies, min for losses); "
            "add :asc or :desc to choose.",
            show_default=False,
        ),
    ] = None,
    as_json: options.Json = False,
):
    """List the run folders under FOLDER: recipe, data, the config keys that differ, metrics, best epoch, time, status."""
    root = folder if folder is not None else rundir.runs_root()
    if not root.is_dir():
        raise DlcliError(f"runs folder not found: {root}. Train a run first (dlcli train RECIPE), or pass the folder that holds runs.")
    found, skipped = find_runs(root)
    rows = [read_run(path, root) for path in found]
    readable = [row for row in rows if "error" not in row]
    differing = differing_keys([row["config"] for row in readable])
    for row in readable:
        row["differs"] = {k: row["config"].get(k) for k in differing}
    if sort:
        rows = sort_rows(rows, sort)
    if as_json:
        ui.print_json({"folder": str(root), "differing_keys": differing, "runs": rows, "skipped": skipped})
        return
    print_table(ui.console, root, rows, differing)
    if skipped:
        ui.console.print(f"skipped {len(skipped)} folder(s) that are not run folders: {', '.join(skipped[:5])}{' ...' if len(skipped) > 5 else ''}")


def find_runs(root):
    """The run folders (those with config.json) under `root`, down to DEPTH levels; and the
    folders skipped because they hold no run at all."""
    root = Path(root)
    if (root / "config.json").is_file():
        return [root], []
    found, skipped = [], []

    def walk(folder, depth):
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            skipped.append(str(folder.relative_to(root)))
            return
        for child in children:
            if (child / "config.json").exists():
                found.append(child)
            elif looks_like_run(child):
                found.append(child)  # a run without its record: listed as unreadable
            elif depth < DEPTH and any_run_below(child):
                walk(child, depth + 1)
            elif child.name not in ("logs", "checkpoints", "export"):
                skipped.append(str(child.relative_to(root)))

    walk(root, 1)
    return found, skipped


def looks_like_run(folder):
    return any((folder / name).exists() for name in ("history.csv", "metrics.json", "checkpoints", "model.keras"))


def any_run_below(folder):
    try:
        return any((child / "config.json").exists() or looks_like_run(child) for child in folder.iterdir() if child.is_dir())
    except OSError:
        return False


def read_run(path, root):
    """One row: what the run folder says of itself, or {"error": why} when it cannot be read."""
    name = str(path.relative_to(root)) if path != root else path.name
    row = {"run": name, "path": str(path)}
    try:
        record = RunRecord.read(path / "config.json")
    except DlcliError as e:
        return {**row, "status": "unreadable", "error": str(e)}
    row.update(recipe=record.recipe, data=record.config.get("data") or record.config.get("dataset") or "", config=record.config)
    metrics, note = {}, None
    if (path / "metrics.json").is_file():
        try:
            metrics = rundir.read_json(path / "metrics.json")
        except DlcliError as e:
            note = str(e)
        if not isinstance(metrics, dict):
            metrics, note = {}, f"{path / 'metrics.json'} is not a JSON object"
    try:
        history = rundir.read_history(path / "history.csv")
    except (OSError, UnicodeDecodeError, ValueError) as e:
        history, note = [], f"cannot read {path / 'history.csv'}: {e}"
    test = metrics.get("test") if isinstance(metrics.get("test"), dict) else {}
    best = hypertune.best_epoch(path)
    kept = hypertune.kept_row(path, history)
    row.update(
        test=test,
        val={k: v for k, v in kept.items() if k.startswith("val_")},
        best_epoch=best,
        epochs=len(history),
        seconds=metrics.get("wall_seconds") if metrics else round(sum(_number(r.get("seconds")) for r in history), 3),
        status=status(path, metrics),
    )
    if note:
        row["note"] = note
    return row


def _number(value):
    return value if isinstance(value, (int, float)) else 0


def status(path, metrics):
    """complete (metrics.json with test metrics), running (a process holds the run's lock),
    else interrupted."""
    if locked(path):
        return "running"
    if metrics.get("test") is not None and (path / "model.keras").is_file():
        return "complete"
    return "interrupted"


def locked(path):
    """Whether a `dlcli train` holds the run folder's lock (rundir.RunLock). Probed with a
    shared lock, released at once."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    except OSError:
        return True
    finally:
        os.close(fd)


def differing_keys(configs):
    """The config keys whose values are not the same in every config. Only keys every config
    has: a key of one recipe alone says which recipe it is, and the recipe has its own column."""
    if len(configs) < 2:
        return []
    shared = [k for k in configs[0] if k not in NOT_COMPARED and all(k in config for config in configs)]
    return [k for k in shared if len({repr(config[k]) for config in configs}) > 1]


def metric(row, key):
    """A row's value for a sort key: test.X, val_X (the kept epoch), seconds, epochs, best_epoch."""
    if key.startswith("test."):
        value = row.get("test", {}).get(key[len("test."):])
    elif key.startswith("val_"):
        value = row.get("val", {}).get(key)
    else:
        value = row.get(key) if key in ("seconds", "epochs", "best_epoch") else None
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def sort_rows(rows, spec):
    key, _, order = spec.partition(":")
    if order not in ("", "asc", "desc"):
        raise DlcliError(f"--sort takes METRIC, METRIC:asc or METRIC:desc. Received: {spec!r}")
    if not any(metric(row, key) is not None for row in rows):
        known = sorted({f"test.{k}" for row in rows for k in row.get("test", {})} | {k for row in rows for k in row.get("val", {})})
        raise DlcliError(
            f"no run has the metric {key!r} to sort by; metrics here: {', '.join([*known, 'seconds', 'epochs', 'best_epoch'])}."
        )
    descending = order == "desc" or (not order and config_lib.auto_mode(key) == "max" and key not in ("seconds", "epochs"))
    with_value = [row for row in rows if metric(row, key) is not None]
    without = [row for row in rows if metric(row, key) is None]
    return sorted(with_value, key=lambda row: metric(row, key), reverse=descending) + without


def print_table(out, root, rows, differing):
    test_keys = list(dict.fromkeys(k for row in rows for k in row.get("test", {})))
    val_keys = list(dict.fromkeys(k for row in rows for k in row.get("val", {})))
    table = Table(box=None, title=f"runs in {root}", title_justify="left")
    for header in ("run", "recipe", "data", *differing, *(f"test.{k}" for k in test_keys), *val_keys, "best epoch", "epochs", "seconds", "status"):
        table.add_column(header, overflow="fold")  # a narrow terminal wraps values rather than cutting them
    for row in rows:
        if "error" in row:
            table.add_row(row["run"], *[""] * (len(differing) + len(test_keys) + len(val_keys) + 5), "unreadable")
            continue
        table.add_row(
            row["run"], row["recipe"], _cell(row["data"]),
            *(_cell(row["differs"].get(k)) for k in differing),
            *(_cell(row["test"].get(k)) for k in test_keys),
            *(_cell(row["val"].get(k)) for k in val_keys),
            _cell(row["best_epoch"]), str(row["epochs"]),
            f"{row['seconds']:.1f}" if isinstance(row["seconds"], (int, float)) else "-",
            row["status"],
        )
    # Piped or redirected, the table keeps its natural width: no terminal to fit, so nothing is folded.
    if not out.is_terminal:
        width = max(out.width, Measurement.get(out, out.options.update_width(10_000), table).maximum)
        out = Console(width=width, stderr=out.stderr, highlight=False, soft_wrap=True)
    out.print(table)
    for row in rows:  # the why, below the table: a long message in a cell would squeeze every column
        if row.get("error") or row.get("note"):
            out.print(f"{row['run']}: {row.get('error') or row.get('note')}", markup=False)


def _cell(value):
    if value is None:
        return "-"
    if isinstance(value, str) and len(value) > 40:
        return "..." + value[-37:]
    return ui.fmt(value)
