"""TensorBoard as people use it, read back with TensorBoard's own reader: training and
validation as two runs of the same scalars, the learning rate and examples/s, and an HParams
session per run that `tensorboard --logdir runs` compares; and train.log, the terminal's text."""

import json
import re

import pytest
from typer.testing import CliRunner

from dlcli.cli.app import app

runner = CliRunner()
QUICK = ["--dataset", "digits", "--set", "steps_per_epoch=4", "--batch-size", "32", "--strategy", "default"]


def train(*args):
    result = runner.invoke(app, ["train", "cnn", *QUICK, *map(str, args)])
    assert result.exit_code == 0, result.output
    return result


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs under one folder; the first stopped after 2 epochs and resumed to 3."""
    root = tmp_path_factory.mktemp("runs")
    train("--epochs", 2, "-o", root / "a")
    train("--epochs", 3, "-o", root / "a", "--resume")
    train("--epochs", 1, "--learning-rate", 0.01, "--early-stopping", 2, "-o", root / "b")
    return root


@pytest.fixture(scope="module")
def multiplexer(runs):
    from tensorboard.backend.event_processing import plugin_event_multiplexer

    events = plugin_event_multiplexer.EventMultiplexer()
    events.AddRunsFromDirectory(str(runs))
    events.Reload()
    return events


def scalars(events, run, tag):
    from tensorboard.util import tensor_util

    return [(e.step, float(tensor_util.make_ndarray(e.tensor_proto))) for e in events.Tensors(run, tag)]


def test_training_and_validation_are_two_runs_of_the_same_scalars(multiplexer):
    assert {"a/logs", "a/logs/train", "a/logs/validation", "b/logs", "b/logs/train", "b/logs/validation"} <= set(multiplexer.Runs())
    train_tags = set(multiplexer.Runs()["a/logs/train"]["tensors"])
    validation_tags = set(multiplexer.Runs()["a/logs/validation"]["tensors"])
    assert {"epoch_loss", "epoch_accuracy", "epoch_learning_rate", "epoch_examples_per_sec", "batch_loss", "batch_accuracy"} <= train_tags
    assert validation_tags == {"epoch_loss", "epoch_accuracy"}
    # One point per epoch in each: the resumed run added epoch 3 and repeated none.
    for run in ("a/logs/train", "a/logs/validation"):
        assert [step for step, _ in scalars(multiplexer, run, "epoch_loss")] == [1, 2, 3]
    assert [step for step, _ in scalars(multiplexer, "a/logs/train", "batch_loss")] == list(range(1, 13))
    assert all(value > 0 for _, value in scalars(multiplexer, "a/logs/train", "epoch_examples_per_sec"))


def test_runs_are_hparams_sessions_that_tensorboard_compares(runs, multiplexer):
    from tensorboard import context
    from tensorboard.backend.event_processing import data_provider
    from tensorboard.plugins import base_plugin
    from tensorboard.plugins.hparams import backend_context, metadata

    sessions = multiplexer.PluginRunToTagToContent(metadata.PLUGIN_NAME)
    assert {"a/logs", "b/logs"} <= set(sessions)
    start = metadata.parse_session_start_info_plugin_data(sessions["b/logs"][metadata.SESSION_START_INFO_TAG])
    assert start.hparams["recipe"].string_value == "cnn" and start.hparams["learning_rate"].number_value == 0.01
    assert start.hparams["early_stopping"].number_value == 2 and start.hparams["monitor"].string_value == "val_loss"

    # What the HParams tab shows: the hyperparameters and the metrics of every session.
    provider = data_provider.MultiplexerDataProvider(multiplexer, str(runs))
    hparams = backend_context.Context(base_plugin.TBContext(logdir=str(runs), multiplexer=multiplexer, data_provider=provider))
    request = context.RequestContext()
    found = hparams.hparams_metadata(request, "")
    experiment = hparams.experiment_from_metadata(request, "", True, found, hparams.hparams_from_data_provider(request, "", None))
    assert {"recipe", "learning_rate", "epochs", "batch_size", "early_stopping"} <= {info.name for info in experiment.hparam_infos}
    metrics = {(m.name.group, m.name.tag) for m in experiment.metric_infos}
    assert {("validation", "epoch_loss"), ("train", "epoch_loss"), ("", "test_accuracy"), ("", "best_val_loss")} <= metrics
    # Each finish logs the final metrics at its last epoch; TensorBoard shows the latest.
    test_accuracy = scalars(multiplexer, "a/logs", "test_accuracy")
    assert [step for step, _ in test_accuracy] == [2, 3]
    assert test_accuracy[-1][1] == pytest.approx(json.loads((runs / "a" / "metrics.json").read_text())["test"]["accuracy"])


def test_train_log_holds_what_the_terminal_showed_and_grows_on_resume(runs):
    log = (runs / "a" / "train.log").read_text()
    headers = [line for line in log.splitlines() if line.startswith("--- ")]
    # "--- TIME UTC dlcli ARGS": in-process, ARGS are the test runner's own (none under plain `pytest`).
    assert len(headers) == 2 and all(re.match(r"--- 20\d\d-\d\d-\d\d \S+ UTC dlcli( |$)", header) for header in headers), headers
    assert "\x1b" not in log and "[bold]" not in log and "━" not in log
    assert [line.split()[1] for line in log.splitlines() if line.startswith("epoch ")] == ["1", "2", "3"]
    assert "resuming after epoch 2" in log and log.count("\ntest loss ") == 2 and "strategy default" in log
    assert f"run folder {runs / 'a'}" in log


def test_train_log_leaves_out_colours_and_progress_bar_frames_a_terminal_shows(tmp_path):
    import io

    from rich.console import Console

    from dlcli.cli.commands.train import Reporter
    from dlcli.core import ui

    screen = io.StringIO()
    terminal = ui.LoggedConsole(Console(file=screen, force_terminal=True, color_system="truecolor", width=100))
    terminal.print("[bold]cnn[/bold] on digits")  # printed before the run folder exists: kept until it does
    with Reporter(terminal, header="dlcli train cnn") as report:
        report("start", replicas=1, global_batch=32, steps_per_epoch=4)
        report("run_dir_ready", run_dir=tmp_path)
        report("epoch_start", epoch=1, epochs=1, steps=4, done=0)
        report("steps", done=2, logs={"loss": 1.5})
        row = {"epoch": 1, "loss": 1.25, "val_loss": 1.0, "learning_rate": 0.001, "seconds": 0.5, "examples_per_sec": 256.0}
        report("epoch_end", row=row)
    assert "\x1b[" in screen.getvalue()  # the terminal got colours (and the bar)
    lines = (tmp_path / "train.log").read_text().splitlines()
    assert lines[0].startswith("--- ") and lines[0].endswith(" dlcli train cnn")
    assert lines[1:] == [
        "cnn on digits",
        "global batch 32, 32 per replica; 4 steps per epoch",
        "epoch   1  loss 1.2500  val_loss 1.0000  learning_rate 0.0010  256 ex/s  0.5 s",
    ]
