"""`dlcli launch --workers N -- train ...`: a multi-worker cluster of local processes.

Each worker (and, with --evaluator, an evaluator task) is the same `dlcli` command with its own
TF_CONFIG on a loopback port, as a cluster manager (Vertex AI, GKE, Kubeflow's TFJob) would start
it once per host. Output is streamed with a worker prefix; if one worker fails, the others are
stopped. `--ray` starts the workers on a Ray cluster instead (dlcli/launchers/ray.py).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Annotated

import typer

from dlcli.core.errors import EXIT_INTERRUPTED, EXIT_PREEMPTED, DlcliError
from dlcli.runs import rundir

GRACE_SECONDS = 20  # how long stopped workers get to save a checkpoint before they are killed


def free_ports(n):
    """n distinct free TCP ports on the loopback interface."""
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_command(args):
    """The command each worker runs: a train command gets one shared --output if it had none."""
    args = list(args)
    if args and args[0] == "train" and not any(a in ("-o", "--output") or a.startswith("--output=") for a in args):
        recipe = next((a for a in args[1:] if not a.startswith("-")), "run")
        args += ["--output", str(rundir.resolve_run_dir(None, recipe))]
    return [sys.executable, "-m", "dlcli", *args]


def launch_command(
    command: Annotated[list[str], typer.Argument(help="The dlcli command every worker runs, after --.")],
    workers: Annotated[int, typer.Option(help="Number of worker processes.")] = 2,
    evaluator: Annotated[
        bool, typer.Option("--evaluator", help="Also start an evaluator task: it evaluates each checkpoint into RUN_DIR/evaluations.csv.")
    ] = False,
):
    """Run a dlcli command as N local workers of a MultiWorkerMirroredStrategy cluster.

    Example: dlcli launch --workers 2 -- train cnn --dataset digits
    """
    if workers < 1:
        raise DlcliError(f"--workers must be a positive integer. Received: {workers}")
    if not command or command[0] != "train":
        raise DlcliError("launch runs a `train` command on every worker: dlcli launch --workers 2 -- train RECIPE ...")
    argv = worker_command(command)
    ports = free_ports(workers + evaluator)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports[:workers]]}
    tasks = [("worker", index) for index in range(workers)]
    if evaluator:  # TensorFlow's evaluator pattern: a task of the cluster that trains nothing
        cluster["evaluator"] = [f"127.0.0.1:{ports[-1]}"]
        tasks.append(("evaluator", 0))
    shown = f"{workers} workers{' and an evaluator' if evaluator else ''}"
    typer.echo(f"launching {shown} on {', '.join(cluster['worker'])}: {' '.join(argv[2:])}", err=True)
    processes = []
    for kind, index in tasks:
        env = {**os.environ, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": kind, "index": index}})}
        processes.append(
            subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
        )
    prefixes = [f"[worker {index}] " if kind == "worker" else "[evaluator] " for kind, index in tasks]
    pumps = [threading.Thread(target=_pump, args=(p, prefix), daemon=True) for p, prefix in zip(processes, prefixes)]
    for pump in pumps:
        pump.start()

    forwarded = []

    def forward(signum, frame):  # a preempted launcher preempts its workers, which checkpoint
        forwarded.append(signum)
        for p in processes:
            if p.poll() is None:
                p.send_signal(signum)

    previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        failed = _wait(processes)
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        for pump in pumps:
            pump.join(timeout=5)
    if failed is None:
        typer.echo(f"all {shown} finished", err=True)
        return
    index, code = failed
    if forwarded:
        raise typer.Exit(EXIT_PREEMPTED if forwarded[0] == signal.SIGTERM else EXIT_INTERRUPTED)
    raise DlcliError(
        f"{prefixes[index].strip(' []')} exited with code {code}; stopped the other workers. "
        "Run the same command again to continue from the last checkpoint (workers with TF_CONFIG resume by themselves)."
    )


def _pump(process, prefix):
    for line in process.stdout:
        sys.stdout.write(prefix + line)
        sys.stdout.flush()


def _wait(processes):
    """Waits for every worker; on the first failure stops the rest. Returns (index, code) or None."""
    while True:
        codes = [p.poll() for p in processes]
        for index, code in enumerate(codes):
            if code not in (None, 0):
                _stop(processes)
                return index, code
        if all(code == 0 for code in codes):
            return None
        time.sleep(0.2)


def _stop(processes):
    for p in processes:
        if p.poll() is None:
            p.terminate()
    deadline = time.time() + GRACE_SECONDS
    for p in processes:
        try:
            p.wait(timeout=max(0.1, deadline - time.time()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
