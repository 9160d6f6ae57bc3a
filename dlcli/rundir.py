"""The run directory: what every run leaves, written so an interruption never half-writes a file.

    RUN_DIR/config.json    resolved config, versions, strategy and devices
    RUN_DIR/model.keras    the final model
    RUN_DIR/checkpoints/   tf.train.CheckpointManager checkpoints, for --resume
    RUN_DIR/history.csv    one row of metrics per epoch
    RUN_DIR/metrics.json   final test metrics, wall time, examples/s
"""

import csv
import fcntl
import io
import json
import math
import os
import shutil
import tempfile
import time
from pathlib import Path

from dlcli.errors import DlcliError, WriteError

RUN_FILES = ("config.json", "model.keras", "checkpoints", "history.csv", "metrics.json", "logs")
PICTURES = ("curves.png", "confusion_matrix.png", "confusion_matrix.csv", "samples.png", "forecast.png", "forecast.csv", "reconstructions.png")


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


def finite(obj):
    """`obj` with every NaN or infinite float made None: JSON has no such numbers."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


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


def default_run_dir(recipe):
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = Path("runs") / f"{recipe}-{stamp}"
    n = 1
    while path.exists():
        n += 1
        path = Path("runs") / f"{recipe}-{stamp}-{n}"
    return path


def local_path(location, variable):
    """A path for a location from the environment: gs://bucket/x is /gcs/bucket/x (Cloud Storage FUSE)."""
    if location.startswith("gs://"):
        if not Path("/gcs").is_dir():
            raise DlcliError(f"{variable}={location} needs the Cloud Storage FUSE mount at /gcs; pass --output instead.")
        return Path("/gcs") / location[len("gs://") :]
    return Path(location)


def logs_dir(run_dir):
    """Where TensorBoard events go: Vertex AI's AIP_TENSORBOARD_LOG_DIR if set, else RUN_DIR/logs."""
    location = os.environ.get("AIP_TENSORBOARD_LOG_DIR")
    return local_path(location, "AIP_TENSORBOARD_LOG_DIR") if location else Path(run_dir) / "logs"


def resolve_run_dir(output, recipe):
    """--output, else Vertex AI's AIP_MODEL_DIR, else runs/RECIPE-TIMESTAMP.

    Vertex AI gives gs:// locations and mounts Cloud Storage at /gcs/ (Cloud Storage FUSE),
    so gs://bucket/path is written as /gcs/bucket/path.
    """
    if output is not None:
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


def clear_run(path):
    """Removes a previous run's artifacts (for --overwrite), once the new run is ready to start."""
    path = Path(path)
    for name in (*RUN_FILES, *PICTURES, "evaluation.json"):
        target = path / name
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()


def versions():
    import keras
    import tensorflow as tf

    import dlcli

    return {"dlcli": dlcli.__version__, "tensorflow": tf.__version__, "keras": keras.__version__}
