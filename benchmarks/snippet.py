"""What the side-by-side benchmarks share: each measurement runs in a fresh Python process."""

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_snippet(code, *args):
    """Runs `code` (with `args` as sys.argv[1:]) in a fresh process from the repository root and
    returns the JSON of the last line it prints; a failure ends the benchmark with its stderr."""
    return snippet_result(start_snippet(code, *args))


def start_snippet(code, *args, cpu=None):
    """Starts `code` as run_snippet does, without waiting; `cpu`: the one core it may run on."""
    return subprocess.Popen(
        [sys.executable, "-c", code, *map(str, args)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
        preexec_fn=None if cpu is None else (lambda: os.sched_setaffinity(0, {cpu})),
    )


def snippet_result(process):
    """The JSON of the last line a started snippet prints; a failure ends the benchmark with its stderr."""
    stdout, stderr = process.communicate()
    if process.returncode != 0:
        raise SystemExit(stderr[-3000:])
    return json.loads(stdout.strip().splitlines()[-1])


def compare_throughput(snippets, args, repeats):
    """Alternates the "keras-io fit" and "dlcli" snippets `repeats` times, each printing its
    examples/s per epoch as JSON; prints every run, the medians and the dlcli / keras-io ratio."""
    figures = {name: [] for name in snippets}
    for repeat in range(repeats):
        for name, code in snippets.items():
            started = time.perf_counter()
            speeds = run_snippet(code, *args)
            figures[name].append(statistics.median(speeds[1:]))  # the first epoch pays for tracing
            print(f"repeat {repeat + 1} {name:>12}: {figures[name][-1]:8.1f} examples/s ({time.perf_counter() - started:.0f} s)", flush=True)
    keras_io, dlcli = (statistics.median(figures[k]) for k in ("keras-io fit", "dlcli"))
    print(f"median examples/s: keras-io fit {keras_io:.1f}, dlcli {dlcli:.1f}")
    print(f"ratio dlcli / keras-io: {dlcli / keras_io:.2f}x (target >= 1.0x)")
