"""A TF_CONFIG as Kubeflow's TFJob and Vertex AI write it when asked for an evaluator: a chief,
two workers and an evaluator task, each started as its own `dlcli train` on loopback. The chief
and workers train as `dlcli launch --workers 3` does (the same replicas, the same metrics); the
evaluator evaluates every checkpoint into evaluations.csv and TensorBoard, and ends with the run."""

import json
import os
import subprocess
import sys

from dlcli.runs import rundir
from tests.conftest import REPO
from tests.test_fault_tolerance import ENV, finish, start

TRAIN = [
    "train", "cnn", "--dataset", "digits", "--set", "steps_per_epoch=60", "--set", "steps_per_execution=1",
    "--batch-size", "48", "--epochs", "2", "--seed", "7", "--deterministic", "--checkpoint-every", "40",
]
CHECKPOINTS = [40, 60, 80, 120]  # every 40 steps and at both epoch ends (60 steps each)


def without_time(rows):
    return [{k: v for k, v in row.items() if k != "evaluated"} for row in rows]


def test_chief_two_workers_and_an_evaluator_train_like_three_workers_and_evaluate_every_checkpoint(tmp_path):
    import socket

    reference = tmp_path / "launched"
    code, out, err = finish(start("launch", "--workers", 3, "--evaluator", "--", *TRAIN, "-o", reference), timeout=600)
    assert code == 0, err[-3000:] + out[-3000:]
    assert "launching 3 workers and an evaluator" in err and "all 3 workers and an evaluator finished" in err

    sockets = [socket.socket() for _ in range(4)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    chief, worker0, worker1, evaluator = (f"127.0.0.1:{s.getsockname()[1]}" for s in sockets)
    for s in sockets:
        s.close()
    jobs = {"chief": [chief], "worker": [worker0, worker1], "evaluator": [evaluator]}
    run_dir = tmp_path / "tfjob"
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "dlcli", *TRAIN, "-o", str(run_dir)], cwd=REPO, text=True,
            env={**ENV, "TF_CONFIG": json.dumps({"cluster": jobs, "task": {"type": kind, "index": index}})},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        for kind, index in (("chief", 0), ("worker", 0), ("worker", 1), ("evaluator", 0))
    ]
    results = [finish(p, timeout=600) for p in processes]
    for code, out, err in results:
        assert code == 0, err[-3000:]
    chief_out, evaluator_out = (results[i][1] + results[i][2] for i in (0, 3))
    assert "strategy multi-worker (CollectiveAllReduceStrategy), 3 replica(s)" in chief_out
    assert f"evaluator: following {run_dir}" in evaluator_out and "evaluator: the run ended; 4 new evaluation(s)" in evaluator_out
    assert "strategy multi-worker" not in evaluator_out, "the evaluator trained"

    # Training: the same as three launched workers, to the last digit.
    metrics = [json.loads((d / "metrics.json").read_text()) for d in (reference, run_dir)]
    assert metrics[0]["test"] == metrics[1]["test"]
    history = [rundir.read_history(d / "history.csv") for d in (reference, run_dir)]
    assert [{k: v for k, v in row.items() if k not in ("seconds", "examples_per_sec")} for row in history[0]] == [
        {k: v for k, v in row.items() if k not in ("seconds", "examples_per_sec")} for row in history[1]
    ]

    # The evaluator: one row per checkpoint, as in the launched run; at each epoch end the
    # validation metrics training logged; at the end, the test metrics of metrics.json.
    rows = rundir.read_history(run_dir / "evaluations.csv")
    assert [row["step"] for row in rows] == CHECKPOINTS and [row["checkpoint"] for row in rows] == [f"ckpt-{n}" for n in CHECKPOINTS]
    assert without_time(rows) == without_time(rundir.read_history(reference / "evaluations.csv"))
    for row in rows:
        if row["step"] % 60 == 0:
            logged = history[1][row["step"] // 60 - 1]
            assert abs(row["val_loss"] - logged["val_loss"]) < 1e-5 and row["val_accuracy"] == logged["val_accuracy"]
    assert abs(rows[-1]["test_loss"] - metrics[1]["test"]["loss"]) < 1e-5
    assert rows[-1]["test_accuracy"] == metrics[1]["test"]["accuracy"]
    events = list((run_dir / "logs" / "eval").glob("events.out.tfevents.*"))
    assert len(events) == 1

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tags = EventAccumulator(str(run_dir / "logs" / "eval"), size_guidance={"tensors": 0}).Reload().Tags()["tensors"]
    assert {"val_loss", "val_accuracy", "test_loss", "test_accuracy"} <= set(tags)
    assert not os.path.exists(run_dir / "checkpoints" / "evaluations.csv")
