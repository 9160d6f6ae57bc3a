"""Scaling on a local Ray cluster, and what a worker restart costs.

The cnn on digits with one global batch (128 by default) trained three ways:

1. one process, pinned to one core (`taskset -c 0 dlcli train ...`);
2. `dlcli launch --ray --workers 2` on a Ray cluster of two nodes of one CPU each, each node
   (its raylet, its Ray worker and that worker's `dlcli train`) pinned to its own core;
3. the same launch with one worker's training process SIGKILLed just after a checkpoint:
   Ray restarts the group and dlcli continues from that checkpoint.

Throughput is the median examples/s of the epochs after the first (history.csv); scaling
efficiency is the 2-worker throughput / (2 x the one-process throughput). The time lost to the
restart is the wall time of run 3 minus that of run 2 (Ray noticing the failure, stopping and
starting the group, TensorFlow's start, the restore, and the steps since the checkpoint), and
run 3 must end with run 2's test metrics. The Ray cluster runs in a network namespace made here
(as root), where its nodes are 127.0.0.1 and its traffic stays on loopback.

    sudo python benchmarks/ray_scaling.py [--epochs 3] [--steps 50] [--batch-size 128]
"""

import argparse
import contextlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "PATH": f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}"}
PORT = 6391


@contextlib.contextmanager
def namespace():
    name = f"dlcli-bench-{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield ["nsenter", f"--net=/run/netns/{name}"]
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pid in subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), sig)
            time.sleep(3)
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


def pin(core, cores):
    return ["taskset", "-c", str(core % cores)]


def start_ray(enter, cores, temp):
    ray = shutil.which("ray", path=ENV["PATH"])
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--object-store-memory", str(80 * 2**20), "--disable-usage-stats"]
    nodes = [["--head", "--port", str(PORT), "--include-dashboard=false", "--temp-dir", str(temp)], ["--address", f"127.0.0.1:{PORT}"]]
    for core, args in enumerate(nodes):
        subprocess.run([*pin(core, cores), *enter, ray, "start", *args, *common], check=True, capture_output=True, env=ENV, timeout=180)
    probe = f"import ray; ray.init(address='127.0.0.1:{PORT}', logging_level='ERROR'); print(len([n for n in ray.nodes() if n['Alive']]))"
    deadline = time.time() + 120
    while subprocess.run([*enter, sys.executable, "-c", probe], capture_output=True, text=True, env=ENV).stdout.strip() != "2":
        if time.time() > deadline:
            sys.exit("the second Ray node never joined")
        time.sleep(1)


def speed(run_dir):
    import csv

    rows = list(csv.DictReader((Path(run_dir) / "history.csv").open()))
    return statistics.median(float(row["examples_per_sec"]) for row in rows[1:] or rows)


def latest(run_dir):
    text = (Path(run_dir) / "checkpoints" / "checkpoint").read_text() if (Path(run_dir) / "checkpoints" / "checkpoint").exists() else ""
    return int(text.split('"')[1].rsplit("-", 1)[1]) if text else -1


def run(command, log, kill_after=None, run_dir=None):
    """Runs `command`; with `kill_after`, SIGKILLs one `dlcli train` of `run_dir` as soon as a
    checkpoint past that step appears. Returns (wall seconds, the step killed after)."""
    import psutil

    started = time.perf_counter()
    with open(log, "w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=out, stderr=subprocess.STDOUT)
        killed = None
        while process.poll() is None:
            if kill_after is not None and killed is None and latest(run_dir) > kill_after:
                killed = latest(run_dir)
                victims = [p for p in psutil.process_iter(["cmdline"]) if str(run_dir) in (p.info["cmdline"] or []) and "launch" not in p.info["cmdline"]]
                victims[-1].kill()
            time.sleep(0.05)
    if process.returncode != 0:
        sys.exit(f"{' '.join(command[:6])}... failed: see {log}")
    return time.perf_counter() - started, killed


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=50, help="steps per epoch")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the Ray cluster runs in a network namespace made here")
    cores = len(os.sched_getaffinity(0))
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "unknown CPU")
    load_before = os.getloadavg()
    train = [
        "train", "cnn", "--dataset", "digits", "--epochs", str(args.epochs), "--set", f"steps_per_epoch={args.steps}",
        "--batch-size", str(args.batch_size), "--seed", "7", "--deterministic", "--checkpoint-every", str(args.steps),
    ]
    work = Path(tempfile.mkdtemp(prefix="dlcli-ray-bench-"))
    temp = Path(tempfile.mkdtemp(prefix="drb-"))
    try:
        with namespace() as enter:
            single = work / "single"
            one_wall, _ = run([*pin(0, cores), *enter, sys.executable, "-m", "dlcli", *train, "-o", str(single)], work / "single.log")
            start_ray(enter, cores, temp)
            launch = [*enter, sys.executable, "-m", "dlcli", "launch", "--ray", f"127.0.0.1:{PORT}", "--workers", "2", "--"]
            ray_dir, killed_dir = work / "ray", work / "ray-killed"
            ray_wall, _ = run([*launch, *train, "-o", str(ray_dir)], work / "ray.log")
            killed_wall, killed_at = run([*launch, *train, "-o", str(killed_dir)], work / "ray-killed.log", kill_after=0, run_dir=killed_dir)
        metrics = [json.loads((d / "metrics.json").read_text())["test"] for d in (single, ray_dir, killed_dir)]
        one, two = speed(single), speed(ray_dir)
        print(f"{cpu}, {cores} cores; load average {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after")
        print(f"cnn on digits, global batch {args.batch_size}, {args.epochs} epochs x {args.steps} steps")
        print(f"one process, 1 core:                   {one:7.1f} examples/s  (wall {one_wall:5.1f} s)")
        print(f"dlcli launch --ray, 2 nodes x 1 core:  {two:7.1f} examples/s  (wall {ray_wall:5.1f} s)")
        print(f"scaling efficiency: {two / (2 * one):.0%} ({two / one:.2f}x one process)")
        print(
            f"one worker SIGKILLed after checkpoint ckpt-{killed_at}: wall {killed_wall:5.1f} s, "
            f"{killed_wall - ray_wall:.1f} s lost to the restart; test metrics {'equal' if metrics[2] == metrics[1] else 'DIFFERENT'} "
            "to the uninterrupted Ray run's"
        )
        print(f"test accuracy: one process {metrics[0]['accuracy']:.4f}, Ray {metrics[1]['accuracy']:.4f}, Ray restarted {metrics[2]['accuracy']:.4f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(temp, ignore_errors=True)


if __name__ == "__main__":
    main()
