"""Issue 13, acceptance (c): a run on a FILE-BACKED dataset (an image folder of PNG/JPEG/...
of mixed sizes and modes, decoded in tf.data; a CSV of texts; a folder of recordings, trained
with random shifts, stretches and noise inside the model), killed mid-epoch (SIGKILL, or
SIGTERM which saves a checkpoint) and resumed with --resume, ends identical to an uninterrupted
run: the same test metrics and the same history, with --deterministic. Through the real binary."""

import csv
import json
import random
import signal
import time

import numpy as np
import pytest

from tests.helpers import tone, write_messy_images, write_wav
from tests.test_fault_tolerance import finish, start, wait_for

TIMING = {"seconds", "examples_per_sec"}


def history(run):
    with (run / "history.csv").open() as f:
        return [{k: v for k, v in row.items() if k not in TIMING} for row in csv.DictReader(f)]


def text_csv(path, n=240, seed=0):
    """Two classes of short messages whose words tell them apart (with shared filler words)."""
    rng = np.random.default_rng(seed)
    words = {"ham": ["meeting", "lunch", "report", "thanks", "family"], "spam": ["prize", "winner", "free", "cash", "click"]}
    filler = ["the", "a", "today", "now", "please", "you", "we"]
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["text", "label"])
        for i in range(n):
            label = ["ham", "spam"][i % 2]
            out.writerow([" ".join(rng.choice(words[label] + filler, 8)), label])
    return path


def data_args(kind, tmp_path):
    if kind == "images":
        root = write_messy_images(tmp_path / "pics", ("cat", "dog", "owl"), per_class=30)
        return ["cnn", "--data", root, "--set", "image_size=16", "--batch-size", 8]
    if kind == "recordings":  # speech's own-recordings defaults: random time shifts, stretches and room noise
        for name, pitch in {"low": 400, "mid": 1000, "high": 2500}.items():
            for i in range(40):
                write_wav(tmp_path / "words" / name / f"{i}.wav", tone(pitch * (1 + 0.01 * (i % 5)), 0.15 + 0.01 * (i % 9), seed=i))
        return ["speech", "--data", tmp_path / "words", "--set", "num_mel_bins=16", "--batch-size", 8]
    return ["lstm", "--data", text_csv(tmp_path / "messages.csv"), "--set", "units=8", "--set", "embedding_dim=8",
            "--set", "sequence_length=12", "--set", "vocab_size=64", "--batch-size", 8]


@pytest.mark.parametrize("kind, how", [
    pytest.param("images", "SIGKILL", marks=pytest.mark.slow),  # ~2 min: three trainings, as the other two
    ("images", "SIGTERM"),
    ("text", "SIGKILL"),
    ("recordings", "SIGKILL"),
])
def test_a_file_backed_run_killed_mid_epoch_resumes_to_the_same_result(tmp_path, kind, how):
    recipe, *rest = data_args(kind, tmp_path)
    args = ["train", recipe, *rest, "--epochs", 3, "--seed", 3, "--deterministic", "--strategy", "default",
            "--set", "steps_per_execution=1", "--checkpoint-every", 4, "--json"]
    code, out, err = finish(start(*args, "-o", tmp_path / "whole"))
    assert code == 0, err[-2000:]
    whole = json.loads(out)
    run = tmp_path / "killed"
    process = start(*args, "-o", run)
    wait_for(run / "checkpoints" / "checkpoint", process, timeout=300)  # the first checkpoint, at step 4
    time.sleep(random.uniform(0.0, 1.0))
    process.send_signal(signal.SIGKILL if how == "SIGKILL" else signal.SIGTERM)
    code, _, err = finish(process)
    assert code != 0, "the run ended before the signal: make its epochs longer"
    if how == "SIGTERM":
        assert "checkpoint saved" in err, err[-2000:]
    code, out, err = finish(start(*args, "-o", run, "--resume"))
    assert code == 0, err[-2000:]
    assert "resuming" in err
    resumed = json.loads(out)
    assert resumed["test"] == whole["test"]
    assert history(run) == history(tmp_path / "whole")
    assert json.loads((run / "metrics.json").read_text())["test"] == json.loads((tmp_path / "whole" / "metrics.json").read_text())["test"]
    if kind == "recordings":  # the training noise was on, and its random state resumed with the run
        assert json.loads((run / "config.json").read_text())["config"]["noise"] > 0
