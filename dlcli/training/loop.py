"""The one training loop, for every recipe under every tf.distribute strategy.

Keras 3's `model.fit` fails under MultiWorkerMirroredStrategy (keras-team/keras#20585), while a
Keras model, optimizer and metrics stepped by `strategy.run` work everywhere; so this is the loop.
Each tf.function call runs several steps so that Python overhead stays small on accelerators.
The loss is averaged over the GLOBAL batch (`tf.nn.compute_average_loss`), so the gradients
summed across replicas equal the single-device ones.

`fit` reads in phases, as Keras' Trainer and big_vision's train.py do: plan the batches, build
and restore, then per epoch train, validate and checkpoint, calling the hooks at epoch end;
then evaluate on the test split and save. What is made from the trained model afterwards
(baselines, pictures) lives in `dlcli.training.artifacts`. The pieces have their own modules:
`batches`, `steps`, `hooks`, `signals` and `checkpoints`.
"""

import dataclasses
import math
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from dlcli import data
from dlcli.core.errors import DlcliError
from dlcli.core.lazy import keras, tf
from dlcli.data import count
from dlcli.models import config as config_lib
from dlcli.models.layers import all_layers, is_recurrent
from dlcli.runs import remote, rundir
from dlcli.training.batches import MAX_EPOCH_EXAMPLES, distribute, epoch_batches, examples, preprocessed
from dlcli.training.checkpoints import Checkpoints, agree_on_checkpoint, restore, start_run_dir
from dlcli.training.hooks import EarlyStopping, TensorBoardLog, best_in, call_hooks, check_monitor, monitor_mode
from dlcli.training.signals import Interrupted, StopSignals, stop_check
from dlcli.training.steps import evaluate, loss_and_metrics, make_optimizer, results, step_functions


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
    make_steps: object = None  # () -> (train_steps, eval_steps), traced anew
    phase: str | None = None  # the recipe's training phase (`training_phase`), when it has phases


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
    for name, n in (("training", n_train), ("test", count(splits.test))):
        if n == 0:  # the source says why when it can ("FILE holds 0 images"); this catches the rest
            raise DlcliError(f"{splits.source} gives 0 {name} examples: nothing to {'train' if name == 'training' else 'test'} on. Use more data.")
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

    def make_steps():  # traced again when a recipe's training phase changes what trains
        return step_functions(strategy, model, loss_fn, metrics, the_plan.global_batch, optimizer, jit, config.micro_batches or 1)

    train_steps, eval_steps = make_steps()
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
    return State(model, optimizer, metrics, train_steps, eval_steps, epoch, step, checkpoint, early_stopping, make_steps=make_steps)


def enter_phase(recipe, state, config, epoch, report):
    """Lets a recipe with phases (a frozen backbone, then fine-tuning) set what trains this epoch;
    the steps are traced again when the phase changes, since they captured the trainable weights."""
    if not hasattr(recipe, "training_phase"):
        return
    phase = recipe.training_phase(config, state.model, state.optimizer, epoch)
    if phase != state.phase:
        if state.phase is not None or epoch > 0:
            report("notice", message=f"epoch {epoch + 1}: {phase} ({len(state.model.trainable_variables)} trainable weights)")
        state.train_steps, state.eval_steps = state.make_steps()
        state.phase = phase


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
        check_finite(val, "validation", run)
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


def check_finite(metrics, split, run):
    """A NaN or infinite metric on held-out data is one line, not a result: the training loss
    was finite (it is checked every call), so float32 arithmetic overflowed on these examples."""
    bad = [(name, value) for name, value in metrics.items() if not math.isfinite(value)]
    if bad:
        name, value = bad[0]
        raise DlcliError(
            f"the {split} {name} is {value}: float32 arithmetic overflowed on the {split} examples (values far from the "
            f"training data, or whose squares pass 3.4e38); scale or clean the data. Last good checkpoint: "
            f"{run.checkpoints.latest() or 'none yet'}."
        )


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
    check_finite(test, "test", run)  # before model.keras and metrics.json: a run never reports NaN metrics
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
                f"Continue with: dlcli train {name} -o {remote.location_of(run_dir)} --resume (or the same command, under TF_CONFIG, AIP_* or Slurm)",
                signum,
            )

        # A run that early stopping ended stays ended, even when resumed with more --epochs.
        first_epoch = config.epochs if state.early_stopping and state.early_stopping.stopped else int(state.epoch.numpy())
        for epoch in range(first_epoch, config.epochs):
            enter_phase(recipe, state, config, epoch, report)
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
