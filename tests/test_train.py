"""End to end: `dlcli train` then `dlcli evaluate` on the bundled digits, under the default
strategy in-process and under MirroredStrategy on two logical CPUs as a real subprocess."""

import csv
import json
import os

import pytest
from typer.testing import CliRunner

from dlcli.cli.app import app
from tests.helpers import assert_one_line_error, invoke

runner = CliRunner()


def run_json(*args):
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """The README's first command: 20 epochs of cnn on digits (about 10 s here)."""
    run_dir = tmp_path_factory.mktemp("runs") / "digits"
    final = run_json("train", "cnn", "--dataset", "digits", "--epochs", 20, "--strategy", "default", "-o", run_dir, "--json")
    return run_dir, final


def test_digits_reaches_097_and_leaves_a_complete_run(digits_run):
    run_dir, final = digits_run
    assert final["test"]["accuracy"] >= 0.97
    assert final["test_examples"] == 359
    saved = json.loads((run_dir / "config.json").read_text())
    assert saved["recipe"] == "cnn" and saved["config"]["epochs"] == 20 and saved["config"]["dataset"] == "digits"
    assert saved["strategy"]["name"] == "default" and saved["strategy"]["replicas"] == 1
    assert saved["strategy"]["visible_devices"] and set(saved["versions"]) == {"dlcli", "tensorflow", "keras"}
    assert saved["strategy"]["TF_ENABLE_ONEDNN_OPTS"] == os.environ.get("TF_ENABLE_ONEDNN_OPTS")  # "1" on x86: dlcli/__init__.py
    from tensorflow.python.util import _pywrap_util_port

    assert saved["strategy"]["onednn"] is _pywrap_util_port.IsMklEnabled()  # TensorFlow's answer, not the variable's
    rows = list(csv.DictReader((run_dir / "history.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 21))
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert (run_dir / "checkpoints" / "checkpoint").is_file()
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == final["test"]
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")], "temporary files left behind"


def test_evaluate_reproduces_the_test_accuracy(digits_run):
    run_dir, final = digits_run
    evaluation = run_json("evaluate", run_dir, "--json")
    assert abs(evaluation["test"]["accuracy"] - final["test"]["accuracy"]) <= 0.002
    assert json.loads((run_dir / "evaluation.json").read_text())["test"] == evaluation["test"]


def test_mirrored_on_two_cpus_matches_the_default_run(digits_run, dlcli_subprocess, tmp_path):
    _, final = digits_run
    result = dlcli_subprocess(
        "train", "cnn", "--dataset", "digits", "--epochs", 20, "--strategy", "mirrored",
        "--cpu-devices", 2, "-o", tmp_path / "mirrored", "--json",
    )
    assert result.returncode == 0, result.stderr[-2000:]
    mirrored = json.loads(result.stdout)
    assert "strategy mirrored (MirroredStrategy), 2 replica(s)" in result.stderr and "global batch 128, 64 per replica" in result.stderr
    assert abs(mirrored["test"]["accuracy"] - final["test"]["accuracy"]) <= 0.01


def test_cnn_on_several_cores_trains_one_micro_batch_per_core(digits_run, dlcli_subprocess, tmp_path):
    """micro_batches=auto in a fresh process: one part of each batch per core, each op on one
    thread; the run records what it did, and keeps `auto` for a resume to decide again."""
    from dlcli.training import strategy

    cores = strategy.cpu_cores()
    if cores < 2 or 128 % cores:
        pytest.skip(f"{cores} core(s): auto keeps whole batches")
    _, final = digits_run
    result = dlcli_subprocess("train", "cnn", "--dataset", "digits", "--epochs", 20, "-o", tmp_path / "run", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"{cores} micro-batches of {128 // cores} side by side, one thread per op (one per core)" in result.stderr
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["config"]["micro_batches"] == 0
    assert saved["strategy"]["micro_batches"] == cores and saved["strategy"]["op_threads"] == [1, cores]
    assert abs(json.loads(result.stdout)["test"]["accuracy"] - final["test"]["accuracy"]) <= 0.01


def test_micro_batches_auto_only_where_it_was_measured(monkeypatch):
    from dlcli.training import registry, strategy

    cnn, lstm = registry.load("cnn"), registry.load("lstm")
    monkeypatch.setattr(strategy, "cpu_cores", lambda: 2)
    assert strategy.micro_batches(cnn.Config(micro_batches=4), cnn, "auto") == 4  # as asked, anywhere
    assert strategy.micro_batches(lstm.Config(), lstm, "auto") == 1  # not measured for lstm
    assert strategy.micro_batches(cnn.Config(), cnn, "mirrored") == 1
    assert strategy.micro_batches(cnn.Config(), cnn, "auto", cpu_devices=2) == 1
    assert strategy.micro_batches(cnn.Config(batch_size=15), cnn, "auto") == 1
    import tensorflow as tf

    tf.constant(1.0) + 1  # TensorFlow's runtime has started: the threads cannot change, so whole batches,
    # unless an earlier run in this process already set them as micro-batches need (TensorFlow then accepts the same values)
    threads = tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads()
    assert strategy.micro_batches(cnn.Config(), cnn, "auto") == (2 if threads == (1, 2) else 1)


def test_micro_batches_that_do_not_divide_the_batch_are_one_line():
    result = invoke("train", "cnn", "--dataset", "digits", "--epochs", 1, "--strategy", "default", "--set", "micro_batches=3")
    assert_one_line_error(result, "each replica's batch (128) must be a multiple of micro_batches", "micro_batches=3")


def test_resume_and_overwrite_through_the_cli(tmp_path):
    run_dir = tmp_path / "run"
    quick = ["--dataset", "digits", "--strategy", "default", "-o", run_dir, "--json"]
    run_json("train", "cnn", "--epochs", 2, *quick)
    resumed = runner.invoke(app, ["train", "cnn", "--epochs", "3", "--resume", *map(str, quick)])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming after epoch 2" in resumed.stderr
    assert [r["epoch"] for r in csv.DictReader((run_dir / "history.csv").open())] == ["1", "2", "3"]
    (run_dir / "export").mkdir()
    (run_dir / "export" / "model.tflite").write_bytes(b"the old model's export")
    run_json("train", "cnn", "--epochs", 1, "--overwrite", *quick)
    assert [r["epoch"] for r in csv.DictReader((run_dir / "history.csv").open())] == ["1"]
    assert not (run_dir / "export").exists()  # no export of the old model beside the new one


@pytest.mark.parametrize("flags", [["--precision", "mixed_bfloat16"], ["--precision", "mixed_float16"], ["--jit"]])
def test_mixed_precision_and_xla_train_and_keep_float32_outputs(tmp_path, flags):
    final = run_json("train", "cnn", "--dataset", "digits", "--epochs", 2, "--strategy", "default", *flags, "-o", tmp_path / "run", "--json")
    assert final["test"]["accuracy"] > 0.5
    import keras

    model = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert model.outputs[0].dtype == "float32"
    keras.mixed_precision.set_global_policy("float32")


def test_a_failed_resume_or_overwrite_leaves_the_run_as_it_was(tmp_path):
    run_dir = tmp_path / "run"
    quick = ["--dataset", "digits", "--strategy", "default", "-o", run_dir]
    run_json("train", "cnn", "--epochs", 1, *quick, "--json")
    snapshot = {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    failures = [
        (["--epochs", "2", "--set", "arch=tf1", "--resume"], "does not fit this model and config"),
        (["--epochs", "2", "--batch-size", "4096", "--overwrite"], "larger than the 1294 training examples"),
    ]
    for extra, message in failures:
        result = runner.invoke(app, ["train", "cnn", *extra, *map(str, quick)])
        assert result.exit_code == 2, result.output
        assert message in result.stderr and result.stderr.count("\n") == 1
        assert {p.relative_to(run_dir): p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == snapshot


def test_the_run_has_pictures_and_tensorboard_events(digits_run):
    import tensorflow as tf

    run_dir, final = digits_run
    for name in ("curves.png", "confusion_matrix.png", "samples.png"):
        image = tf.io.decode_png((run_dir / name).read_bytes())
        assert image.shape[0] > 100 and image.shape[1] > 100 and int(tf.reduce_max(image)) > 0, name
    assert set(final["pictures"]) >= {"curves.png", "confusion_matrix.png", "samples.png"}
    matrix = [line.split(",")[1:] for line in (run_dir / "confusion_matrix.csv").read_text().splitlines()[1:]]
    assert sum(int(v) for row in matrix for v in row) == final["test_examples"]
    tags = {}
    for events in (run_dir / "logs").rglob("events.out.tfevents.*"):
        for record in tf.data.TFRecordDataset(str(events)):
            event = tf.compat.v1.Event.FromString(record.numpy())
            tags.setdefault(events.parent.name, set()).update(value.tag for value in event.summary.value)
    assert {"epoch_loss", "epoch_accuracy", "batch_loss"} <= tags["train"] and {"epoch_loss", "epoch_accuracy"} <= tags["validation"]


def test_plot_redraws_the_pictures(digits_run, tmp_path):
    run_dir, _ = digits_run
    (run_dir / "curves.png").unlink()
    result = runner.invoke(app, ["plot", str(run_dir)])
    assert result.exit_code == 0 and (run_dir / "curves.png").is_file()
    result = runner.invoke(app, ["plot", str(tmp_path)])
    assert result.exit_code == 2 and "has no history.csv" in result.stderr
