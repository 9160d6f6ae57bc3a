"""Multi-worker scaling on this machine: the cnn's global batch of 128 trained by 1 worker on one
core, then by 2 workers (`dlcli launch --workers 2`, MultiWorkerMirroredStrategy) on one core
each; and the all-reduce of a tensor of the model's size, timed alone.

Every worker runs with one intra-op and one inter-op thread (TF_NUM_INTRAOP_THREADS /
TF_NUM_INTEROP_THREADS) and is pinned to its own core (os.sched_setaffinity, set on each
worker as soon as `dlcli launch` starts it, before TensorFlow creates its threads). Throughput
is the median examples/s of the epochs after the first (history.csv); scaling efficiency is
2-worker throughput / (2 x 1-worker throughput). The all-reduce figure is the median time of
one SUM all-reduce of a float32 tensor with the cnn's parameter count between the 2 pinned
workers (ring collective over gRPC on loopback), what each training step pays on top of its
compute. Alternates 1 and 2 workers `--repeats` times.

    python benchmarks/multiworker.py [--repeats 2] [--epochs 3] [--steps 100]
"""

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from dlcli.cli.commands.launch import free_ports  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
MNIST = REPO.parent / "shared" / "data" / "mnist"
ONE_THREAD = {"TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}

ALL_REDUCE = r"""
import json, os, statistics, sys, time
import tensorflow as tf

size, repeats = int(sys.argv[1]), int(sys.argv[2])
strategy = tf.distribute.MultiWorkerMirroredStrategy()
tensor = tf.ones((size,), tf.float32)

@tf.function
def all_reduce():
    def replica_fn():
        x = tensor
        for _ in range(repeats):  # unrolled, each waiting for the previous one: `repeats` collectives in a row
            x = tf.distribute.get_replica_context().all_reduce("SUM", x) * 0.5
        return tf.reduce_sum(x)
    return strategy.run(replica_fn)

all_reduce()  # connect, trace, warm up
times = []
for _ in range(5):
    started = time.perf_counter()
    float(strategy.experimental_local_results(all_reduce())[0])
    times.append((time.perf_counter() - started) / repeats)
print(json.dumps({"seconds": statistics.median(times)}))
"""


def pin_workers(parent, cores, timeout=60):
    """Pins each worker process `parent` starts to its own core, as soon as it appears (its
    TF_CONFIG task index picks the core); returns once every worker is pinned."""
    pinned, deadline = set(), time.time() + timeout
    while len(pinned) < len(cores) and time.time() < deadline and parent.poll() is None:
        try:
            children = Path(f"/proc/{parent.pid}/task/{parent.pid}/children").read_text().split()
        except OSError:
            children = []
        for pid in map(int, children):
            if pid in pinned:
                continue
            try:
                environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
                config = next(e for e in environ if e.startswith(b"TF_CONFIG="))
                index = json.loads(config.split(b"=", 1)[1])["task"]["index"]
                os.sched_setaffinity(pid, {cores[index]})
                pinned.add(pid)
            except (OSError, StopIteration, ValueError):
                pass  # not started yet, or already gone: tried again next round
        time.sleep(0.01)
    return len(pinned)


def train(workers, epochs, steps, cores):
    """Examples/s (median of the epochs after the first) of one `dlcli train cnn` run."""
    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder) / "run"
        args = ["train", "cnn", "--data", str(MNIST), "--epochs", str(epochs), "--batch-size", "128",
                "--set", f"steps_per_epoch={steps}", "--set", "lr_schedule=constant", "--output", str(run_dir)]
        env = {**os.environ, **ONE_THREAD}
        if workers == 1:
            command = [sys.executable, "-m", "dlcli", *args, "--strategy", "default"]
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                       preexec_fn=lambda: os.sched_setaffinity(0, {cores[0]}))
        else:
            command = [sys.executable, "-m", "dlcli", "launch", "--workers", str(workers), "--", *args]
            process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
            if pin_workers(process, cores[:workers]) < workers:
                process.kill()
                raise SystemExit("could not pin the workers to their cores")
        output, _ = process.communicate()
        if process.returncode != 0:
            raise SystemExit(output.decode(errors="replace")[-3000:])
        rows = list(csv.DictReader(open(run_dir / "history.csv")))
    return statistics.median(float(row["examples_per_sec"]) for row in rows[1:])


def all_reduce_seconds(size, cores, repeats=20):
    """Median seconds of one all-reduce of `size` floats between 2 pinned single-thread workers."""
    ports = free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    processes = []
    for index in range(2):
        env = {**os.environ, **ONE_THREAD, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
        processes.append(subprocess.Popen(
            [sys.executable, "-c", ALL_REDUCE, str(size), str(repeats)], cwd=REPO, env=env, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, preexec_fn=lambda core=cores[index]: os.sched_setaffinity(0, {core}),
        ))
    outputs = [p.communicate(timeout=600) for p in processes]
    for p, (out, err) in zip(processes, outputs):
        if p.returncode != 0:
            raise SystemExit(err.decode(errors="replace")[-3000:])
    return max(json.loads(out.decode().strip().splitlines()[-1])["seconds"] for out, _ in outputs)


def cnn_parameters():
    from types import SimpleNamespace

    from recipes import cnn

    return cnn.build_model(cnn.Config(), SimpleNamespace(input_shape=(28, 28, 1), num_classes=10)).count_params()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=100)
    options = parser.parse_args()
    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2:
        raise SystemExit(f"this process may use {len(cores)} core(s); the 2-worker run needs 2")
    if not MNIST.is_dir():
        raise SystemExit(f"{MNIST} not found: the benchmark needs ../shared/data/mnist beside the checkout.")
    print(f"cores {cores[:2]}; {options.repeats} x (1 worker, 2 workers) of {options.epochs} x {options.steps} steps of 128; "
          f"about {options.repeats * 2 * (40 + options.epochs * options.steps * 128 / 2500):.0f} s on a quiet 2-core machine", flush=True)
    speeds = {1: [], 2: []}
    for repeat in range(options.repeats):
        for workers in (1, 2):
            started = time.perf_counter()
            speeds[workers].append(train(workers, options.epochs, options.steps, cores))
            print(f"repeat {repeat + 1}, {workers} worker(s): {speeds[workers][-1]:.0f} examples/s "
                  f"({time.perf_counter() - started:.0f} s)", flush=True)
    parameters = cnn_parameters()
    seconds = all_reduce_seconds(parameters, cores)
    one, two = (statistics.median(speeds[w]) for w in (1, 2))
    efficiency = statistics.median(b / (2 * a) for a, b in zip(speeds[1], speeds[2]))
    step = 128 / two
    print(f"\n== summary (medians; {options.repeats} alternating repeats; 1 core and 1 thread per worker) ==")
    print(f"cnn, global batch 128: 1 worker {one:.0f}, 2 workers {two:.0f} examples/s: scaling efficiency {efficiency:.0%}")
    print(f"all-reduce of {parameters} float32 parameters ({parameters * 4 / 1e6:.2f} MB) between 2 workers on loopback: "
          f"{seconds * 1e3:.2f} ms, {seconds / step:.0%} of a 2-worker step ({step * 1e3:.1f} ms)")


if __name__ == "__main__":
    main()
