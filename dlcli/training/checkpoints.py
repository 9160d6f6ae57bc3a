"""Checkpoints: which one every worker restores, restoring it, and saving them as training goes."""

import shutil
import tempfile
from pathlib import Path

from dlcli.core.errors import DlcliError, WriteError
from dlcli.core.lazy import tf
from dlcli.runs import rundir
from dlcli.training import checkpoint_check


def agree_on_checkpoint(strategy, chief, resume, folder):
    """The checkpoint every worker restores: the chief's choice (the latest in `folder`, or none
    for a fresh start). Under multi-worker the chief's checkpoint number reaches the others in one
    all-reduce, so a worker that read the shared folder at another moment (a late start, a
    different decision) still restores exactly what the chief restores, and no worker reads a
    file the chief is about to write."""
    latest = rundir.latest_checkpoint(folder) if (chief and resume) else None
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return str(Path(folder) / latest) if latest else None

    @tf.function
    def from_chief(number):
        return strategy.reduce("SUM", strategy.run(lambda: number), axis=None)

    # Only the chief's replicas contribute, so the sum is its number times its replica count.
    local_replicas = len(strategy.extended.worker_devices)
    contribution = (rundir.checkpoint_number(latest) + 1) if latest else 0
    agreed = int(from_chief(tf.constant(contribution, tf.int64))) // local_replicas
    return str(Path(folder) / f"ckpt-{agreed - 1}") if agreed else None


def restore(state, config, latest, run_dir, the_plan, report, resume):
    """Restores checkpoint `latest` (a path prefix) into `state`, and the history up to it.
    Nothing to restore when resuming is an error: a resumed run never silently starts again
    from epoch 1. (Every worker gets the same `latest`, so every worker takes this decision.)"""
    if not latest:
        if resume:
            raise DlcliError(
                f"--resume: {rundir.checkpoints_dir(run_dir)} holds no readable checkpoint (missing, or its state file is "
                "damaged), so there is nothing to resume and nothing was changed. Train again with --overwrite, or into another --output."
            )
        return
    checkpoint_check.verify(latest)  # a truncated data file: one line, not a reader crash
    if state.early_stopping and not any(name.startswith("early_stopping/") for name, _ in tf.train.list_variables(latest)):
        raise DlcliError(
            f"checkpoint {latest} was saved by a run without early stopping, so it holds no best model; "
            "resume it without --early-stopping (early_stopping=0), or start a new run."
        )
    try:
        state.checkpoint.restore(latest).assert_existing_objects_matched()
    except (AssertionError, ValueError, tf.errors.OpError) as e:
        raise DlcliError(
            f"checkpoint {latest} does not fit this model and config ({str(e).strip().splitlines()[0][:160]})."
        ) from None
    if config.lr_schedule == "constant":  # a constant rate is a restored variable: honour a new --learning-rate
        state.optimizer.learning_rate = config.learning_rate
    state.history = rundir.read_history(Path(run_dir) / "history.csv")[: int(state.epoch.numpy())]
    state.train_seconds = sum(row.get("seconds", 0) for row in state.history)
    report("resume", epoch=int(state.epoch.numpy()), step=int(state.step.numpy()), steps=the_plan.steps_per_epoch)


def start_run_dir(run_dir, overwrite, record):
    """The chief's first write: only now, with the model built and any checkpoint restored,
    does `overwrite` clear a previous run and the record become config.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    if overwrite:
        rundir.clear_run(run_dir)
    if record is not None:
        record.write(run_dir / "config.json")


class Checkpoints:
    """Saves the state: into RUN_DIR/checkpoints on the chief; into a scratch folder on the other
    workers (under multi-worker every worker takes part in a save), deleted at the end."""

    def __init__(self, state, run_dir, chief):
        self.run_dir = Path(run_dir)
        self.shared = rundir.checkpoints_dir(run_dir)  # RUN_DIR/checkpoints, or AIP_CHECKPOINT_DIR
        self.folder = self.shared if chief else Path(tempfile.mkdtemp(prefix="dlcli-worker-"))
        self.chief = chief
        self.manager = tf.train.CheckpointManager(state.checkpoint, str(self.folder), max_to_keep=3)

    def save(self, number):
        try:
            self.manager.save(checkpoint_number=number)
        except (OSError, tf.errors.OpError) as e:
            last = tf.train.latest_checkpoint(str(self.folder)) or "none"
            raise WriteError(
                f"could not write checkpoint {number} in {self.folder} ({type(e).__name__}); the last good one is {last}."
            ) from None

    def latest(self):
        return tf.train.latest_checkpoint(str(self.shared))

    def close(self):
        if not self.chief:
            shutil.rmtree(self.folder, ignore_errors=True)
