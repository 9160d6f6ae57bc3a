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
from typer.core import TyperCommand

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
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray", metavar="[ADDRESS]", show_default=False,
            help="Start the workers on a Ray cluster (ADDRESS: auto, i.e. RAY_ADDRESS or the local cluster, when left out); "
            "the run folder must be storage every node sees.",
        ),
    ] = None,
    cpus_per_worker: Annotated[float | None, typer.Option(help="With --ray: CPUs each worker reserves \\[default: 1].", show_default=False)] = None,
    gpus_per_worker: Annotated[float | None, typer.Option(help="With --ray: GPUs each worker reserves \\[default: 0].", show_default=False)] = None,
    max_failures: Annotated[
        int | None, typer.Option(help="With --ray: restarts of the worker group after a failure before the launch fails \\[default: 3].", show_default=False)
    ] = None,
):
    """Run a dlcli command as N workers of a MultiWorkerMirroredStrategy cluster: local processes,
    or Ray workers with --ray.

    Example: dlcli launch --workers 2 -- train cnn --dataset digits
    """
    if workers < 1:
        raise DlcliError(f"--workers must be a positive integer. Received: {workers}")
    if not command or command[0] != "train":
        raise DlcliError("launch runs a `train` command on every worker: dlcli launch --workers 2 -- train RECIPE ...")
    ray_only = {"--cpus-per-worker": cpus_per_worker, "--gpus-per-worker": gpus_per_worker, "--max-failures": max_failures}
    if ray is None and any(v is not None for v in ray_only.values()):
        given = ", ".join(name for name, v in ray_only.items() if v is not None)
        raise DlcliError(f"{given}: for Ray workers only, e.g. dlcli launch --ray --workers {workers} {given.split(',')[0]} ... -- train ...")
    argv = worker_command(command)
    if ray is not None:
        return _launch_on_ray(argv[3:], ray, workers, cpus_per_worker, gpus_per_worker, max_failures, evaluator)
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


def _launch_on_ray(command, address, workers, cpus, gpus, max_failures, evaluator):
    from dlcli.launchers import ray

    cpus, gpus, max_failures = 1 if cpus is None else cpus, 0 if gpus is None else gpus, 3 if max_failures is None else max_failures
    for name, value in (("--cpus-per-worker", cpus), ("--gpus-per-worker", gpus), ("--max-failures", max_failures)):
        if value < 0 or (name == "--cpus-per-worker" and value == 0):
            raise DlcliError(f"{name} must be {'positive' if name == '--cpus-per-worker' else 'zero or more'}. Received: {value:g}")
    if evaluator:
        raise DlcliError("--evaluator runs with local workers only; on Ray, run `dlcli evaluate` on the finished run instead.")
    ray.launch(command, address, workers, cpus, gpus, max_failures, echo=lambda line: typer.echo(line, err=True))


class LaunchCommand(TyperCommand):
    """`launch`'s parsing: `--ray` may stand without its ADDRESS (then `auto`), as in
    `dlcli launch --ray --workers 2 -- train ...`, which Click's options cannot say."""

    def parse_args(self, ctx, args):
        args = list(args)
        end = args.index("--") if "--" in args else len(args)
        for i, arg in enumerate(args[:end]):
            if arg == "--ray" and (i + 1 >= len(args) or args[i + 1].startswith("-")):
                args.insert(i + 1, "auto")
                break
        return super().parse_args(ctx, args)


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
