"""`dlcli runs`: the table of run folders, the keys that differ, sorting, status, damaged folders."""

import json
import subprocess
import sys

from dlcli.runs import rundir
from dlcli.runs.record import DataSpec, RunRecord
from recipes import cnn, regression
from tests.helpers import invoke


def make_run(folder, recipe, config, accuracy=None, val_loss=(0.5,), best_epoch=None, complete=True):
    """A run folder as `dlcli train` leaves it: config.json, history.csv, metrics.json, model.keras."""
    folder.mkdir(parents=True)
    RunRecord(recipe=recipe, config=config, data=DataSpec("images", "digits", [28, 28, 1])).write(folder / "config.json")
    rundir.write_history(folder / "history.csv", [
        {"epoch": i + 1, "loss": v + 0.1, "val_loss": v, "seconds": 2.0} for i, v in enumerate(val_loss)
    ])
    if complete:
        final = {"test": {"loss": 0.3, "accuracy": accuracy}, "wall_seconds": 12.5}
        if best_epoch is not None:  # early stopping: model.keras holds the best epoch
            final.update(best_epoch=best_epoch, model_epoch=best_epoch)
        rundir.write_json(folder / "metrics.json", final)
        (folder / "model.keras").write_bytes(b"not read by dlcli runs")
    return folder


def config(cls, **changes):
    import dataclasses

    return {**dataclasses.asdict(cls(dataset="digits")), **changes}


def test_table_and_json_show_what_differs(tmp_path):
    make_run(tmp_path / "a", "cnn", config(cnn.Config, learning_rate=0.001), accuracy=0.91, val_loss=(0.6, 0.4))
    make_run(tmp_path / "b", "cnn", config(cnn.Config, learning_rate=0.003, dropout=0.5), accuracy=0.95,
             val_loss=(0.5, 0.3, 0.35), best_epoch=2)
    make_run(tmp_path / "tune" / "trial-000", "cnn", config(cnn.Config, learning_rate=0.01), accuracy=0.80, complete=False)
    (tmp_path / "tune" / "study.log").write_text("")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("not a run")

    result = invoke("runs", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    table = json.loads(result.stdout)
    runs = {row["run"]: row for row in table["runs"]}
    assert sorted(runs) == ["a", "b", "tune/trial-000"]
    assert table["differing_keys"] == ["learning_rate", "dropout"]
    assert runs["b"]["differs"] == {"learning_rate": 0.003, "dropout": 0.5}
    assert runs["b"]["best_epoch"] == 2 and runs["b"]["val"] == {"val_loss": 0.3}  # the kept epoch's
    assert runs["a"]["val"] == {"val_loss": 0.4} and runs["a"]["best_epoch"] is None
    assert (runs["a"]["status"], runs["tune/trial-000"]["status"]) == ("complete", "interrupted")
    assert runs["a"]["seconds"] == 12.5 and runs["tune/trial-000"]["seconds"] == 2.0
    assert table["skipped"] == ["notes"]

    shown = invoke("runs", tmp_path)
    assert shown.exit_code == 0
    for text in ("learning_rate", "dropout", "tune/trial-000", "interrupted", "0.9500", "skipped 1 folder"):
        assert text in shown.stdout, shown.stdout
    assert "seed" not in shown.stdout  # the same everywhere: not a column


def test_sort_by_a_metric(tmp_path):
    for name, accuracy, loss in (("a", 0.91, 0.2), ("b", 0.95, 0.4), ("c", 0.80, 0.1)):
        make_run(tmp_path / name, "cnn", config(cnn.Config, seed=ord(name)), accuracy=accuracy, val_loss=(loss,))
    make_run(tmp_path / "d", "cnn", config(cnn.Config), complete=False, val_loss=())

    def order(spec):
        result = invoke("runs", tmp_path, "--sort", spec, "--json")
        assert result.exit_code == 0, result.output
        return [row["run"] for row in json.loads(result.stdout)["runs"]]

    assert order("test.accuracy") == ["b", "a", "c", "d"]  # best first; runs without it last
    assert order("test.accuracy:asc") == ["c", "a", "b", "d"]
    assert order("val_loss") == ["c", "a", "b", "d"]
    assert order("val_loss:desc") == ["b", "a", "c", "d"]
    bad = invoke("runs", tmp_path, "--sort", "test.f1")
    assert bad.exit_code == 2 and "no run has the metric 'test.f1'" in bad.stderr and "test.accuracy" in bad.stderr
    assert invoke("runs", tmp_path, "--sort", "val_loss:up").exit_code == 2


def test_damaged_folders_and_a_running_run(tmp_path):
    make_run(tmp_path / "ok", "regression", config(regression.Config), accuracy=None)
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "config.json").write_text('{"name": "some other tool"}')
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "history.csv").write_text("epoch,loss\n1,0.5\n")
    make_run(tmp_path / "garbled", "cnn", config(cnn.Config), accuracy=0.5)
    (tmp_path / "garbled" / "metrics.json").write_text("[1, 2")
    running = make_run(tmp_path / "live", "cnn", config(cnn.Config), complete=False)
    lock = rundir.RunLock(running)
    try:
        result = invoke("runs", tmp_path, "--json")
    finally:
        lock.release()
    assert result.exit_code == 0, result.output
    runs = {row["run"]: row for row in json.loads(result.stdout)["runs"]}
    assert runs["live"]["status"] == "running"
    for name in ("broken", "foreign", "half"):
        assert runs[name]["status"] == "unreadable" and runs[name]["error"], runs[name]
    assert runs["garbled"]["status"] == "interrupted" and "metrics.json" in runs["garbled"]["note"]
    assert runs["ok"]["status"] == "complete"
    shown = invoke("runs", tmp_path)
    assert shown.exit_code == 0 and "unreadable" in shown.stdout and "broken: cannot read" in shown.stdout and "Traceback" not in shown.output


def test_a_single_run_folder_and_missing_folders(tmp_path, monkeypatch):
    make_run(tmp_path / "one", "cnn", config(cnn.Config), accuracy=0.9)
    result = invoke("runs", tmp_path / "one", "--json")
    assert result.exit_code == 0 and [r["run"] for r in json.loads(result.stdout)["runs"]] == ["one"]
    missing = invoke("runs", tmp_path / "nope")
    assert missing.exit_code == 2 and "runs folder not found" in missing.stderr
    monkeypatch.setenv("DLCLI_RUNS", str(tmp_path))  # the default folder
    result = invoke("runs", "--json")
    assert result.exit_code == 0 and [r["run"] for r in json.loads(result.stdout)["runs"]] == ["one"]


def test_runs_does_not_import_tensorflow(tmp_path):
    make_run(tmp_path / "a", "cnn", config(cnn.Config), accuracy=0.9)
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from dlcli.cli.app import app\n"
        f"result = CliRunner().invoke(app, ['runs', {str(tmp_path)!r}])\n"
        "assert result.exit_code == 0, result.output\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
