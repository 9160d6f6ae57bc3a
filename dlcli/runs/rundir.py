"""The run directory: what every run leaves, written so an interruption never half-writes a file.

    RUN_DIR/config.json    resolved config, versions, strategy and devices
    RUN_DIR/model.keras    the final model (the best epoch's, with early stopping)
    RUN_DIR/model-last.keras  with early stopping, the last epoch's model
    RUN_DIR/checkpoints/   tf.train.CheckpointManager checkpoints, for --resume
    RUN_DIR/history.csv    one row of metrics per epoch
    RUN_DIR/metrics.json   final test metrics, wall time, examples/s
    RUN_DIR/train.log      what the terminal showed, as plain text
"""

import csv
import fcntl
import io
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from dlcli.core.errors import DlcliError, WriteError
from dlcli.core.ui import finite

RUN_FILES = (
    "config.json", "model.keras", "model-last.keras", "checkpoints", "history.csv", "metrics.json", "logs", "train.log",
    "evaluations.csv",  # a cluster's evaluator task (dlcli/training/evaluator.py)
)
# On Vertex AI, the SavedModel export that its model registry serves, beside model.keras.
SAVEDMODEL_FILES = ("saved_model.pb", "variables", "assets", "fingerprint.pb")
PICTURES = ("curves.png", "confusion_matrix.png", "confusion_matrix.csv", "samples.png", "forecast.png", "forecast.csv",
            "reconstructions.png", "spectrograms.png")
EXPORTS = "export"  # `dlcli export`'s default folder: exports of the old model must not outlive it


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path, content):
    """Writes `content` (str or bytes) to `path` through a temporary file and a rename: readers
    see the old file or the new one, never half of one."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise WriteError(f"could not write {path}: {e.strerror}; the previous {path.name} is unchanged.") from None
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(content.encode("utf-8") if isinstance(content, str) else content)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        Path(tmp).unlink(missing_ok=True)
        raise WriteError(f"could not write {path}: {e.strerror}; the previous {path.name} is unchanged.") from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json(path, obj):
    """Strict JSON (no NaN/Infinity, which other tools cannot read): non-finite numbers are null."""
    atomic_write(path, json.dumps(finite(obj), indent=2, default=str, allow_nan=False) + "\n")


def read_json(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DlcliError(f"cannot read {path}: {e}") from None


def write_history(path, rows):
    """Rewrites history.csv with every epoch so far (a few rows: cheap, and always whole)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    atomic_write(path, out.getvalue())


def read_history(path):
    if not Path(path).is_file():
        return []
    with open(path, newline="", encoding="utf-8") as f:
        return [{k: _number(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _number(text):
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            return text


def save_model(model, path):
    """Saves a Keras model atomically (Keras insists on the .keras suffix, so the temp file keeps it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.keras")
    try:
        model.save(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise WriteError(f"could not write {path}: {e.strerror}; the previous {path.name} is unchanged.") from None
    finally:
        tmp.unlink(missing_ok=True)


def runs_root():
    """Where default run folders go: $DLCLI_RUNS if set (the container image sets /runs, its
    volume), else ./runs."""
    return Path(os.environ.get("DLCLI_RUNS") or "runs")


def default_run_dir(recipe):
    """$DLCLI_RUNS/RECIPE-TIMESTAMP; in a Slurm job $DLCLI_RUNS/RECIPE-slurmJOBID, the same for
    every task of the job and for the job requeued (which then continues it)."""
    root = runs_root()
    job = os.environ.get("SLURM_JOB_ID")
    if job:
        return root / f"{recipe}-slurm{job}"
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = root / f"{recipe}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = root / f"{recipe}-{stamp}-{n}"
    return path


def local_path(location, variable):
    """A path for a location from the environment: gs://bucket/x is /gcs/bucket/x (Cloud Storage FUSE)."""
    if location.startswith("gs://"):
        if not Path("/gcs").is_dir():
            raise DlcliError(
                f"{variable} {location} needs the Cloud Storage FUSE mount at /gcs; mount the bucket there, "
                "or pass --output gs://... (written through TensorFlow's file system) or a local --output."
            )
        return Path("/gcs") / location[len("gs://") :]
    return Path(location)


def logs_dir(run_dir):
    """Where TensorBoard events go: Vertex AI's AIP_TENSORBOARD_LOG_DIR if set, else RUN_DIR/logs."""
    location = os.environ.get("AIP_TENSORBOARD_LOG_DIR")
    return local_path(location, "AIP_TENSORBOARD_LOG_DIR") if location else Path(run_dir) / "logs"


def checkpoints_dir(run_dir):
    """Where checkpoints go: Vertex AI's AIP_CHECKPOINT_DIR if set, else RUN_DIR/checkpoints."""
    location = os.environ.get("AIP_CHECKPOINT_DIR")
    return local_path(location, "AIP_CHECKPOINT_DIR") if location else Path(run_dir) / "checkpoints"


def latest_checkpoint(folder):
    """The name of the newest complete checkpoint in `folder` (`ckpt-N`), or None; read from the
    `checkpoint` file tf.train.CheckpointManager keeps, without importing TensorFlow.
    TensorFlow writes a checkpoint's files before it points `checkpoint` at it."""
    try:
        text = (Path(folder) / "checkpoint").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    match = re.search(r'^model_checkpoint_path: "([^"]+)"', text, re.M)
    if not match:
        return None
    name = Path(match.group(1)).name
    return name if (Path(folder) / f"{name}.index").is_file() else None


def checkpoint_number(name):
    """`ckpt-120` -> 120 (the global step it was saved at)."""
    return int(name.rsplit("-", 1)[1])


def resolve_run_dir(output, recipe):
    """--output, else Vertex AI's AIP_MODEL_DIR, else $DLCLI_RUNS/RECIPE-TIMESTAMP (./runs/...).

    `--output gs://bucket/path` goes through TensorFlow's file system: the run is staged in a
    local copy that is uploaded as training goes (see dlcli/runs/remote.py). Vertex AI's AIP_MODEL_DIR
    is a gs:// location that Vertex AI also mounts at /gcs/ (Cloud Storage FUSE), so it is
    written as /gcs/bucket/path.
    """
    if output is not None:
        from dlcli.runs import remote

        if remote.is_remote(output):  # a Path has already folded gs://bucket into gs:/bucket
            return remote.stage_run(output)
        return Path(output)
    vertex = os.environ.get("AIP_MODEL_DIR")
    return local_path(vertex, "AIP_MODEL_DIR") if vertex else default_run_dir(recipe)


def check_output(path, *, overwrite, resume):
    """Refuses to train into a non-empty folder unless asked to resume or overwrite it."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise DlcliError(f"--output {path} exists and is not a folder.")
    non_empty = path.is_dir() and any(path.iterdir())
    if resume:
        if not (path / "config.json").is_file():
            raise DlcliError(f"--resume needs an existing run folder with config.json; {path} has none.")
    elif non_empty and not overwrite:
        raise DlcliError(
            f"--output {path} already holds files. Pass --resume to continue that run, "
            "--overwrite to replace it, or choose another --output."
        )


class RunLock:
    """An exclusive lock on a run folder (flock on the folder itself, so no file is added),
    held while one process trains into it: a second `dlcli train -o` into the same folder is
    refused instead of mixing two runs. Creates the folder; removes it again on exit if this
    process created it and left it empty (bad input found after the lock)."""

    def __init__(self, path):
        self.path = Path(path)
        self.created = not self.path.exists()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self.fd = os.open(self.path, os.O_RDONLY)
        except OSError as e:
            raise DlcliError(f"cannot use {self.path} as the run folder: {e.strerror}.") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self.fd)
            raise DlcliError(f"another dlcli process is training into {self.path}; wait for it, or choose another --output.") from None

    def release(self):
        os.close(self.fd)  # releases the lock
        if self.created and self.path.is_dir() and not any(self.path.iterdir()):
            self.path.rmdir()


# A free-space floor below which a run is refused before it starts: checkpoints and the model
# of the recipes here are a few MiB each; a disk with less than this is as good as full.
MIN_FREE_BYTES = 64 * 2**20
PROBE_BYTES = 2**20


def in_container():
    """Whether this is dlcli's container image (its Dockerfile sets DLCLI_CONTAINER=1)."""
    return bool(os.environ.get("DLCLI_CONTAINER"))


def check_writable(path, what="run folder"):
    """Refuses, before any data loads, a location training could not write: a file in the way,
    no permission, a read-only or full file system. Nothing is left behind: the probe is a
    temporary file in the nearest existing folder, removed at once."""
    path = Path(path)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        blocker = "it" if existing == path else f"{existing}"
        raise DlcliError(f"cannot write the {what} {path}: {blocker} is a file, not a folder; choose another --output or move the file.")
    hint = ""
    if in_container():
        owner = existing.stat().st_uid
        hint = (
            f" The container runs as uid {os.getuid()} and {existing} belongs to uid {owner}: "
            'run it with --user "$(id -u):$(id -g)" (docker run --user ...), or make the host folder writable.'
        )
    try:
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".dlcli-write-test.")
    except OSError as e:
        raise DlcliError(f"cannot write the {what} {path}: {e.strerror} in {existing}.{hint}") from None
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(b"\0" * PROBE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise DlcliError(f"cannot write the {what} {path}: {e.strerror} in {existing}; free some space or choose another --output.") from None
    finally:
        Path(probe).unlink(missing_ok=True)
    free = shutil.disk_usage(existing).free
    if free < MIN_FREE_BYTES:
        raise DlcliError(
            f"cannot write the {what} {path}: only {free // 2**20} MiB free in {existing} (at least {MIN_FREE_BYTES // 2**20} MiB needed); "
            "free some space or choose another --output."
        )


# What a continued run may change: how long it trains, how often it checkpoints, how steps are
# grouped per call, where tensorflow-datasets keeps its data, XLA. Any other key makes it another run.
RESUMABLE_CHANGES = ("epochs", "checkpoint_every", "steps_per_execution", "data_dir", "jit")


def config_changes(saved, new):
    """The config keys whose values differ between a saved run and a new command, except those
    a continued run may change."""
    keys = sorted((set(saved) | set(new)) - set(RESUMABLE_CHANGES))
    return [k for k in keys if saved.get(k) != new.get(k)]


def clear_run(path):
    """Removes a previous run's artifacts (for --overwrite), once the new run is ready to start,
    and its checkpoints where they live elsewhere (AIP_CHECKPOINT_DIR)."""
    path = Path(path)
    for name in (*RUN_FILES, *PICTURES, *SAVEDMODEL_FILES, EXPORTS, "evaluation.json"):
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    folder = checkpoints_dir(path)
    if folder.is_dir():
        for target in [folder / "checkpoint", *folder.glob("ckpt-*")]:
            target.unlink(missing_ok=True)


def versions():
    import keras
    import tensorflow as tf

    import dlcli

    return {"dlcli": dlcli.__version__, "tensorflow": tf.__version__, "keras": keras.__version__}
