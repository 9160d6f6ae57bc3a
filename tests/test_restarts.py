"""The same command, run again after a restart, continues the run (`--resume-auto`, the default
under TF_CONFIG or AIP_*), and refuses a folder holding another run; all before data loads."""

import json
import random
import signal
import time

import pytest

from dlcli.runs import rundir
from tests.helpers import assert_one_line_error, invoke

QUICK = ["--dataset", "digits", "--set", "steps_per_epoch=6", "--batch-size", "32", "--strategy", "default"]
SINGLE_WORKER = json.dumps({"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "worker", "index": 0}})


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


def latest_number(folder):
    name = rundir.latest_checkpoint(folder)
    return rundir.checkpoint_number(name) if name else -1


def wait_for_checkpoint_after(folder, number, process, timeout=240):
    deadline = time.time() + timeout
    while latest_number(folder) <= number:
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.time() < deadline, f"no checkpoint after {number} in {folder}"
        time.sleep(0.1)


def test_a_vertex_ai_job_restarted_after_sigterm_and_sigkill_ends_like_an_uninterrupted_run(tmp_path):
    """Vertex AI restarts a job by running the same container command with the same AIP_*
    variables. Stopped by SIGTERM (exit 143) and killed by SIGKILL at random points, the
    identical command continues each time and ends with the metrics of an uninterrupted run."""
    from tests.test_fault_tolerance import SHORT_EPOCHS, finish, start

    args = ["train", "cnn", *SHORT_EPOCHS, "--epochs", 3, "--seed", 7, "--deterministic", "--checkpoint-every", 70, "--json"]
    code, out, err = finish(start(*args, "-o", tmp_path / "whole"))
    assert code == 0, err[-2000:]
    whole = json.loads(out)

    model, checkpoints, logs = tmp_path / "model", tmp_path / "checkpoints", tmp_path / "tensorboard"
    vertex = {
        "AIP_MODEL_DIR": str(model), "AIP_CHECKPOINT_DIR": str(checkpoints),
        "AIP_TENSORBOARD_LOG_DIR": str(logs), "CLOUD_ML_JOB_ID": "8812345",
    }
    first = start(*args, env=vertex)
    wait_for_checkpoint_after(checkpoints, 0, first)
    time.sleep(random.uniform(0.2, 1.5))
    first.send_signal(signal.SIGTERM)
    code, out, err = finish(first)
    assert code == 143, err[-2000:]
    assert "resume auto: no checkpoint" in err and "stopped by SIGTERM" in err
    stopped_at = latest_number(checkpoints)

    second = start(*args, env=vertex)  # the restart: the same command, the same environment
    wait_for_checkpoint_after(checkpoints, stopped_at, second)
    time.sleep(random.uniform(0.2, 1.5))
    second.kill()
    second.wait()
    assert latest_number(checkpoints) > stopped_at

    code, out, err = finish(start(*args, env=vertex))
    assert code == 0, err[-2000:]
    assert f"resume auto: continuing the run in {model} from checkpoint ckpt-" in err and "resuming" in err
    assert "SavedModel for Vertex AI" in err and "(checked on 8 test inputs: largest difference" in err
    assert json.loads(out)["test"] == whole["test"]
    assert [row["epoch"] for row in rundir.read_history(model / "history.csv")] == [1, 2, 3]
    # Vertex AI's folders: checkpoints and TensorBoard events where it asked, the job id recorded,
    # and a SavedModel beside model.keras, as its model registry loads it.
    assert not (model / "checkpoints").exists() and not (model / "logs").exists()
    assert list(checkpoints.glob("ckpt-*.index")) and list(logs.glob("events.out.tfevents.*"))
    assert json.loads((model / "config.json").read_text())["job_id"] == "8812345"
    assert (model / "model.keras").is_file() and (model / "variables").is_dir()
    from dlcli.core.lazy import tf

    served = tf.saved_model.load(str(model)).signatures["serve"]
    (outputs,) = served(tf.zeros([2, 28, 28, 1])).values()
    assert outputs.shape == (2, 10)


# ## A run folder that cannot be written is refused before the data loads


def refused_before_data(result, *fragments):
    assert_one_line_error(result, *fragments)
    assert "train /" not in result.output, "the data loaded before the refusal"


def test_a_file_in_the_way_of_the_run_folder_is_one_line_before_data_loads(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    refused_before_data(invoke("train", "cnn", *QUICK, "-o", blocker / "run"), f"cannot write the run folder {blocker / 'run'}", "is a file")
    refused_before_data(invoke("train", "cnn", *QUICK, "-o", blocker), "exists and is not a folder")
    assert blocker.read_text() == "not a folder"


def test_a_folder_without_write_permission_or_on_a_read_only_disk_is_one_line_exit_2(tmp_path):
    """As a user, a mode-555 folder (Permission denied). Root writes through permissions, so as
    root the folder is a read-only tmpfs instead (Read-only file system; skipped where mounting
    is not allowed)."""
    import os
    import subprocess

    locked = tmp_path / "locked"
    locked.mkdir()
    if os.geteuid() == 0:
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(locked)], capture_output=True, text=True)
        if mounted.returncode != 0:
            pytest.skip(f"root ignores permissions and cannot mount a read-only tmpfs here: {mounted.stderr.strip()[:120]}")
        why = "Read-only file system"
    else:
        (locked / "old.txt").write_text("keep")
        locked.chmod(0o555)
        why = "Permission denied"
    before = sorted(p.name for p in locked.iterdir())
    try:
        result = invoke("train", "cnn", *QUICK, "-o", locked / "run")
        refused_before_data(result, f"cannot write the run folder {locked / 'run'}: {why} in {locked}.")
        assert sorted(p.name for p in locked.iterdir()) == before
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(locked)], capture_output=True)
        else:
            locked.chmod(0o755)


def test_a_full_disk_is_one_line_exit_2(tmp_path):
    """A full file system: a small tmpfs (mounting needs root and CAP_SYS_ADMIN; skipped without)."""
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()[:120]}")
    try:
        refused_before_data(invoke("train", "cnn", *QUICK, "-o", disk / "run"), f"cannot write the run folder {disk / 'run'}", "MiB free")
        (disk / "filler").write_bytes(b"\0" * (8 * 2**20 - 4096))
        refused_before_data(invoke("train", "cnn", *QUICK, "-o", disk / "run"), "No space left on device")
        assert sorted(p.name for p in disk.iterdir()) == ["filler"]
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)
