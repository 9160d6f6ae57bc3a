"""Early stopping and the best model: the best weights, their epoch and the patience counter are
part of the checkpoint, so a run preempted and resumed stops at the same epoch and keeps the same
best model as one that never stopped."""

import json
import math
import signal

import numpy as np
import pytest

from dlcli.models import config as config_lib
from dlcli.models.config import TrainConfig
from dlcli.runs import rundir
from dlcli.training import hooks, loop
from tests.helpers import assert_one_line_error, invoke
from tests.test_fault_tolerance import finish, start, wait_for
from tests.test_loop import cnn, tf, tiny_splits, two_replicas


def test_mode_follows_the_metric_unless_given():
    assert hooks.monitor_mode(TrainConfig(), "val_loss") == "min"
    assert hooks.monitor_mode(TrainConfig(), "val_mae") == "min"
    assert hooks.monitor_mode(TrainConfig(), "val_accuracy") == "max"
    assert hooks.monitor_mode(TrainConfig(mode="min"), "val_accuracy") == "min"
    assert config_lib.monitor_of(cnn, TrainConfig()) == "val_loss"
    assert config_lib.monitor_of(cnn, TrainConfig(monitor="val_accuracy")) == "val_accuracy"


def test_best_in_history_skips_missing_and_non_finite_values():
    history = [{"epoch": 1, "val_loss": 0.5}, {"epoch": 2, "val_loss": math.nan}, {"epoch": 3, "val_loss": 0.4}, {"epoch": 4}]
    assert hooks.best_in(history, "val_loss", "min") == (3, 0.4)
    assert hooks.best_in(history, "val_loss", "max") == (1, 0.5)
    assert hooks.best_in(history, "val_accuracy", "max") == (None, None)


class Crash(Exception):
    pass


class CrashInEpoch:
    """Stands for a SIGKILL: raises in the first steps of `epoch` (1-based), after the
    checkpoint of the epoch before it was saved."""

    def __init__(self, epoch, steps_per_epoch):
        self.after_step = (epoch - 1) * steps_per_epoch

    def on_steps(self, global_step, logs):
        if global_step > self.after_step:
            raise Crash


def weights(path):
    from dlcli.models.safe_model import load_keras

    return load_keras(path).get_weights()


def assert_same_weights(a, b):
    for x, y in zip(weights(a), weights(b), strict=True):
        np.testing.assert_array_equal(x, y)


# min_delta 0.2 on val_loss: the first epochs improve by more, then patience 1 runs out.
STOPPING = dict(arch="tf1", epochs=10, batch_size=16, dropout=0.0, learning_rate=3e-3, early_stopping=1, min_delta=0.2)


@pytest.mark.parametrize("make_strategy", [tf.distribute.get_strategy, two_replicas], ids=["default", "mirrored"])
def test_a_run_crashed_after_an_epoch_and_resumed_keeps_the_same_best_model(make_strategy, tmp_path):
    config = cnn.Config(**STOPPING)
    whole = loop.fit(cnn, config, tiny_splits(), make_strategy(), tmp_path / "whole").metrics
    assert whole["stopped_epoch"] and whole["stopped_epoch"] < config.epochs, whole
    assert whole["best_epoch"] < whole["stopped_epoch"] and whole["model_epoch"] == whole["best_epoch"]
    history = rundir.read_history(tmp_path / "whole" / "history.csv")
    assert len(history) == whole["stopped_epoch"]
    assert whole["best"] == {"monitor": "val_loss", "value": history[whole["best_epoch"] - 1]["val_loss"]}

    # Crash in the epoch after the best one: the checkpoint resumed holds the best weights and
    # a patience counter that has started to count.
    crash_epoch = whole["best_epoch"] + 1
    with pytest.raises(Crash):
        loop.fit(cnn, config, tiny_splits(), make_strategy(), tmp_path / "resumed", hooks=[CrashInEpoch(crash_epoch, 9)])
    resumed = loop.fit(cnn, config, tiny_splits(), make_strategy(), tmp_path / "resumed", resume=True).metrics
    for key in ("test", "best_epoch", "best", "stopped_epoch", "model_epoch"):
        assert resumed[key] == whole[key], key
    assert_same_weights(tmp_path / "whole" / "model.keras", tmp_path / "resumed" / "model.keras")
    assert_same_weights(tmp_path / "whole" / "model-last.keras", tmp_path / "resumed" / "model-last.keras")
    # model.keras is the best epoch's model: its test loss is not the last model's.
    last = [w for w in weights(tmp_path / "whole" / "model-last.keras")]
    assert any(not np.array_equal(a, b) for a, b in zip(weights(tmp_path / "whole" / "model.keras"), last))

    # Resumed again, even with more epochs, a stopped run stays stopped and says the same.
    again = loop.fit(cnn, cnn.Config(**{**STOPPING, "epochs": 12}), tiny_splits(), make_strategy(), tmp_path / "resumed", resume=True)
    assert again.metrics["best_epoch"] == whole["best_epoch"] and again.metrics["test"] == whole["test"]
    assert len(again.history) == whole["stopped_epoch"]


def test_without_early_stopping_the_best_epoch_is_reported_and_the_model_is_the_last(tmp_path):
    config = cnn.Config(**{**STOPPING, "early_stopping": 0, "epochs": 3})
    final = loop.fit(cnn, config, tiny_splits(), tf.distribute.get_strategy(), tmp_path).metrics
    history = rundir.read_history(tmp_path / "history.csv")
    best = min(history, key=lambda row: row["val_loss"])
    assert final["best_epoch"] == best["epoch"] and final["best"]["value"] == best["val_loss"]
    assert final["stopped_epoch"] is None and final["model_epoch"] == 3
    assert not (tmp_path / "model-last.keras").exists()


QUICK = ["--dataset", "digits", "--set", "steps_per_epoch=4", "--batch-size", "32", "--strategy", "default", "--epochs", 2]


@pytest.mark.parametrize(
    "extra, fragments",
    [
        (["--early-stopping", 2, "--set", "validation_split=0"], ["monitor val_loss cannot be followed", "no validation split"]),
        (["--early-stopping", 2, "--set", "monitor=val_auc"], ["monitor val_auc cannot be followed", "loss, accuracy, val_loss, val_accuracy"]),
        (["--early-stopping", -1], ["early_stopping must be in [0, 1000000]"]),
        (["--set", "min_delta=-0.1"], ["min_delta must be >= 0"]),
        (["--set", "mode=up"], ["mode must be one of auto, min, max"]),
    ],
)
def test_a_monitor_the_run_does_not_produce_is_refused_before_training(tmp_path, extra, fragments):
    run_dir = tmp_path / "run"
    result = invoke("train", "cnn", *QUICK, *extra, "-o", run_dir)
    assert_one_line_error(result, *fragments)
    assert not run_dir.exists(), "a refused run left files behind"


def test_resuming_a_run_without_early_stopping_with_it_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    first = invoke("train", "cnn", *QUICK, "--epochs", 1, "-o", run_dir)
    assert first.exit_code == 0, first.output
    before = (run_dir / "metrics.json").read_bytes()
    result = invoke("train", "cnn", *QUICK, "--early-stopping", 2, "-o", run_dir, "--resume")
    assert_one_line_error(result, "was saved by a run without early stopping", "resume it without --early-stopping")
    assert (run_dir / "metrics.json").read_bytes() == before


# Epochs long enough (one step per call) for SIGTERM to land inside one.
SIGTERM_RUN = [
    "train", "cnn", "--dataset", "digits", "--set", "steps_per_epoch=30", "--set", "steps_per_execution=1", "--batch-size", 32,
    "--epochs", 12, "--seed", 3, "--deterministic", "--early-stopping", 1, "--set", "min_delta=0.3", "--strategy", "default", "--json",
]


def test_a_preempted_early_stopped_run_ends_like_an_uninterrupted_one(tmp_path):
    """The acceptance test: SIGTERM through the real entry point after the first epoch, then
    --resume; with --deterministic the run stops at the same epoch, with the same best epoch,
    test metrics and model weights (best and last) as a run that was never stopped."""
    uninterrupted = start(*SIGTERM_RUN, "-o", tmp_path / "whole")  # side by side, to save time
    run_dir = tmp_path / "preempted"
    process = start(*SIGTERM_RUN, "-o", run_dir)
    wait_for(run_dir / "checkpoints" / "checkpoint", process)  # the end of epoch 1
    process.send_signal(signal.SIGTERM)
    code, out, err = finish(process)
    assert code == 143 and "stopped by SIGTERM" in err, err[-2000:]
    code, out, err = finish(uninterrupted)
    assert code == 0, err[-2000:]
    whole = json.loads(out)
    assert whole["stopped_epoch"] and whole["stopped_epoch"] < 12 and whole["best_epoch"] < whole["stopped_epoch"], whole

    code, out, err = finish(start(*SIGTERM_RUN, "-o", run_dir, "--resume"))
    assert code == 0, err[-2000:]
    resumed = json.loads(out)
    for key in ("test", "best_epoch", "best", "stopped_epoch", "model_epoch"):
        assert resumed[key] == whole[key], key
    for name in ("model.keras", "model-last.keras"):
        assert_same_weights(tmp_path / "whole" / name, run_dir / name)
    assert [row["epoch"] for row in rundir.read_history(run_dir / "history.csv")] == list(range(1, whole["stopped_epoch"] + 1))
    assert f"model.keras: epoch {whole['best_epoch']} of {whole['stopped_epoch']}, the best val_loss" in err
    assert f"early stopping after epoch {whole['stopped_epoch']}: val_loss has not improved" in err

    # train.log holds both attempts as the terminal showed them, in plain text.
    log = (run_dir / "train.log").read_text()
    assert log.count("--- ") == 2 and "\x1b" not in log
    assert "error: stopped by SIGTERM" in log and "resuming " in log and "early stopping after epoch" in log
    epoch_lines = [line.split()[1] for line in log.splitlines() if line.startswith("epoch ")]
    assert epoch_lines == [str(e) for e in range(1, whole["stopped_epoch"] + 1)]
