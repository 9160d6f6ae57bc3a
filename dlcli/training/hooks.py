"""What runs beside training at epoch end: early stopping (with the best model) and TensorBoard
logging. Each hook is an object with a few methods that `call_hooks` calls when it has them."""

import math
from pathlib import Path

from dlcli.core.errors import DlcliError
from dlcli.core.lazy import tf
from dlcli.models import config as config_lib


def monitor_mode(config, monitor):
    """min or max; `auto` maximises accuracy-like metrics and minimises the rest (losses, errors)."""
    return config.mode if config.mode != "auto" else config_lib.auto_mode(monitor)


def check_monitor(recipe, config, metric_names, has_validation):
    """Refuses, before training, a monitor the run will not produce. Only matters when early
    stopping is on or a monitor was named; otherwise a default that does not exist (no
    validation split) just leaves the best epoch unknown."""
    monitor = config_lib.monitor_of(recipe, config)
    produced = [*metric_names, *(f"val_{name}" for name in metric_names if has_validation)]
    if monitor in produced or not (config.early_stopping or config.monitor):
        return
    if monitor.startswith("val_") and monitor[4:] in metric_names:
        why = "this run has no validation split (validation_split=0)"
        fix = f"set --set validation_split=0.1, or --set monitor={monitor[4:]}"
    else:
        why = "the run does not produce it"
        fix = "set --set monitor=NAME with one of them"
    raise DlcliError(f"monitor {monitor} cannot be followed: {why}. Metrics of this run: {', '.join(produced)}; {fix}.")


def best_in(history, monitor, mode):
    """(epoch, value) of the best `monitor` in `history` rows, or (None, None) without it."""
    rows = [row for row in history if isinstance(row.get(monitor), (int, float)) and math.isfinite(row[monitor])]
    if not rows:
        return None, None
    best = (min if mode == "min" else max)(rows, key=lambda row: row[monitor])
    return int(best["epoch"]), float(best[monitor])


class EarlyStopping:
    """Stops when `monitor` has not improved by `min_delta` for `patience` epochs, and keeps the
    best weights so far, as Keras' EarlyStopping(restore_best_weights=True) does.

    Unlike the Keras callback, its whole state lives in tf.Variables that are part of the
    training checkpoint: copies of the model's weights (created under the strategy scope, so
    they are mirrored like the weights), the best value and epoch, the patience counter and the
    epoch it stopped at. The loop calls `on_epoch_end` before it saves the epoch-end checkpoint,
    so a run preempted at any point and resumed stops at the same epoch with the same best model
    as one that never stopped; and a run that had stopped stays stopped.
    """

    def __init__(self, model, strategy, monitor, mode, patience, min_delta):
        self.model, self.monitor, self.mode, self.patience, self.min_delta = model, monitor, mode, patience, min_delta
        with strategy.scope():
            self.best_weights = [tf.Variable(tf.zeros(w.shape, w.dtype), trainable=False) for w in model.weights]
        self.best_value = tf.Variable(math.inf if mode == "min" else -math.inf, dtype=tf.float64, trainable=False)
        self.best_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # 0: none yet
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.stopped_epoch = tf.Variable(0, dtype=tf.int64, trainable=False)  # 0: has not stopped
        self.trackable = tf.train.Checkpoint(
            best_weights=self.best_weights, best_value=self.best_value, best_epoch=self.best_epoch,
            wait=self.wait, stopped_epoch=self.stopped_epoch,
        )

    @property
    def stopped(self):
        return int(self.stopped_epoch.numpy()) > 0

    def improved(self, value):
        best = float(self.best_value.numpy())
        if not math.isfinite(value):
            return False
        return value < best - self.min_delta if self.mode == "min" else value > best + self.min_delta

    def on_epoch_end(self, state, row):
        value = float(row[self.monitor])
        if self.improved(value):
            self.best_value.assign(value)
            self.best_epoch.assign(row["epoch"])
            self.wait.assign(0)
            for best, weight in zip(self.best_weights, self.model.weights):
                best.assign(weight.value)
            return False
        self.wait.assign_add(1)
        if int(self.wait.numpy()) >= self.patience:
            self.stopped_epoch.assign(row["epoch"])
            return True
        return False

    def restore_best(self):
        """Puts the best weights into the model (cross-replica assign: every replica gets them)."""
        if int(self.best_epoch.numpy()):
            for weight, best in zip(self.model.weights, self.best_weights):
                weight.assign(best)

    def facts(self):
        return {
            "monitor": self.monitor, "best": float(self.best_value.numpy()), "best_epoch": int(self.best_epoch.numpy()),
            "patience": self.patience, "stopped_epoch": int(self.stopped_epoch.numpy()) or None,
        }


def hparam_value(value):
    """A config value as the HParams plugin takes it: bool, int, float or str."""
    return value if isinstance(value, (bool, int, float, str)) else str(value)


class TensorBoardLog:
    """TensorBoard events laid out as Keras' TensorBoard callback lays them out, so they read the
    way people expect: LOGDIR/train and LOGDIR/validation are two runs with the same scalar names
    (epoch_loss, epoch_accuracy, ...: the curves overlay), train also has epoch_learning_rate,
    epoch_examples_per_sec and per-chunk batch_* scalars (by global step). LOGDIR itself holds
    an HParams session: the run's resolved config as hyperparameters, and at the end its final
    metrics (test_*, best_*) as scalars, so `tensorboard --logdir runs` compares runs in the
    HParams tab. No experiment-wide hparams_config is written: TensorBoard takes one such
    config from an arbitrary run, which would hide the keys of every other recipe; without it,
    TensorBoard gathers the hyperparameters and metrics from all the runs' sessions.
    A resumed run adds new event files beside the old ones.
    """

    def __init__(self, logdir, hparams, trial_id):
        from tensorboard.plugins.hparams import api as hp

        logdir = Path(logdir)
        self.writers = {name: tf.summary.create_file_writer(str(logdir / name)) for name in ("train", "validation")}
        self.session = tf.summary.create_file_writer(str(logdir))
        with self.session.as_default():
            hp.hparams({k: hparam_value(v) for k, v in hparams.items() if v is not None}, trial_id=trial_id)
        self.session.flush()

    @staticmethod
    def _write(writer, values, step):
        with writer.as_default(step=step):
            for name, value in values.items():
                if isinstance(value, (int, float)):
                    tf.summary.scalar(name, value)

    def on_steps(self, global_step, logs):
        self._write(self.writers["train"], {f"batch_{k}": v for k, v in logs.items()}, global_step)

    def on_epoch_end(self, state, row):
        epoch = row["epoch"]
        train = {f"epoch_{k}": v for k, v in row.items() if k not in ("epoch", "seconds") and not k.startswith("val_")}
        self._write(self.writers["train"], train, epoch)
        self._write(self.writers["validation"], {f"epoch_{k[4:]}": v for k, v in row.items() if k.startswith("val_")}, epoch)
        for writer in self.writers.values():
            writer.flush()

    def on_finish(self, state, final):
        metrics = {f"test_{k}": v for k, v in final["test"].items()}
        if final.get("best"):
            metrics[f"best_{final['best']['monitor']}"] = final["best"]["value"]
            metrics["best_epoch"] = final["best_epoch"]
        self._write(self.session, metrics, len(state.history))
        for writer in [*self.writers.values(), self.session]:
            writer.close()


def call_hooks(hooks, event, *args):
    """Calls `event` on every hook that has it; at epoch end, any True answer stops training."""
    answers = [getattr(hook, event)(*args) for hook in hooks if hasattr(hook, event)]
    return any(answers)
