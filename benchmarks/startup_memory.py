"""Start-up time of the CLI and peak resident memory of real training runs.

    python benchmarks/startup_memory.py

Start-up: wall time of `dlcli --help` and `dlcli list` (median of 5), and of `dlcli train cnn`
until training starts (the line announcing the global batch, printed just before the first
step). Memory: peak resident set size of `dlcli train cnn` on MNIST and `dlcli train lstm` on
IMDB (one epoch; the lstm epoch cut to 100 steps, which does not change what is held in memory:
the whole corpus, its vocabulary and the test evaluation). Needs ../shared/data.
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
DLCLI = [sys.executable, "-m", "dlcli"]


def wall(args, repeats=5):
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        subprocess.run([*DLCLI, *args], cwd=REPO, env=ENV, capture_output=True, check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def until_training_starts(args):
    started = time.perf_counter()
    process = subprocess.Popen([*DLCLI, *args], cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in process.stdout:
        if line.startswith("global batch"):
            seconds = time.perf_counter() - started
            process.kill()
            process.wait()
            return seconds
    raise SystemExit(f"{args} ended before training started")


def peak_memory_mib(args):
    """Peak RSS of one dlcli run, measured by a wrapper process that only waits for it."""
    wrapper = (
        "import resource, subprocess, sys; "
        f"subprocess.run({[*DLCLI, *args]!r}, check=True, capture_output=True); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    result = subprocess.run([sys.executable, "-c", wrapper], cwd=REPO, env=ENV, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return int(result.stdout.split()[-1]) / 1024  # ru_maxrss is in KiB on Linux


def main():
    if not DATA.is_dir():
        raise SystemExit(f"{DATA} not found: the benchmark needs ../shared/data beside the checkout.")
    with tempfile.TemporaryDirectory() as tmp:
        print(f"dlcli --help: {wall(['--help']):.2f} s (target < 1 s)")
        print(f"dlcli list:   {wall(['list']):.2f} s (target < 1 s)")
        start = until_training_starts(["train", "cnn", "--data", str(DATA / "mnist"), "-o", f"{tmp}/start"])
        print(f"dlcli train cnn (MNIST) until training starts: {start:.1f} s (target < 15 s)")
        cnn = peak_memory_mib(["train", "cnn", "--data", str(DATA / "mnist"), "--epochs", "1", "-o", f"{tmp}/cnn"])
        print(f"peak memory, cnn on MNIST: {cnn:.0f} MiB (target < 2048 MiB)")
        lstm = peak_memory_mib([
            "train", "lstm", "--data", str(DATA / "imdb"), "--epochs", "1", "--set", "steps_per_epoch=100", "-o", f"{tmp}/lstm",
        ])
        print(f"peak memory, lstm on IMDB: {lstm:.0f} MiB (target < 4096 MiB)")
        print(f"ratios: cnn memory {cnn / 2048:.2f} of its budget, lstm memory {lstm / 4096:.2f} of its budget")


if __name__ == "__main__":
    main()
