"""`dlcli launch --ray [ADDRESS] --workers N -- train ...`: the same training on a Ray cluster.

Ray Train's TensorflowTrainer places N workers (one per Ray worker, with --cpus-per-worker and
--gpus-per-worker each) and writes each one's TF_CONFIG (workers only: rank 0 is the chief).
Each Ray worker then runs the unchanged `dlcli train ...` as a child process, which reads that
TF_CONFIG like any other. A child process rather than the CLI inside the Ray worker, because:

- Ray Train V2 runs the training function in a thread, where Python cannot install signal
  handlers: the child has its own main thread, so SIGTERM still makes it save a checkpoint;
- TensorFlow's runtime (MultiWorkerMirroredStrategy's collectives, its process-wide devices)
  then lives and dies with one attempt, not with a Ray actor that outlives it;
- the child's exit code is the CLI's (143 preempted, 130 interrupted, 2 bad input).

When a worker fails, Ray stops the group and starts it again (up to --max-failures times);
the same command under TF_CONFIG resumes by itself (resume auto), so the restart loses only
the steps since the last checkpoint. Ctrl-C or SIGTERM to the launcher reaches every child
as the same signal; they agree on a step, checkpoint, and the launch exits 130 or 143.
Ray is an optional extra (`pip install -e ".[ray]"`), imported only here.
"""

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

from dlcli.core.errors import EXIT_INTERRUPTED, EXIT_PREEMPTED, EXIT_UNEXPECTED, DlcliError
from dlcli.runs import remote

INSTALL = 'pip install "dlcli[ray]" (from a checkout: pip install -e ".[ray]")'
# The driver's environment that the workers' `dlcli train` should see too (Ray workers inherit
# the environment of `ray start`, not of the driver).
FORWARDED = ("DLCLI_", "TF_CPP_", "TF_ENABLE_ONEDNN_OPTS", "TFDS_", "KERAS_", "PYTHONHASHSEED")
POLL_SECONDS = 0.5


class LaunchFailed(DlcliError):
    """The Ray cluster ran the job and it failed: not bad input, so exit code 1."""

    exit_code = EXIT_UNEXPECTED


def import_ray():
    # Each worker's lines as they are: Ray's log deduplication (read when ray is imported) would
    # fold the workers' identical epoch lines into "[repeated 2x across cluster]".
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    try:
        import ray
        from ray.train.tensorflow import TensorflowTrainer  # noqa: F401
    except ImportError:
        raise DlcliError(f"--ray needs Ray Train, an optional extra: {INSTALL}.") from None
    return ray


def output_of(args):
    """(index of the value, value) of the train command's --output/-o, or (None, None)."""
    for i, arg in enumerate(args):
        if arg in ("-o", "--output") and i + 1 < len(args):
            return i + 1, args[i + 1]
        if arg.startswith("--output="):
            return i, arg.split("=", 1)[1]
    return None, None


def with_absolute_output(args):
    """The train arguments with --output absolute (Ray workers start in folders of their own)."""
    args = list(args)
    i, value = output_of(args)
    if value is not None and not remote.is_remote(value):
        absolute = str(Path(value).expanduser().absolute())
        args[i] = absolute if args[i] == value else f"--output={absolute}"
    return args


def connect(ray, address):
    try:
        ray.init(address=address, logging_level="WARNING", log_to_driver=True, configure_logging=True)
    except (ConnectionError, RuntimeError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DlcliError(
            f"cannot reach a Ray cluster at {address} ({first}). Start one with `ray start --head`, "
            "or pass --ray HOST:PORT (or set RAY_ADDRESS)."
        ) from None


def check_resources(ray, workers, cpus, gpus):
    total = ray.cluster_resources()
    need = {"CPU": workers * cpus, "GPU": workers * gpus}
    for name, amount in need.items():
        if amount and total.get(name, 0) < amount:
            raise DlcliError(
                f"the Ray cluster has {total.get(name, 0):g} {name}s; --workers {workers} with "
                f"--{name.lower()}s-per-worker {cpus if name == 'CPU' else gpus:g} needs {amount:g}."
            )


def check_shared(ray, run_dir):
    """Refuses, in one line, a run folder that some node of the Ray cluster does not see: every
    worker writes checkpoints into it (the chief) and reads them back after a restart."""
    if remote.is_remote(run_dir):
        return  # gs://: every node reaches it through TensorFlow's file system
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    parent = Path(run_dir).parent
    parent.mkdir(parents=True, exist_ok=True)
    probe = parent / f".dlcli-shared-{uuid.uuid4().hex[:12]}"
    probe.write_text("dlcli launch --ray checks that every node sees this folder\n")
    try:
        sees = ray.remote(num_cpus=0)(os.path.exists)
        nodes = [node for node in ray.nodes() if node.get("Alive") and node.get("Resources", {}).get("CPU")]
        answers = ray.get([
            sees.options(scheduling_strategy=NodeAffinitySchedulingStrategy(node["NodeID"], soft=False)).remote(str(probe))
            for node in nodes
        ])
    finally:
        probe.unlink(missing_ok=True)
    blind = [node.get("NodeManagerAddress", node["NodeID"]) for node, seen in zip(nodes, answers) if not seen]
    if blind:
        raise DlcliError(
            f"the run folder {run_dir} is not seen by the Ray node(s) at {', '.join(blind)}: --output must be storage every node "
            "sees (a shared file system path, or gs://bucket/path)."
        )


def launch(command, address, workers, cpus_per_worker, gpus_per_worker, max_failures, echo):
    """Runs the train command `command` (without the leading `python -m dlcli`) on a Ray
    cluster; returns when every worker finished, raises DlcliError/LaunchFailed, or exits
    130/143 (typer.Exit) after a forwarded signal."""
    import typer

    ray = import_ray()
    from ray.train import FailureConfig, RunConfig, ScalingConfig
    from ray.train.tensorflow import TensorflowTrainer

    command = with_absolute_output(command)
    _, run_dir = output_of(command)
    connect(ray, address)
    try:
        check_resources(ray, workers, cpus_per_worker, gpus_per_worker)
        check_shared(ray, run_dir)
        stopper = ray.remote(num_cpus=0)(Stopper).remote()
        environment = {k: v for k, v in os.environ.items() if k.startswith(FORWARDED)}
        resources = {"CPU": cpus_per_worker, **({"GPU": gpus_per_worker} if gpus_per_worker else {})}
        trainer = TensorflowTrainer(
            train_loop_per_worker=worker_loop,
            train_loop_config={"command": command, "stopper": stopper, "cwd": os.getcwd(), "env": environment},
            scaling_config=ScalingConfig(num_workers=workers, use_gpu=gpus_per_worker > 0, resources_per_worker=resources),
            run_config=RunConfig(
                name=f"dlcli-{Path(str(run_dir)).name}-{time.strftime('%Y%m%d-%H%M%S')}",
                failure_config=FailureConfig(max_failures=max_failures),
            ),
        )
        echo(
            f"launching {workers} workers on the Ray cluster at {address} ({cpus_per_worker:g} CPU"
            f"{f', {gpus_per_worker:g} GPU' if gpus_per_worker else ''} each; up to {max_failures} restart(s)): "
            f"dlcli {' '.join(command)}"
        )
        outcome = {}

        def fit():
            try:
                trainer.fit()
            except BaseException as e:  # reported by the main thread
                outcome["error"] = e

        # fit() in a thread: Ray Train installs its own SIGINT handler (abort at once, no
        # checkpoint) only when fit() runs on the main thread; here the launcher's handler
        # forwards the signal to the workers instead, which save a checkpoint and stop.
        runner = threading.Thread(target=fit, daemon=True)
        forwarded = []

        def forward(signum, frame):
            if not forwarded:
                echo(f"{signal.Signals(signum).name}: asking the workers to save a checkpoint and stop")
            forwarded.append(signum)
            stopper.stop.remote(int(signum))

        previous = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            runner.start()
            while runner.is_alive():
                runner.join(POLL_SECONDS)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if forwarded:
            echo("stopped: the workers saved a checkpoint where training had begun; the same command continues the run")
            raise typer.Exit(EXIT_PREEMPTED if forwarded[0] == signal.SIGTERM else EXIT_INTERRUPTED)
        if "error" in outcome:
            raise LaunchFailed(failure_line(outcome["error"], max_failures, command)) from None
        echo(f"all {workers} workers finished")
    finally:
        ray.shutdown()


def failure_line(error, max_failures, command):
    failures = getattr(error, "worker_failures", None) or {}
    if failures:
        rank, cause = sorted(failures.items())[0]
        what = f"worker {rank}: {str(cause).strip().splitlines()[-1][:200] if str(cause).strip() else type(cause).__name__}"
    else:
        text = str(error).strip()
        what = text.splitlines()[-1][:200] if text else type(error).__name__
    return (
        f"the Ray workers failed {max_failures + 1} time(s), more than --max-failures {max_failures} allows (last: {what}); "
        "run the same command again to continue from the last checkpoint."
    )


class Stopper:
    """A Ray actor the driver tells about a signal, and the workers ask."""

    def __init__(self):
        self.signum = 0

    def stop(self, signum):
        self.signum = signum

    def requested(self):
        return self.signum


def _die_with_parent():
    """In the child, before exec: SIGKILL when the Ray worker that started it dies (Ray kills
    a failed group's actors; their `dlcli train` must not live on, waiting on a dead peer)."""
    import ctypes

    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def worker_loop(config):
    """The training function of each Ray worker: `dlcli train ...` as a child process with the
    TF_CONFIG Ray wrote; its output goes to the driver with a worker prefix."""
    import ray
    import ray.train

    rank = ray.train.get_context().get_world_rank()
    if ray.get(config["stopper"].requested.remote()):
        return  # the launcher was stopped while Ray (re)started this group: nothing to start
    env = {**os.environ, **config["env"], "PYTHONUNBUFFERED": "1"}
    # Ray's TensorFlow backend sets TF_USE_LEGACY_KERAS=1 (tf.keras as Keras 2); dlcli is Keras 3.
    env.pop("TF_USE_LEGACY_KERAS", None)
    cwd = config["cwd"] if os.path.isdir(config["cwd"]) else None
    child = subprocess.Popen(
        [sys.executable, "-m", "dlcli", *config["command"]], env=env, cwd=cwd, preexec_fn=_die_with_parent,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
    )
    pump = threading.Thread(target=_pump, args=(child, f"[worker {rank}] "), daemon=True)
    pump.start()
    asked = 0
    while child.poll() is None:
        if not asked:
            asked = ray.get(config["stopper"].requested.remote())
            if asked:
                child.send_signal(asked)
        time.sleep(POLL_SECONDS)
    pump.join(timeout=5)
    code = child.returncode
    if code == 0 or asked:
        return  # finished, or stopped on the launcher's signal (143/130: with a checkpoint saved)
    raise RuntimeError(f"dlcli train exited with code {code}")


def _pump(process, prefix):
    for line in process.stdout:
        print(prefix + line.rstrip("\n"), flush=True)
