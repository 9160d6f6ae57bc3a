"""dlcli on the cluster engines users run, each the real engine on this machine, with a worker
killed or the job requeued mid-run; the run ends with the metrics of an uninterrupted one.

- Slurm (Debian's slurm-wlm and munge): munged, slurmctld and slurmd started here as root, a
  2-task sbatch job of docs/slurm-train.sbatch, `scontrol requeue` mid-run.
- Ray: a cluster of two nodes (one CPU each), `dlcli launch --ray`, one worker's training
  process killed with SIGKILL; then --max-failures exceeded.

Each engine runs inside a network namespace made here (only its loopback interface is up),
so all of its traffic stays on 127.0.0.1 there, and its ports meet nothing else on the machine.
Skipped, with the reason, where the engine is not installed or namespaces cannot be made.
"""

import contextlib
import importlib.util
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from tests.conftest import REPO
from tests.test_fault_tolerance import ENV, epochs_in, finish, start

# Every engine trains this (2 workers, global batch 48: 24 per replica), against one reference.
TRAIN = [
    "cnn", "--dataset", "digits", "--set", "steps_per_epoch=60", "--set", "steps_per_execution=1",
    "--batch-size", "48", "--epochs", "2", "--seed", "7", "--deterministic", "--checkpoint-every", "20",
]
PATH = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"  # where the `dlcli` script is


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The test metrics of the same training, uninterrupted, as `dlcli launch --workers 2`."""
    run_dir = tmp_path_factory.mktemp("reference") / "run"
    code, out, err = finish(start("launch", "--workers", 2, "--", "train", *TRAIN, "-o", run_dir), timeout=600)
    assert code == 0, err[-3000:] + out[-3000:]
    return json.loads((run_dir / "metrics.json").read_text())["test"]


@contextlib.contextmanager
def network_namespace(prefix, extra_address=None):
    """A new network namespace with its loopback up; yields the command prefix that runs a
    program in it (nsenter: unlike `ip netns exec`, it keeps the host's /sys, where slurmd
    finds its cgroups). On leaving, every process still in it is stopped and it is deleted."""
    if os.geteuid() != 0:
        pytest.skip("making a network namespace needs root")
    name = f"{prefix}-{os.getpid()}-{random.randrange(10**6)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        pytest.skip(f"cannot make a network namespace here: {made.stderr.strip()[:160]}")
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        if extra_address:
            subprocess.run(["ip", "-n", name, "addr", "add", extra_address, "dev", "lo"], check=True)
        yield ["nsenter", f"--net=/run/netns/{name}"]
    finally:
        for sig in (signal.SIGTERM, signal.SIGKILL):
            pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), sig)
            deadline = time.time() + 15
            while pids and time.time() < deadline:
                time.sleep(0.2)
                pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        subprocess.run(["ip", "netns", "delete", name], capture_output=True)


# ## Slurm

SLURM_CONF = """\
ClusterName=dlcli
SlurmctldHost={host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={folder}/munge.sock
CredType=cred/munge
StateSaveLocation={folder}/state
SlurmdSpoolDir={folder}/spool
SlurmctldPidFile={folder}/slurmctld.pid
SlurmdPidFile={folder}/slurmd.pid
SlurmctldLogFile={folder}/slurmctld.log
SlurmdLogFile={folder}/slurmd.log
ProctrackType=proctrack/pgid
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
ReturnToService=2
KillWait=60
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 State=UNKNOWN
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
"""


class Slurm:
    def __init__(self, enter, folder):
        self.enter, self.folder = enter, folder
        self.env = {**ENV, "SLURM_CONF": str(folder / "slurm.conf"), "PATH": PATH}

    def run(self, *args, check=True):
        done = subprocess.run([*self.enter, *map(str, args)], capture_output=True, text=True, env=self.env, timeout=60)
        if check:
            assert done.returncode == 0, f"{' '.join(map(str, args))}: {done.stderr[-2000:]}"
        return done.stdout.strip()

    def job(self, job_id):
        """{Key: value} of `scontrol show job`."""
        return dict(re.findall(r"(\w+)=(\S*)", self.run("scontrol", "show", "job", "-o", job_id)))

    def logs(self):
        return "\n".join(f"{p.name}: {p.read_text()[-1500:]}" for p in sorted(self.folder.glob("*.log")))


@pytest.fixture(scope="module")
def slurm():
    """A one-node Slurm (slurmctld, slurmd, munged) of 2 CPUs, on 127.0.0.1 in its own network
    namespace, as root; its jobs run as root too."""
    missing = [name for name in ("munged", "slurmctld", "slurmd", "sbatch", "scontrol", "sinfo") if not shutil.which(name)]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    folder = Path(tempfile.mkdtemp(prefix="dlcli-slurm-"))  # short: munge's socket path has a length limit
    # glibc's getaddrinfo(AI_ADDRCONFIG), which Slurm calls, resolves nothing while every IPv4
    # address is a loopback one: a second address on lo (nothing routes to it) lifts that.
    with network_namespace("dlcli-slurm", extra_address="10.254.0.1/32") as enter:
        try:
            host = subprocess.run(["hostname", "-s"], capture_output=True, text=True, check=True).stdout.strip()
            for sub in ("state", "spool"):
                (folder / sub).mkdir()
            (folder / "slurm.conf").write_text(SLURM_CONF.format(host=host, folder=folder))
            key = folder / "munge.key"
            key.write_bytes(os.urandom(1024))
            key.chmod(0o400)
            cluster = Slurm(enter, folder)
            munged = subprocess.run(
                [*enter, "munged", "--force", f"--socket={folder}/munge.sock", f"--key-file={key}", f"--pid-file={folder}/munged.pid",
                 f"--log-file={folder}/munged.log", f"--seed-file={folder}/munge.seed"],
                capture_output=True, text=True,
            )
            if munged.returncode != 0:
                pytest.skip(f"munged did not start: {munged.stderr.strip()[:200]}")
            daemons = [
                subprocess.Popen([*enter, daemon, "-D", *extra], env=cluster.env, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
                for daemon, extra in (("slurmctld", ["-i"]), ("slurmd", []))
            ]
            deadline = time.time() + 60
            while cluster.run("sinfo", "-h", "-o", "%T", check=False) != "idle":
                if time.time() > deadline or any(d.poll() is not None for d in daemons):
                    pytest.skip(f"the Slurm daemons did not come up: {cluster.logs()[-1500:]}")
                time.sleep(0.5)
            yield cluster
        finally:
            shutil.rmtree(folder, ignore_errors=True)


def wait_for_state(slurm, job_id, states, timeout=300):
    deadline = time.time() + timeout
    while True:
        job = slurm.job(job_id)
        if job.get("JobState") in states:
            return job
        assert time.time() < deadline, f"job {job_id} is {job.get('JobState')} ({job.get('Reason')}), not {states}: {slurm.logs()}"
        time.sleep(0.5)


def test_a_requeued_slurm_job_continues_from_its_checkpoint_to_the_uninterrupted_metrics(slurm, reference, tmp_path):
    """docs/slurm-train.sbatch, 2 tasks of `dlcli train`: --strategy auto builds the cluster from
    SLURM_*; `scontrol requeue` mid-run stops the tasks (SIGTERM: a checkpoint) and runs the
    script again, whose same command continues the run (runs/cnn-slurmJOBID, resume auto)."""
    job_id = slurm.run("sbatch", "--parsable", f"--chdir={tmp_path}", REPO / "docs" / "slurm-train.sbatch", *TRAIN)
    run_dir = tmp_path / "runs" / f"cnn-slurm{job_id}"
    deadline = time.time() + 300
    while not (run_dir / "checkpoints" / "checkpoint").exists():  # the first checkpoint, at step 20
        assert slurm.job(job_id)["JobState"] in ("PENDING", "RUNNING", "CONFIGURING"), slurm.logs()
        assert time.time() < deadline, f"no checkpoint in {run_dir}: {(tmp_path / f'slurm-{job_id}.out').read_text()[-3000:]}"
        time.sleep(0.1)
    time.sleep(random.uniform(0.5, 2.0))
    slurm.run("scontrol", "requeue", job_id)
    pending = wait_for_state(slurm, job_id, ("PENDING",), timeout=120)
    assert int(pending["Restarts"]) == 1
    slurm.run("scontrol", "update", f"JobId={job_id}", "StartTime=now")  # Slurm delays a requeued job by 2 minutes
    done = wait_for_state(slurm, job_id, ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL"), timeout=420)
    output = (tmp_path / f"slurm-{job_id}.out").read_text()
    assert done["JobState"] == "COMPLETED", output[-4000:]
    assert "strategy multi-worker (CollectiveAllReduceStrategy), 2 replica(s)" in output
    assert output.count("resume auto: no checkpoint") == 2  # both tasks, first time
    assert output.count(f"resume auto: continuing the run in runs/cnn-slurm{job_id} from checkpoint ckpt-") == 2, output[:6000]
    # The requeue's SIGTERM makes the tasks save a checkpoint (srun no longer forwards their last
    # words, but the chief's train.log keeps them). On a loaded machine Slurm's KillWait may end
    # them first; then the job continues from the last periodic checkpoint, as asserted above.
    log = (run_dir / "train.log").read_text()
    if "stopped by" in log:
        assert re.search(r"error: stopped by SIGTERM (in epoch \d at step \d+/60|after epoch \d); checkpoint saved", log), log[-2000:]
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == reference
    assert epochs_in(run_dir) == [1, 2]


# ## Ray


@pytest.fixture(scope="module")
def ray_cluster():
    """A Ray cluster of two nodes of one CPU each, both on 127.0.0.1 in their own network
    namespace (outside one, Ray picks the machine's external address for its nodes); yields
    (the namespace's command prefix, the head's address)."""
    if importlib.util.find_spec("ray") is None:
        pytest.skip('Ray is not installed: pip install -e ".[ray]"')
    ray_cli = shutil.which("ray", path=PATH)
    temp = Path(tempfile.mkdtemp(prefix="dr-"))  # short: Ray's socket paths have a length limit
    common = ["--num-cpus", "1", "--node-ip-address", "127.0.0.1", "--object-store-memory", str(80 * 2**20), "--disable-usage-stats"]
    with network_namespace("dlcli-ray") as enter:
        try:
            address = "127.0.0.1:6390"
            env = {**ENV, "PATH": PATH}
            for args in (["--head", "--port", "6390", "--include-dashboard=false", "--temp-dir", str(temp)], ["--address", address]):
                started = subprocess.run([*enter, ray_cli, "start", *args, *common], capture_output=True, text=True, env=env, timeout=180)
                if started.returncode != 0:
                    pytest.skip(f"ray start {args[0]} failed: {started.stderr.strip()[-300:]}")
            probe = "import ray; ray.init(address='%s', logging_level='ERROR'); print(len([n for n in ray.nodes() if n['Alive']]))" % address
            deadline = time.time() + 120
            while subprocess.run([*enter, sys.executable, "-c", probe], capture_output=True, text=True, env=env).stdout.strip() != "2":
                assert time.time() < deadline, "the second Ray node never joined"
                time.sleep(1)
            yield enter, address
        finally:
            shutil.rmtree(temp, ignore_errors=True)


def start_ray_launch(enter, address, run_dir, *options):
    return subprocess.Popen(
        [*enter, sys.executable, "-m", "dlcli", "launch", "--ray", address, "--workers", "2", *map(str, options),
         "--", "train", *TRAIN, "-o", str(run_dir)],
        cwd=REPO, env={**ENV, "PATH": PATH}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def training_processes(run_dir):
    """The `dlcli train` processes the Ray workers started for `run_dir`."""
    import psutil

    found = []
    for process in psutil.process_iter(["cmdline"]):
        cmdline = process.info["cmdline"] or []
        if "dlcli" in cmdline and "train" in cmdline and str(run_dir) in cmdline and "launch" not in cmdline:
            found.append(process)
    return found


def kill_one_worker(run_dir, launcher, after=()):
    """SIGKILLs one of the two training processes once both run (not those of `after`, an
    earlier group); returns the pids of the group."""
    deadline = time.time() + 300
    while True:
        assert launcher.poll() is None, launcher.communicate()[1][-3000:]
        assert time.time() < deadline, "the Ray workers never started training"
        running = [p for p in training_processes(run_dir) if p.pid not in after]
        if len(running) == 2:
            break
        time.sleep(0.2)
    random.choice(running).kill()
    return {p.pid for p in running}


def wait_for_checkpoint_after(run_dir, number, launcher, timeout=300):
    from tests.test_restarts import latest_number

    deadline = time.time() + timeout
    while latest_number(run_dir / "checkpoints") <= number:
        assert launcher.poll() is None, launcher.communicate()[1][-3000:]
        assert time.time() < deadline, f"no checkpoint after {number}"
        time.sleep(0.1)
    return latest_number(run_dir / "checkpoints")


def test_a_stopped_ray_launch_checkpoints_and_a_killed_worker_is_restarted_to_the_uninterrupted_metrics(ray_cluster, reference, tmp_path):
    """SIGTERM to the launcher reaches the workers, which save a checkpoint (exit 143); the same
    command continues, one worker is SIGKILLed, Ray restarts the group, and the run ends with
    the metrics of an uninterrupted run."""
    enter, address = ray_cluster
    run_dir = tmp_path / "run"
    launcher = start_ray_launch(enter, address, run_dir, "--max-failures", 2)
    wait_for_checkpoint_after(run_dir, -1, launcher)  # step 20
    time.sleep(random.uniform(0.2, 1.0))
    launcher.send_signal(signal.SIGTERM)
    code, out, err = finish(launcher, timeout=300)
    assert code == 143, err[-4000:]
    assert "SIGTERM: asking the workers to save a checkpoint and stop" in err and "the same command continues the run" in err
    assert re.search(r"error: stopped by SIGTERM in epoch \d at step \d+/60; checkpoint saved", (run_dir / "train.log").read_text())
    assert not training_processes(run_dir)
    from tests.test_restarts import latest_number

    stopped_at = latest_number(run_dir / "checkpoints")

    launcher = start_ray_launch(enter, address, run_dir, "--max-failures", 2)
    wait_for_checkpoint_after(run_dir, stopped_at, launcher)
    time.sleep(random.uniform(0.2, 1.0))
    kill_one_worker(run_dir, launcher)
    code, out, err = finish(launcher, timeout=600)
    assert code == 0, err[-4000:] + out[-3000:]
    assert "launching 2 workers on the Ray cluster at 127.0.0.1:6390 (1 CPU each; up to 2 restart(s))" in err
    assert "all 2 workers finished" in err
    logged = out + err
    resumed = re.findall(r"\[worker ([01])\] resume auto: continuing the run in .* from checkpoint ckpt-(\d+)", logged)
    # Both workers continued twice: after the stop, and in the group Ray restarted.
    assert {("0", str(stopped_at)), ("1", str(stopped_at))} < set(resumed) and len(set(resumed)) == 4, logged[-4000:]
    assert json.loads((run_dir / "metrics.json").read_text())["test"] == reference
    assert epochs_in(run_dir) == [1, 2]
    assert not training_processes(run_dir)


def test_past_max_failures_a_ray_launch_ends_with_one_line_and_exit_1(ray_cluster, tmp_path):
    enter, address = ray_cluster
    run_dir = tmp_path / "run"
    launcher = start_ray_launch(enter, address, run_dir, "--max-failures", 1)
    first = kill_one_worker(run_dir, launcher)
    kill_one_worker(run_dir, launcher, after=first)  # one of the restarted group
    code, out, err = finish(launcher, timeout=600)
    assert code == 1, err[-4000:]
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    assert errors == [err.strip().splitlines()[-1]], err[-4000:]
    assert re.fullmatch(
        r"error: the Ray workers failed 2 time\(s\), more than --max-failures 1 allows \(last: worker [01]: .*exited with code -9\); "
        r"run the same command again to continue from the last checkpoint\.", errors[0],
    ), errors[0]
    assert not training_processes(run_dir)
