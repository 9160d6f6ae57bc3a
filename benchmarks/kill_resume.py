"""Kill a training run with SIGKILL at random points, resume it, and compare with a run that was
never interrupted: the final test metrics must match (exactly, with --deterministic) and
history.csv must neither repeat nor skip an epoch.

    python benchmarks/kill_resume.py [--kills 5] [--seed 0] [--files]

--files trains on a generated image folder (PNG, JPEG, BMP, GIF, WebP, TIFF of mixed sizes and
modes, decoded in tf.data from disk) instead of the in-memory digits.
"""

import argparse
import csv
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
ARGS = [
    "train", "cnn", "--dataset", "digits", "--epochs", "3", "--batch-size", "32", "--seed", "7", "--deterministic",
    "--set", "steps_per_epoch=150", "--set", "steps_per_execution=1", "--checkpoint-every", "25", "--json",
]


def dlcli(*args):
    return subprocess.Popen([sys.executable, "-m", "dlcli", *args], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def completed(process):
    out, err = process.communicate()
    if process.returncode != 0:
        raise SystemExit(f"dlcli failed ({process.returncode}):\n{err[-3000:]}")
    return json.loads(out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--files", action="store_true", help="a file-backed image folder instead of digits")
    options = parser.parse_args()
    rng = random.Random(options.seed)
    global ARGS
    with tempfile.TemporaryDirectory() as tmp:
        if options.files:
            sys.path.insert(0, str(REPO))
            from tests.helpers import write_messy_images

            folder = write_messy_images(Path(tmp) / "pics", ("cat", "dog", "owl"), per_class=200)
            at = ARGS.index("--dataset")
            ARGS = [*ARGS[:at], "--data", str(folder), "--set", "image_size=16", *ARGS[at + 2 :]]
            ARGS[ARGS.index("--batch-size") + 1] = "8"
        started = time.perf_counter()
        reference = completed(dlcli(*ARGS, "-o", f"{tmp}/whole"))
        duration = time.perf_counter() - started
        print(f"uninterrupted: test {reference['test']}  ({duration:.1f} s)")
        failures = 0
        for k in range(options.kills):
            run_dir = Path(tmp) / f"killed{k}"
            # Kill somewhere in the training part of the run (after start-up, before the end).
            delay = rng.uniform(0.35, 0.9) * duration
            process = dlcli(*ARGS, "-o", str(run_dir))
            time.sleep(delay)
            if process.poll() is not None:
                print(f"kill {k + 1}: run finished before the kill at {delay:.1f} s; skipped")
                continue
            process.kill()
            process.wait()
            checkpoints = sorted(p.name for p in (run_dir / "checkpoints").glob("ckpt-*.index"))
            resumed = completed(dlcli(*ARGS, "-o", str(run_dir), "--resume"))
            epochs = [int(r["epoch"]) for r in csv.DictReader((run_dir / "history.csv").open())]
            same = resumed["test"] == reference["test"] and epochs == [1, 2, 3]
            failures += not same
            print(
                f"kill {k + 1}: SIGKILL at {delay:.1f} s (last checkpoint {checkpoints[-1] if checkpoints else 'none'}); "
                f"resumed test {resumed['test']}; epochs {epochs}; {'identical' if same else 'DIFFERENT'}"
            )
    print(f"{options.kills - failures}/{options.kills} kill-and-resume runs identical to the uninterrupted run")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
