"""Multi-worker training on loopback, and runs that are killed, preempted and resumed.

These drive the real `dlcli` entry point as subprocesses, as a cluster manager would."""

import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO

ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
# Long enough epochs to be interrupted in the middle; one step per call so signals land quickly.
SLOW_EPOCHS = ["--dataset", "digits", "--set", "steps_per_epoch=600", "--set", "steps_per_execution=1", "--batch-size", "32"]
SHORT_EPOCHS = ["--dataset", "digits", "--set", "steps_per_epoch=150", "--set", "steps_per_execution=1", "--batch-size", "32"]


def start(*args, env=None):
    return subprocess.Popen(
        [sys.executable, "-m", "dlcli", *map(str, args)], cwd=REPO, env={**ENV, **(env or {})},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def finish(process, timeout=300):
    out, err = process.communicate(timeout=timeout)
    return process.returncode, out, err


def wait_for(path, process, timeout=120):
    deadline = time.time() + timeout
    while not Path(path).exists():
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.1)


def epochs_in(run_dir):
    return [int(row["epoch"]) for row in csv.DictReader((Path(run_dir) / "history.csv").open())]


def worker_scratch():
    return set(Path(tempfile.gettempdir()).glob("dlcli-worker-*"))


def test_two_workers_on_loopback_agree_and_only_the_chief_writes(tmp_path):
    scratch_before = worker_scratch()
    run_dir = tmp_path / "run"
    code, out, err = finish(start("launch", "--workers", 2, "--", "train", "cnn", "--dataset", "digits", "--epochs", 2, "-o", run_dir))
    assert code == 0, err[-3000:] + out[-3000:]
    tests = {w: line for w, line in re.findall(r"\[worker (\d)\] (test loss .*)", out)}
    assert set(tests) == {"0", "1"} and tests["0"] == tests["1"]
    assert "multi-worker (CollectiveAllReduceStrategy), 2 replica(s)" in out and "global batch 128, 64 per replica" in out
    written = {p.name for p in run_dir.iterdir()}
    assert written >= {"config.json", "model.keras", "checkpoints", "history.csv", "metrics.json", "logs", "curves.png"}
    assert len(list((run_dir / "logs").rglob("events.out.tfevents.*"))) == 3, "only the chief writes TensorBoard events"
    assert json.loads((run_dir / "config.json").read_text())["strategy"]["replicas"] == 2
    assert worker_scratch() == scratch_before, "a worker left its scratch checkpoint folder behind"


def test_sigterm_saves_a_checkpoint_mid_epoch_and_resume_continues_from_it(tmp_path):
    run_dir = tmp_path / "run"
    process = start("train", "cnn", *SLOW_EPOCHS, "--epochs", 2, "-o", run_dir)
    wait_for(run_dir / "checkpoints" / "checkpoint", process)  # the end of epoch 1
    time.sleep(1.5)
    process.send_signal(signal.SIGTERM)
    code, out, err = finish(process)
    assert code == 143, err[-2000:]
    stopped = re.search(r"stopped by SIGTERM in epoch 2 at step (\d+)/600; checkpoint saved", err)
    assert stopped, err[-2000:]
    step = int(stopped.group(1))
    assert 0 < step < 600 and (run_dir / "checkpoints" / f"ckpt-{600 + step}.index").is_file()
    code, out, err = finish(start("train", "cnn", *SLOW_EPOCHS, "--epochs", 2, "-o", run_dir, "--resume"))
    assert code == 0, err[-2000:]
    assert f"resuming in epoch 2 at step {step}/600" in out
    assert epochs_in(run_dir) == [1, 2]


def test_a_killed_run_resumes_to_the_same_result(tmp_path):
    """SIGKILL at a random point, then --resume: the final test metrics match an uninterrupted
    run exactly (with --deterministic), and history.csv neither repeats nor skips an epoch."""
    args = ["train", "cnn", *SHORT_EPOCHS, "--epochs", 3, "--seed", 7, "--deterministic", "--checkpoint-every", 70, "--json"]
    code, out, err = finish(start(*args, "-o", tmp_path / "whole"))
    assert code == 0, err[-2000:]
    whole = json.loads(out)
    run_dir = tmp_path / "killed"
    process = start(*args, "-o", run_dir)
    wait_for(run_dir / "checkpoints" / "checkpoint", process)  # the first checkpoint, at step 70
    time.sleep(random.uniform(0.2, 1.5))
    process.kill()
    process.wait()
    code, out, err = finish(start(*args, "-o", run_dir, "--resume"))
    assert code == 0, err[-2000:]
    assert "resuming" in err
    assert json.loads(out)["test"] == whole["test"]
    assert epochs_in(run_dir) == [1, 2, 3]


def test_a_killed_worker_stops_the_job_and_the_same_command_completes_it(tmp_path):
    psutil = pytest.importorskip("psutil")
    run_dir = tmp_path / "run"
    args = ["launch", "--workers", 2, "--", "train", "cnn", *SHORT_EPOCHS, "--epochs", 2, "--checkpoint-every", 50, "-o", run_dir]
    launcher = start(*args)
    wait_for(run_dir / "checkpoints" / "checkpoint", launcher, timeout=180)  # step 50
    workers = psutil.Process(launcher.pid).children()
    assert len(workers) == 2
    workers[1].kill()
    code, out, err = finish(launcher)
    assert code != 0
    assert "error: worker 1 exited with code -9; stopped the other workers" in err
    # The identical command again, as a platform restarts a job: under TF_CONFIG every worker
    # decides by itself to continue (resume auto), from the checkpoint the chief picked.
    code, out, err = finish(start(*args))
    assert code == 0, err[-3000:] + out[-3000:]
    assert re.search(r"\[worker 0\] resume auto: continuing the run in .* from checkpoint ckpt-\d+", out), out[-3000:]
    assert re.search(r"\[worker 1\] resume auto: continuing the run", out), out[-3000:]
    assert "resuming" in out
    assert epochs_in(run_dir) == [1, 2]


def test_ctrl_c_saves_a_checkpoint_and_exits_130(tmp_path):
    run_dir = tmp_path / "run"
    process = start("train", "cnn", *SLOW_EPOCHS, "--epochs", 2, "-o", run_dir)
    wait_for(run_dir / "checkpoints" / "checkpoint", process)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    code, out, err = finish(process)
    assert code == 130, err[-2000:]
    assert re.search(r"stopped by SIGINT in epoch 2 at step \d+/600; checkpoint saved", err), err[-2000:]
    assert len(list((run_dir / "checkpoints").glob("ckpt-*.index"))) == 2


def test_a_restarted_two_worker_launch_ends_like_an_uninterrupted_one(tmp_path):
    """A worker killed mid-run stops the job; the identical `dlcli launch` command again (the
    workers see TF_CONFIG, so they resume by themselves) ends with the uninterrupted metrics."""
    psutil = pytest.importorskip("psutil")
    train = ["train", "cnn", *SHORT_EPOCHS, "--epochs", 2, "--seed", 7, "--deterministic", "--checkpoint-every", 50]
    code, out, err = finish(start("launch", "--workers", 2, "--", *train, "-o", tmp_path / "whole"))
    assert code == 0, err[-3000:] + out[-3000:]
    run_dir = tmp_path / "run"
    args = ["launch", "--workers", 2, "--", *train, "-o", run_dir]
    launcher = start(*args)
    wait_for(run_dir / "checkpoints" / "checkpoint", launcher, timeout=180)
    time.sleep(random.uniform(0.2, 2.0))
    psutil.Process(launcher.pid).children()[random.randrange(2)].kill()
    code, out, err = finish(launcher)
    assert code != 0
    code, out, err = finish(start(*args))
    assert code == 0, err[-3000:] + out[-3000:]
    assert "resume auto: continuing the run" in out
    metrics = [json.loads((d / "metrics.json").read_text())["test"] for d in (tmp_path / "whole", run_dir)]
    assert metrics[0] == metrics[1]
    assert epochs_in(run_dir) == [1, 2]
