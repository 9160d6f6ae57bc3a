"""The same command, run again after a restart, continues the run (`--resume-auto`, the default
under TF_CONFIG or AIP_*), and refuses a folder holding another run; all before data loads."""

import json

import pytest
from typer.testing import CliRunner

from dlcli import rundir
from dlcli.cli import app
from tests.test_cli import assert_one_line_error

runner = CliRunner()
QUICK = ["--dataset", "digits", "--set", "steps_per_epoch=6", "--batch-size", "32", "--strategy", "default"]
SINGLE_WORKER = json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}})


def invoke(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def no_platform(monkeypatch):
    for name in ("TF_CONFIG", "AIP_MODEL_DIR", "AIP_CHECKPOINT_DIR", "AIP_TENSORBOARD_LOG_DIR", "CLOUD_ML_JOB_ID"):
        monkeypatch.delenv(name, raising=False)


def test_resume_auto_starts_then_continues_then_refuses_another_config(tmp_path):
    run = tmp_path / "run"
    first = invoke("train", "cnn", *QUICK, "--epochs", 1, "-o", run, "--resume-auto")
    assert first.exit_code == 0, first.output
    assert f"resume auto: no checkpoint in {run / 'checkpoints'}; starting a new run in {run}" in first.output
    again = invoke("train", "cnn", *QUICK, "--epochs", 2, "-o", run, "--resume-auto")  # epochs may change
    assert again.exit_code == 0, again.output
    assert f"resume auto: continuing the run in {run} from checkpoint ckpt-6" in again.output
    assert "resuming after epoch 1" in again.output
    assert [row["epoch"] for row in rundir.read_history(run / "history.csv")] == [1, 2]
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert_one_line_error(
        invoke("train", "cnn", *QUICK, "--epochs", 2, "--learning-rate", 0.5, "-o", run, "--resume-auto"),
        "holds a cnn run of another config (learning_rate=", "-> 0.5", "--overwrite",
    )
    assert_one_line_error(invoke("train", "softmax", *QUICK, "-o", run, "--resume-auto"), "run of recipe 'cnn', not 'softmax'")
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before, "a refusal touched the run folder"


def test_on_a_platform_that_restarts_jobs_the_same_command_continues(tmp_path, monkeypatch):
    monkeypatch.setenv("TF_CONFIG", SINGLE_WORKER)  # one worker: TF_CONFIG set, default strategy
    run = tmp_path / "run"
    args = ["train", "cnn", *QUICK, "--epochs", 1, "-o", run]
    first = invoke(*args)
    assert first.exit_code == 0, first.output
    assert "resume auto: no checkpoint" in first.output
    second = invoke(*args)
    assert second.exit_code == 0, second.output
    assert "resume auto: continuing the run" in second.output
    # --overwrite still starts anew; --resume still insists on a checkpoint's run.
    third = invoke(*args, "--overwrite")
    assert third.exit_code == 0 and "resume auto" not in third.output
    assert_one_line_error(invoke(*args[:-2], "-o", tmp_path / "none", "--resume"), "--resume needs an existing run folder")


def test_resume_auto_refuses_folders_that_are_not_this_run(tmp_path):
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert_one_line_error(invoke("train", "cnn", *QUICK, "-o", foreign, "--resume-auto"), "not a dlcli run (no config.json)")
    assert (foreign / "notes.txt").read_text() == "mine"
    assert_one_line_error(invoke("train", "cnn", *QUICK, "-o", foreign, "--resume-auto", "--overwrite"), "contradict")


def test_config_changes_ignore_only_what_a_continued_run_may_change():
    saved = {"epochs": 5, "checkpoint_every": 0, "learning_rate": 1e-3, "seed": 0, "data_dir": "/a"}
    assert rundir.config_changes(saved, {**saved, "epochs": 9, "checkpoint_every": 10, "data_dir": "/b"}) == []
    assert rundir.config_changes(saved, {**saved, "seed": 1, "learning_rate": 2e-3}) == ["learning_rate", "seed"]
    assert rundir.config_changes(saved, {k: v for k, v in saved.items() if k != "seed"}) == ["seed"]


def test_latest_checkpoint_is_read_without_tensorflow_and_needs_its_index(tmp_path):
    assert rundir.latest_checkpoint(tmp_path) is None
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "ckpt-12"\nall_model_checkpoint_paths: "ckpt-12"\n')
    assert rundir.latest_checkpoint(tmp_path) is None  # pointed at, but its files are not there
    (tmp_path / "ckpt-12.index").write_bytes(b"")
    assert rundir.latest_checkpoint(tmp_path) == "ckpt-12" and rundir.checkpoint_number("ckpt-12") == 12
