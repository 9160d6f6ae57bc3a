"""The one training loop, for every recipe under every tf.distribute strategy.

Keras 3's `model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), while a
Keras model, optimizer and metrics stepped by `strategy.run` work everywhere; so this is the loop.
Each tf.function call runs several steps so that Python overhead stays small on accelerators.
The loss is averaged over the GLOBAL batch (`tf.nn.compute_average_loss`), so the gradients
summed across replicas equal the single-device ones.

`fit` reads in phases, as Keras' Trainer and big_vision's train.py do: plan the batches, build
and restore, then per epoch train, validate and checkpoint, calling the hooks at epoch end;
then evaluate on the test split and save. What is made from the trained model afterwards
(baselines, pictures) lives in `dlcli.artifacts`.
"""

import dataclasses
import math
import os
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dlcli import checkpoint_check, data, remote, rundir
from dlcli import config as config_lib
from dlcli.data import Files, count
from dlcli.errors import EXIT_INTERRUPTED, EXIT_PREEMPTED, DlcliError, WriteError
from dlcli.lazy import keras, tf


# ## Data: exact global batches of example indices, sliced per replica

MAX_EPOCH_EXAMPLES = 1 << 27  # 134M indices: about 1.6 GB of index and weight arrays


def batches(n, batch_size, *, shuffle_key=None, pad=False):
    """Cuts n examples into global batches: returns (index, weight), each (steps, batch).

    The batches hold example indices, not examples: array data is copied to tensors once per
    run (`examples`) and file data stays on disk; tf.data gathers or decodes batch by batch,
    so an epoch costs no copy of the dataset (which cost cnn 4% of its epoch time on 2 cores).
    With a shuffle key (seed, epoch, pass), the examples are shuffled by it, so an epoch's
    batches are the same whatever the replica count and however often the run was resumed.
    Training drops the last partial batch; evaluation (`pad=True`) pads it with weight-0
    copies of example 0, so every example counts once and every batch has one static shape
    (as TPUs and XLA need).
    """
    order = np.random.default_rng(shuffle_key).permutation(n) if shuffle_key is not None else np.arange(n)
    weights = np.ones(n, np.float32)
    if pad:
        extra = -n % batch_size
        order = np.concatenate([order, np.zeros(extra, order.dtype)])
        weights = np.concatenate([weights, np.zeros(extra, np.float32)])
    steps = len(order) // batch_size
    return [a[: steps * batch_size].reshape(steps, batch_size) for a in (order, weights)]


def epoch_batches(n, batch_size, steps, seed, epoch):
    """The `steps` global batches of one epoch: as many shuffled passes over the data as needed."""
    passes = [batches(n, batch_size, shuffle_key=(seed, epoch, p)) for p in range(-(-steps // (n // batch_size)))]
    return [np.concatenate(parts)[:steps] for parts in zip(*passes)]


def host_tensors(arrays):
    """Arrays as tensors in host memory, where tf.data gathers batches from them."""
    with tf.device("CPU:0"):
        return [tf.convert_to_tensor(a) for a in arrays]


def examples(split):
    """What tf.data draws batches from: host tensors for arrays, the file list for `Files`."""
    return split if isinstance(split, Files) else host_tensors(split)


def preprocessed(splits):
    """The splits with `splits.preprocess` (lstm's TextVectorization) applied to every input
    once, before training: inside tf.data it ran again every epoch and cost lstm 13% of its
    steps/s on 2 CPU cores (benchmarks/input_pipeline.py). Preprocessing must be deterministic."""
    if splits.preprocess is None:
        return splits

    def apply(arrays):
        x, y = arrays
        if not len(x):
            return arrays
        dataset = tf.data.Dataset.from_tensor_slices(x).batch(1024).map(splits.preprocess, num_parallel_calls=tf.data.AUTOTUNE)
        return np.concatenate(list(dataset.as_numpy_iterator())), y

    return dataclasses.replace(splits, train=apply(splits.train), val=apply(splits.val), test=apply(splits.test), preprocess=None)


def replica_pipeline(source, index, weight):
    """tf.data of (x, y, weight) batches for one input pipeline, from its slices of the global
    batches (`index`, `weight`: steps x per-replica batch)."""
    if isinstance(source, Files):
        # One example at a time through `decode`, in parallel but in order, then re-batched:
        # the batches are exactly the index batches, as with arrays.
        paths, targets = tf.constant(source.paths), tf.constant(source.targets)
        dataset = tf.data.Dataset.from_tensor_slices((index.reshape(-1), weight.reshape(-1)))
        def decode(i, w):
            x = source.decode(tf.gather(paths, i))
            return x, (x if source.inputs_as_targets else tf.gather(targets, i)), w

        dataset = dataset.map(
            decode,
            num_parallel_calls=os.cpu_count() or 1, deterministic=True,
        )
        return dataset.batch(index.shape[1], drop_remainder=True)
    dataset = tf.data.Dataset.from_tensor_slices((index, weight))
    return dataset.map(lambda i, w: (*(tf.gather(t, i) for t in source), w))


def distribute(strategy, source, batched, start_step=0):
    """A distributed dataset that hands each replica its slice of every global batch.

    `source` is what `examples` gives, `batched` the (index, weight) global batches. Each input
    pipeline (one per worker) takes the slices of its own replicas, so a global step sees
    exactly the same examples on one device or on many, and a worker reads only its own files.
    """
    replicas = strategy.num_replicas_in_sync

    def dataset_fn(context):
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local
        parts = []
        for array in batched:
            steps, batch = array.shape
            per_replica = array[start_step:].reshape(steps - start_step, replicas, batch // replicas)
            parts.append(per_replica[:, first : first + local].reshape(-1, batch // replicas))
        # A fixed buffer and no autotuning: with AUTOTUNE, deleting each epoch's spent iterator
        # waited 1.5-10 s on the tuning thread (up to 15% of a cnn epoch on 2 CPU cores).
        options = tf.data.Options()
        options.autotune.enabled = False
        return replica_pipeline(source, *parts).prefetch(2).with_options(options)

    return strategy.distribute_datasets_from_function(dataset_fn)


# ## Steps


def replica_steps(model, loss_fn, metrics, global_batch, optimizer=None, jit=False, micro_batches=1):
    """One train step and one eval step, each on one replica's slice of a global batch.

    With `micro_batches` > 1 the slice is cut into that many equal parts: their gradients are
    summed into one optimizer update (the loss is averaged over the global batch, so the sum is
    the whole slice's gradient), and TensorFlow may run the parts side by side.
    """

    def parts(x, y, w):
        return zip(*(tf.split(t, micro_batches) for t in (x, y, w)))

    def train_step(x, y, w):
        grads = None
        for part in parts(x, y, w):
            part_grads = gradients(*part)
            grads = part_grads if grads is None else [summed(a, b) for a, b in zip(grads, part_grads)]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    def gradients(x, y, w):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            per_example = loss_fn(y, pred)
            loss = tf.nn.compute_average_loss(per_example, sample_weight=w, global_batch_size=global_batch)
            if model.losses:  # once per step: each micro-batch adds its share
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses)) / micro_batches
            # Under mixed_float16 the optimizer is a LossScaleOptimizer: scale up, it scales back.
            scaled = optimizer.scale_loss(loss)
        update(y, pred, per_example, w)
        return tape.gradient(scaled, model.trainable_variables)

    def eval_step(x, y, w):
        for x, y, w in parts(x, y, w):
            pred = model(x, training=False)
            update(y, pred, loss_fn(y, pred), w)

    def update(y, pred, per_example, w):
        metrics[0].update_state(per_example, sample_weight=w)
        for metric in metrics[1:]:
            metric.update_state(y, pred, sample_weight=w)

    if jit:  # XLA compiles each replica's step; the loop around it stays a plain tf.function
        return tuple(tf.function(f, jit_compile=True) for f in (train_step, eval_step))
    return train_step, eval_step


def summed(a, b):
    """a + b for two gradients of one variable. An embedding's gradient is sparse (IndexedSlices,
    the rows the batch looked up), and stays sparse: the two parts' rows are put together."""
    if isinstance(a, tf.IndexedSlices) and isinstance(b, tf.IndexedSlices):
        return tf.IndexedSlices(tf.concat([a.values, b.values], 0), tf.concat([a.indices, b.indices], 0), a.dense_shape)
    if a is None or b is None:  # a variable the loss does not reach
        return a if b is None else b
    return tf.convert_to_tensor(a) + tf.convert_to_tensor(b)


def step_functions(strategy, model, loss_fn, metrics, global_batch, optimizer=None, jit=False, micro_batches=1):
    """tf.functions that run `steps` train or eval steps on a distributed iterator."""
    train_step, eval_step = replica_steps(model, loss_fn, metrics, global_batch, optimizer, jit, micro_batches)

    @tf.function
    def train_steps(iterator, steps):
        for _ in tf.range(steps):
            strategy.run(train_step, args=next(iterator))

    @tf.function
    def eval_steps(iterator, steps):
        for _ in tf.range(steps):
            strategy.run(eval_step, args=next(iterator))

    return train_steps, eval_steps


def results(metrics, prefix=""):
    out = {prefix + m.name: float(m.result()) for m in metrics}
    for m in metrics:
        m.reset_state()
    return out


def evaluate(strategy, eval_steps, metrics, split, batch_size):
    """Metrics over every example of `split` (arrays or `Files`), in padded global batches."""
    batched = batches(count(split), batch_size, pad=True)
    for m in metrics:
        m.reset_state()
    eval_steps(iter(distribute(strategy, examples(split), batched)), tf.constant(len(batched[0])))
    return results(metrics)


def loss_and_metrics(recipe, config):
    """The recipe's per-example loss and its metrics, led by the mean loss."""
    return recipe.loss(config), [keras.metrics.Mean(name="loss"), *recipe.metrics(config)]


def make_optimizer(recipe, config, total_steps):
    if config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=total_steps)
    else:
        learning_rate = config.learning_rate
    if hasattr(recipe, "optimizer"):
        optimizer = recipe.optimizer(config, learning_rate)
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    if config.precision == "mixed_float16":  # float16 gradients underflow without loss scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer


def all_layers(layer):
    """A layer and every layer inside it (models, Bidirectional wrappers)."""
    yield layer
    for inner in [*getattr(layer, "layers", []), getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None)]:
        if inner is not None:
            yield from all_layers(inner)


def is_recurrent(layer):
    return isinstance(layer, (keras.layers.LSTM, keras.layers.GRU))


# ## Stopping cleanly: SIGTERM (preemption) and Ctrl-C save a checkpoint first


class Interrupted(DlcliError):
    """Training stopped by a signal after saving a checkpoint; `--resume` continues it."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = EXIT_PREEMPTED if signum == signal.SIGTERM else EXIT_INTERRUPTED


class StopSignals:
    """Records SIGTERM/SIGINT instead of dying mid-step; a second Ctrl-C stops at once."""

    def __init__(self):
        self.received = None
        self.previous = {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.received == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)


def stop_check(strategy, signals):
    """A function telling whether any worker got a stop signal. Multi-worker runs agree on it
    with one tiny all-reduce, so every worker stops and saves at the same step."""
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return lambda: signals.received is not None

    @tf.function
    def any_worker(flag):
        return strategy.reduce("SUM", strategy.run(lambda: flag), axis=None)

    return lambda: int(any_worker(tf.constant(int(signals.received is not None)))) > 0


# ## Hooks: what runs beside training (TensorBoard, early stopping)


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


# ## Training, in phases


@dataclass
class Plan:
    """How the data is cut: the global batch, steps per epoch and steps per tf.function call."""

    global_batch: int
    steps_per_epoch: int
    per_call: int


@dataclass
class State:
    """What the phases share: the model, its optimizer and metrics, the step functions, the
    checkpoint that holds all of it, and the history so far."""

    model: object
    optimizer: object
    metrics: list
    train_steps: object
    eval_steps: object
    epoch: object  # tf.Variable: epochs completed
    step: object  # tf.Variable: steps completed in the current epoch
    checkpoint: object
    early_stopping: object = None  # an EarlyStopping when config.early_stopping > 0
    history: list = field(default_factory=list)
    train_seconds: float = 0.0


@dataclass
class Run:
    """Where and how this fit trains, fixed from the first epoch to the end: what the epoch
    phases read besides the `State`."""

    config: object
    strategy: object
    plan: Plan
    run_dir: Path
    chief: bool
    checkpoints: object  # Checkpoints
    hooks: list
    report: object  # report(event, **facts), for the CLI's progress


@dataclass
class FitResult:
    """What `fit` returns: the final metrics (also in metrics.json), the model and its history."""

    metrics: dict
    model: object
    history: list


def plan(config, splits, strategy):
    """Checks the batch size against the replicas and the data, and sizes the epoch."""
    replicas = strategy.num_replicas_in_sync
    n_train = count(splits.train)
    global_batch = config.batch_size or n_train - n_train % replicas
    if global_batch % replicas:
        raise DlcliError(f"batch_size must be a multiple of the {replicas} replicas. Received: batch_size={global_batch}")
    if not 0 < global_batch <= n_train:
        raise DlcliError(f"batch_size {global_batch} is larger than the {n_train} training examples; lower --batch-size.")
    micro_batches = config.micro_batches or 1
    if (global_batch // replicas) % micro_batches:
        raise DlcliError(
            f"each replica's batch ({global_batch // replicas}) must be a multiple of micro_batches. "
            f"Received: micro_batches={micro_batches}"
        )
    steps_per_epoch = config.steps_per_epoch or n_train // global_batch
    if steps_per_epoch * global_batch > MAX_EPOCH_EXAMPLES:
        # An epoch's index batches are cut up front; past this they would not fit in memory.
        raise DlcliError(
            f"an epoch of {steps_per_epoch} steps x {global_batch} examples is more than dlcli cuts at once "
            f"({MAX_EPOCH_EXAMPLES}); lower steps_per_epoch. Received: steps_per_epoch={steps_per_epoch}"
        )
    per_call = config.steps_per_execution or max(1, min(steps_per_epoch // 10, 100))
    return Plan(global_batch, steps_per_epoch, per_call)


def build(recipe, config, splits, strategy, the_plan, report):
    """The model, optimizer, metrics and step functions, created under the strategy."""
    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = recipe.build_model(config, splits)
        optimizer = make_optimizer(recipe, config, total_steps=config.epochs * the_plan.steps_per_epoch)
        optimizer.build(model.trainable_variables)
        loss_fn, metrics = loss_and_metrics(recipe, config)
    jit = config.jit
    if jit and tf.config.list_logical_devices("GPU") and any(is_recurrent(layer) for layer in all_layers(model)):
        report("notice", message="XLA (--jit) cannot compile the fused cuDNN LSTM/GRU kernel; this model trains without XLA.")
        jit = False
    check_monitor(recipe, config, [m.name for m in metrics], bool(count(splits.val)))
    train_steps, eval_steps = step_functions(
        strategy, model, loss_fn, metrics, the_plan.global_batch, optimizer, jit, config.micro_batches or 1
    )
    epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
    step = tf.Variable(0, dtype=tf.int64, trainable=False)
    early_stopping = None
    if config.early_stopping:
        monitor = config_lib.monitor_of(recipe, config)
        early_stopping = EarlyStopping(
            model, strategy, monitor, monitor_mode(config, monitor), config.early_stopping, config.min_delta
        )
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, epoch=epoch, step=step,
        # Keras keeps the dropout RNG state and metric totals out of the model's checkpoint.
        model_state=list(model.non_trainable_variables),
        metric_state=[v for m in metrics for v in m.variables],
        # The best weights and the patience counter: a resumed run stops where the whole one would.
        **({"early_stopping": early_stopping.trackable} if early_stopping else {}),
    )
    return State(model, optimizer, metrics, train_steps, eval_steps, epoch, step, checkpoint, early_stopping)


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


def train_epoch(run, state, train_source, n_train, epoch, stop_requested, interrupted):
    """Trains one epoch from where `state.step` says it stopped; returns (metrics row, seconds).
    Checkpoints every `checkpoint_every` steps and when a stop signal arrives (then raises)."""
    config, steps = run.config, run.plan.steps_per_epoch
    done = int(state.step.numpy())
    batched = epoch_batches(n_train, run.plan.global_batch, steps, config.seed, epoch)
    iterator = iter(distribute(run.strategy, train_source, batched, start_step=done))
    started = time.perf_counter()
    run.report("epoch_start", epoch=epoch + 1, epochs=config.epochs, steps=steps, done=done)
    while done < steps:
        n = min(run.plan.per_call, steps - done)
        if config.checkpoint_every:  # stop each call at the next checkpoint boundary
            n = min(n, config.checkpoint_every - (epoch * steps + done) % config.checkpoint_every)
        state.train_steps(iterator, tf.constant(n))
        done += n
        logs = {m.name: float(m.result()) for m in state.metrics}
        if not math.isfinite(logs["loss"]):
            raise DlcliError(
                f"the loss became {logs['loss']} in epoch {epoch + 1}, steps {done - n + 1}-{done}; "
                f"lower --learning-rate. Last good checkpoint: {run.checkpoints.latest() or 'none yet'}."
            )
        run.report("steps", done=done, logs=logs)
        global_step = epoch * steps + done
        call_hooks(run.hooks, "on_steps", global_step, logs)
        stop = stop_requested()
        if done < steps and (stop or (config.checkpoint_every and global_step % config.checkpoint_every == 0)):
            state.step.assign(done)
            run.checkpoints.save(global_step)
            call_hooks(run.hooks, "on_checkpoint", global_step)
        if stop and done < steps:
            # Another worker's signal stops this one too: it exits as if preempted.
            raise interrupted(f"in epoch {epoch + 1} at step {done}/{steps}")
    seconds = time.perf_counter() - started
    state.train_seconds += seconds
    return {"epoch": epoch + 1, **results(state.metrics)}, seconds


def end_epoch(run, state, row, seconds, val_split):
    """Validation, the history row and history.csv, the hooks, then the epoch-end checkpoint:
    after the hooks, so it holds what they decided (early stopping's best weights and counter).
    Returns True when a hook asks training to stop."""
    if count(val_split):
        val = evaluate(run.strategy, state.eval_steps, state.metrics, val_split, run.plan.global_batch)
        row.update({f"val_{k}": v for k, v in val.items()})
    row.update(
        learning_rate=float(keras.ops.convert_to_numpy(state.optimizer.learning_rate)),
        seconds=round(seconds, 3),
        examples_per_sec=round(run.plan.steps_per_epoch * run.plan.global_batch / seconds, 1),
    )
    state.history.append(row)
    state.epoch.assign(row["epoch"])
    state.step.assign(0)
    if run.chief:
        rundir.write_history(run.run_dir / "history.csv", state.history)
    run.report("epoch_end", row=row)
    stop = call_hooks(run.hooks, "on_epoch_end", state, row)
    run.checkpoints.save(row["epoch"] * run.plan.steps_per_epoch)
    call_hooks(run.hooks, "on_checkpoint", row["epoch"] * run.plan.steps_per_epoch)
    return stop


def finish(run, recipe, state, splits, test_split, started):
    """Test metrics, and on the chief the saved model (taking raw inputs) and metrics.json.

    With early stopping, the last epoch's model is saved as model-last.keras, then the best
    weights go back into the model: the test metrics and model.keras are the best model's."""
    # The saved model takes raw inputs: recipes with `splits.preprocess` fold it in.
    def saved():
        return recipe.inference_model(state.model, splits) if hasattr(recipe, "inference_model") else state.model

    config, chief = run.config, run.chief
    last_epoch = len(state.history)
    monitor = config_lib.monitor_of(recipe, config)
    stopping = state.early_stopping
    if stopping:
        if chief:
            rundir.save_model(saved(), run.run_dir / "model-last.keras")
        stopping.restore_best()
        facts = stopping.facts()
        stopped = facts["stopped_epoch"]
        best_epoch, best_value = facts["best_epoch"] or None, facts["best"] if facts["best_epoch"] else None
    else:
        best_epoch, best_value = best_in(state.history, monitor, monitor_mode(config, monitor))
    test = evaluate(run.strategy, state.eval_steps, state.metrics, test_split, run.plan.global_batch)
    trained_steps = len(state.history) * run.plan.steps_per_epoch
    final = {
        "test": test,
        "test_examples": count(splits.test),
        "epochs": config.epochs,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "train_seconds": round(state.train_seconds, 3),
        "examples_per_sec": round(trained_steps * run.plan.global_batch / state.train_seconds, 1) if state.train_seconds else None,
        # What model.keras is: the best epoch's weights with early stopping, else the last epoch's.
        "best_epoch": best_epoch,
        "best": {"monitor": monitor, "value": best_value} if best_epoch else None,
        # None when it ran every epoch (patience that ran out in the last epoch stopped nothing).
        "stopped_epoch": stopped if stopping and stopped and stopped < config.epochs else None,
        "model_epoch": (best_epoch or last_epoch) if stopping else last_epoch,
        "early_stopping": config.early_stopping,
    }
    if chief:
        rundir.save_model(saved(), run.run_dir / "model.keras")
        rundir.write_json(run.run_dir / "metrics.json", final)
    call_hooks(run.hooks, "on_finish", state, final)
    return final


def fit(recipe, config, splits, strategy, run_dir, *, chief=True, resume=False, overwrite=False, record=None, report=None, hooks=None):
    """Trains `recipe` on `splits` under `strategy`; writes the run into `run_dir`.

    Returns a `FitResult`. `report(event, **facts)` is called as training goes, for the CLI to
    show progress; `hooks` are objects with any of `on_steps(global_step, logs)`,
    `on_epoch_end(state, row) -> stop?`, `on_checkpoint(global_step)` (after each save) and
    `on_finish(state, final)` (the chief also logs
    to TensorBoard through one; early stopping, with `config.early_stopping`, is one too).
    `report("run_dir_ready")` says when the chief has started the run folder. Nothing in
    `run_dir` changes until the model is built and any checkpoint restored. Checkpoints (model,
    optimizer, dropout RNG state, partial-epoch metrics, the position in the data, and early
    stopping's best weights and counter) are saved at every epoch end, every
    `config.checkpoint_every` steps, and on SIGTERM/SIGINT, so `resume=True` continues exactly
    where the run stopped.
    """
    report = report or (lambda event, **facts: None)
    run_dir = Path(run_dir)
    started = time.perf_counter()

    # 1. Plan the batches and put the data where tf.data reads it.
    the_plan = plan(config, splits, strategy)
    inputs = preprocessed(splits)  # what the steps see; `splits` keeps the raw inputs
    train_source = examples(inputs.train)
    report("start", replicas=strategy.num_replicas_in_sync, global_batch=the_plan.global_batch, steps_per_epoch=the_plan.steps_per_epoch)

    # 2. Build, restore, and only then touch the run folder.
    state = build(recipe, config, splits, strategy, the_plan, report)
    latest = agree_on_checkpoint(strategy, chief, resume, rundir.checkpoints_dir(run_dir))
    restore(state, config, latest, run_dir, the_plan, report, resume)
    hooks = [*([state.early_stopping] if state.early_stopping else []), *(hooks or [])]
    if chief:
        start_run_dir(run_dir, overwrite, record)
        report("run_dir_ready", run_dir=run_dir)
        name = recipe.__name__.split(".")[-1]
        hparams = {"recipe": name, **dataclasses.asdict(config), "monitor": config_lib.monitor_of(recipe, config)}
        hooks.append(TensorBoardLog(rundir.logs_dir(run_dir), hparams, trial_id=run_dir.name))
        hooks.extend(remote.sync_hooks(run_dir))  # last: uploads what the hooks above wrote
    checkpoints = Checkpoints(state, run_dir, chief)
    run = Run(config, strategy, the_plan, run_dir, chief, checkpoints, hooks, report)

    # 3. Epochs: train, validate, checkpoint, hooks.
    with StopSignals() as signals, data.naming_undecodable_files(splits.train, splits.val, splits.test):
        stop_requested = stop_check(strategy, signals)

        def interrupted(where):
            signum = signals.received or signal.SIGTERM
            name = recipe.__name__.split(".")[-1]
            return Interrupted(
                f"stopped by {signal.Signals(signum).name} {where}; checkpoint saved. "
                f"Continue with: dlcli train {name} -o {remote.location_of(run_dir)} --resume (or the same command, under TF_CONFIG or AIP_*)",
                signum,
            )

        # A run that early stopping ended stays ended, even when resumed with more --epochs.
        first_epoch = config.epochs if state.early_stopping and state.early_stopping.stopped else int(state.epoch.numpy())
        for epoch in range(first_epoch, config.epochs):
            row, seconds = train_epoch(run, state, train_source, count(splits.train), epoch, stop_requested, interrupted)
            if end_epoch(run, state, row, seconds, inputs.val):
                if state.early_stopping and state.early_stopping.stopped and epoch + 1 < config.epochs:
                    report("early_stop", **state.early_stopping.facts())
                break
            if stop_requested() and epoch + 1 < config.epochs:
                raise interrupted(f"after epoch {epoch + 1}")

        # 4. A signal from here on changes nothing: the run is complete once it is saved.
        final = finish(run, recipe, state, splits, inputs.test, started)
    checkpoints.close()
    return FitResult(final, state.model, state.history)
