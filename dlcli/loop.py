"""The one training loop, for every recipe under every tf.distribute strategy.

Keras 3's `model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), while a
Keras model, optimizer and metrics stepped by `strategy.run` work everywhere; so this is the loop.
Each tf.function call runs several steps so that Python overhead stays small on accelerators.
The loss is averaged over the GLOBAL batch (`tf.nn.compute_average_loss`), so the gradients
summed across replicas equal the single-device ones.
"""

import dataclasses
import math
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from dlcli import plots, predict, rundir
from dlcli.errors import EXIT_INTERRUPTED, EXIT_PREEMPTED, DlcliError, WriteError
from dlcli.lazy import keras, tf


# ## Data: exact global batches, sliced per replica


def batches(n, batch_size, *, shuffle_key=None, pad=False):
    """Cuts n examples into global batches: returns (index, weight), each (steps, batch).

    The batches hold example indices, not examples: the data itself is copied to tensors once
    per run (`host_tensors`) and gathered batch by batch in tf.data, so an epoch costs no copy
    of the dataset (which cost cnn 4% of its epoch time on 2 CPU cores).
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


def distribute(strategy, examples, batched, start_step=0):
    """A distributed dataset that hands each replica its slice of every global batch.

    `examples` are the (x, y) tensors (`host_tensors`), `batched` the (index, weight) global
    batches. Each input pipeline (one per worker) takes the slices of its own replicas, so a
    global step sees exactly the same examples on one device or on many.
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
        dataset = tf.data.Dataset.from_tensor_slices(tuple(parts))
        dataset = dataset.map(lambda index, weight: (*(tf.gather(t, index) for t in examples), weight))
        # A fixed buffer and no autotuning: with AUTOTUNE, deleting each epoch's spent iterator
        # waited 1.5-10 s on the tuning thread (up to 15% of a cnn epoch on 2 CPU cores).
        options = tf.data.Options()
        options.autotune.enabled = False
        return dataset.prefetch(2).with_options(options)

    return strategy.distribute_datasets_from_function(dataset_fn)


# ## Steps


def replica_steps(model, loss_fn, metrics, global_batch, optimizer=None, jit=False):
    """One train step and one eval step, each on one replica's slice of a global batch."""

    def train_step(x, y, w):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            per_example = loss_fn(y, pred)
            loss = tf.nn.compute_average_loss(per_example, sample_weight=w, global_batch_size=global_batch)
            if model.losses:
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
            # Under mixed_float16 the optimizer is a LossScaleOptimizer: scale up, it scales back.
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))
        update(y, pred, per_example, w)

    def eval_step(x, y, w):
        pred = model(x, training=False)
        update(y, pred, loss_fn(y, pred), w)

    def update(y, pred, per_example, w):
        metrics[0].update_state(per_example, sample_weight=w)
        for metric in metrics[1:]:
            metric.update_state(y, pred, sample_weight=w)

    if jit:  # XLA compiles each replica's step; the loop around it stays a plain tf.function
        return tuple(tf.function(f, jit_compile=True) for f in (train_step, eval_step))
    return train_step, eval_step


def step_functions(strategy, model, loss_fn, metrics, global_batch, optimizer=None, jit=False):
    """tf.functions that run `steps` train or eval steps on a distributed iterator."""
    train_step, eval_step = replica_steps(model, loss_fn, metrics, global_batch, optimizer, jit)

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


def evaluate(strategy, eval_steps, metrics, arrays, batch_size):
    """Metrics over every example of `arrays` (x, y), in padded global batches."""
    batched = batches(len(arrays[0]), batch_size, pad=True)
    for m in metrics:
        m.reset_state()
    eval_steps(iter(distribute(strategy, host_tensors(arrays), batched)), tf.constant(len(batched[0])))
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


# ## Training


def all_layers(layer):
    """A layer and every layer inside it (models, Bidirectional wrappers)."""
    yield layer
    for inner in [*getattr(layer, "layers", []), getattr(layer, "forward_layer", None), getattr(layer, "backward_layer", None)]:
        if inner is not None:
            yield from all_layers(inner)


def is_recurrent(layer):
    return isinstance(layer, (keras.layers.LSTM, keras.layers.GRU))


def fit(recipe, config, splits, strategy, run_dir, *, chief=True, resume=False, overwrite=False, run_info=None, report=None):
    """Trains `recipe` on `splits` under `strategy`; writes the run's artifacts into `run_dir`.

    Returns (final metrics, model); the metrics are also written to metrics.json.
    `report(event, **facts)` is called as training goes, for the CLI to show progress.
    Nothing in `run_dir` changes until the model is built and any checkpoint restored: only
    then does `overwrite` clear a previous run and `run_info` become config.json.
    Checkpoints (model, optimizer, dropout RNG state, partial-epoch metrics and the position
    in the data) are saved at every epoch end, every `config.checkpoint_every` steps, and on
    SIGTERM/SIGINT, so `resume=True` continues exactly where the run stopped.
    """
    report = report or (lambda event, **facts: None)
    run_dir = Path(run_dir)
    replicas = strategy.num_replicas_in_sync
    n_train = len(splits.train[0])
    global_batch = config.batch_size or n_train - n_train % replicas
    if global_batch % replicas:
        raise DlcliError(
            f"batch_size must be a multiple of the {replicas} replicas. Received: batch_size={global_batch}"
        )
    if not 0 < global_batch <= n_train:
        raise DlcliError(
            f"batch_size {global_batch} is larger than the {n_train} training examples; lower --batch-size."
        )
    steps_per_epoch = config.steps_per_epoch or n_train // global_batch
    inputs = preprocessed(splits)  # what the steps see; `splits` keeps the raw inputs
    train_examples = host_tensors(inputs.train)
    per_call = config.steps_per_execution or max(1, min(steps_per_epoch // 10, 100))
    report("start", replicas=replicas, global_batch=global_batch, steps_per_epoch=steps_per_epoch)

    keras.utils.set_random_seed(config.seed)
    with strategy.scope():
        model = recipe.build_model(config, splits)
        optimizer = make_optimizer(recipe, config, total_steps=config.epochs * steps_per_epoch)
        optimizer.build(model.trainable_variables)
        loss_fn, metrics = loss_and_metrics(recipe, config)
    jit = config.jit
    if jit and tf.config.list_logical_devices("GPU") and any(is_recurrent(layer) for layer in all_layers(model)):
        report("notice", message="XLA (--jit) cannot compile the fused cuDNN LSTM/GRU kernel; this model trains without XLA.")
        jit = False
    epoch_var = tf.Variable(0, dtype=tf.int64, trainable=False)  # epochs completed
    step_var = tf.Variable(0, dtype=tf.int64, trainable=False)  # steps completed in the current epoch
    train_steps, eval_steps = step_functions(strategy, model, loss_fn, metrics, global_batch, optimizer, jit)

    # Only the chief writes the real checkpoint; the others save too (under multi-worker every
    # worker takes part in a save) but into a scratch folder they delete.
    checkpoint_dir = run_dir / "checkpoints"
    save_dir = checkpoint_dir if chief else Path(tempfile.mkdtemp(prefix="dlcli-worker-"))
    checkpoint = tf.train.Checkpoint(
        model=model, optimizer=optimizer, epoch=epoch_var, step=step_var,
        # Keras keeps the dropout RNG state and metric totals out of the model's checkpoint.
        model_state=list(model.non_trainable_variables),
        metric_state=[v for m in metrics for v in m.variables],
    )
    history = []
    latest = tf.train.latest_checkpoint(str(checkpoint_dir)) if resume else None
    if latest:
        try:
            checkpoint.restore(latest).assert_existing_objects_matched()
        except (AssertionError, ValueError, tf.errors.OpError) as e:
            raise DlcliError(
                f"checkpoint {latest} does not fit this model and config ({str(e).strip().splitlines()[0][:160]})."
            ) from None
        if config.lr_schedule == "constant":  # a constant rate is a restored variable: honour a new --learning-rate
            optimizer.learning_rate = config.learning_rate
        history = rundir.read_history(run_dir / "history.csv")[: int(epoch_var.numpy())]
        report("resume", epoch=int(epoch_var.numpy()), step=int(step_var.numpy()), steps=steps_per_epoch)
    if chief:
        run_dir.mkdir(parents=True, exist_ok=True)
        if overwrite:
            rundir.clear_run(run_dir)
        if run_info is not None:
            rundir.write_json(run_dir / "config.json", run_info)
    manager = tf.train.CheckpointManager(checkpoint, str(save_dir), max_to_keep=3)

    def save_checkpoint(number):
        try:
            manager.save(checkpoint_number=number)
        except (OSError, tf.errors.OpError) as e:
            last = tf.train.latest_checkpoint(str(save_dir)) or "none"
            raise WriteError(
                f"could not write checkpoint {number} in {save_dir} ({type(e).__name__}); the last good one is {last}."
            ) from None
    board = tf.summary.create_file_writer(str(rundir.logs_dir(run_dir))) if chief else None

    def scalars(prefix, values, step):
        if board is not None:
            with board.as_default(step=step):
                for name, value in values.items():
                    tf.summary.scalar(f"{prefix}/{name}", value)

    def interrupted(signum, where):
        name = recipe.__name__.split(".")[-1]
        return Interrupted(
            f"stopped by {signal.Signals(signum).name} {where}; checkpoint saved. "
            f"Continue with: dlcli train {name} -o {run_dir} --resume",
            signum,
        )

    started = time.perf_counter()
    train_seconds = sum(row.get("seconds", 0) for row in history)
    with StopSignals() as signals:
        stop_requested = stop_check(strategy, signals)
        for epoch in range(int(epoch_var.numpy()), config.epochs):
            done = int(step_var.numpy())
            batched = epoch_batches(n_train, global_batch, steps_per_epoch, config.seed, epoch)
            iterator = iter(distribute(strategy, train_examples, batched, start_step=done))
            epoch_start = time.perf_counter()
            report("epoch_start", epoch=epoch + 1, epochs=config.epochs, steps=steps_per_epoch, done=done)
            while done < steps_per_epoch:
                n = min(per_call, steps_per_epoch - done)
                if config.checkpoint_every:  # stop each call at the next checkpoint boundary
                    n = min(n, config.checkpoint_every - (epoch * steps_per_epoch + done) % config.checkpoint_every)
                train_steps(iterator, tf.constant(n))
                done += n
                logs = {m.name: float(m.result()) for m in metrics}
                if not math.isfinite(logs["loss"]):
                    last = tf.train.latest_checkpoint(str(checkpoint_dir)) or "none yet"
                    raise DlcliError(
                        f"the loss became {logs['loss']} in epoch {epoch + 1}, steps {done - n + 1}-{done}; "
                        f"lower --learning-rate. Last good checkpoint: {last}."
                    )
                report("steps", done=done, logs=logs)
                global_step = epoch * steps_per_epoch + done
                scalars("train_steps", logs, global_step)
                stop = stop_requested()
                if done < steps_per_epoch and (stop or (config.checkpoint_every and global_step % config.checkpoint_every == 0)):
                    step_var.assign(done)
                    save_checkpoint(global_step)
                if stop and done < steps_per_epoch:
                    # Another worker's signal stops this one too: it exits as if preempted.
                    raise interrupted(signals.received or signal.SIGTERM, f"in epoch {epoch + 1} at step {done}/{steps_per_epoch}")
            seconds = time.perf_counter() - epoch_start
            train_seconds += seconds
            row = {"epoch": epoch + 1, **results(metrics)}
            if len(inputs.val[0]):
                val = evaluate(strategy, eval_steps, metrics, inputs.val, global_batch)
                row.update({f"val_{k}": v for k, v in val.items()})
            row.update(
                learning_rate=float(keras.ops.convert_to_numpy(optimizer.learning_rate)),
                seconds=round(seconds, 3),
                examples_per_sec=round(steps_per_epoch * global_batch / seconds, 1),
            )
            history.append(row)
            scalars("epoch", {k: v for k, v in row.items() if k != "epoch"}, epoch + 1)
            if board is not None:
                board.flush()
            epoch_var.assign(epoch + 1)
            step_var.assign(0)
            if chief:
                rundir.write_history(run_dir / "history.csv", history)
            save_checkpoint((epoch + 1) * steps_per_epoch)
            report("epoch_end", row=row)
            if stop_requested() and epoch + 1 < config.epochs:
                raise interrupted(signals.received or signal.SIGTERM, f"after epoch {epoch + 1}")

        # A signal from here on changes nothing: the run is complete once its artifacts are saved.
        test = evaluate(strategy, eval_steps, metrics, inputs.test, global_batch)
        trained_steps = len(history) * steps_per_epoch
        final = {
            "test": test,
            "test_examples": len(splits.test[0]),
            "epochs": config.epochs,
            "wall_seconds": round(time.perf_counter() - started, 3),
            "train_seconds": round(train_seconds, 3),
            "examples_per_sec": round(trained_steps * global_batch / train_seconds, 1) if train_seconds else None,
        }
        if chief:
            # The saved model takes raw inputs: recipes with `splits.preprocess` fold it in.
            saved = recipe.inference_model(model, splits) if hasattr(recipe, "inference_model") else model
            rundir.save_model(saved, run_dir / "model.keras")
            # Baselines and pictures use a copy outside the strategy: under multi-worker the
            # trained model's predict would wait on workers that have already finished.
            local = predict.load_keras(run_dir / "model.keras")
            if hasattr(recipe, "after_training"):
                final["report"] = recipe.after_training(config, splits, local, run_dir)
            pictures = plots.classifier_pictures(local, splits, run_dir) if splits.num_classes else []
            final["pictures"] = sorted(p.name for p in [*pictures, *plots.redraw(run_dir)])
            rundir.write_json(run_dir / "metrics.json", final)
            if board is not None:
                board.close()
        else:
            shutil.rmtree(save_dir, ignore_errors=True)
    return final, model
