"""The evaluator task: TensorFlow's evaluator pattern (a side task of a cluster that follows the
training and evaluates its checkpoints, as Keras' SidecarEvaluator does), for a TF_CONFIG or
CLUSTER_SPEC with an `evaluator` task, as TFJob and Vertex AI write when asked for one.

It takes no part in training: it builds the recipe's model alone, watches the run folder's
checkpoints, and evaluates each new one on the validation and test splits with the same eval
steps as training (`steps.evaluate`), writing a row to RUN_DIR/evaluations.csv and the scalars
to TensorBoard under LOGDIR/eval (by global step). It ends when the run ends: when the chief
writes metrics.json for this run. A restarted evaluator continues after the last checkpoint
that evaluations.csv holds.
"""

import os
import time
from pathlib import Path

from dlcli.core.lazy import keras, tf
from dlcli.data import count
from dlcli.runs import remote, rundir
from dlcli.training.batches import preprocessed
from dlcli.training.steps import evaluate, loss_and_metrics, step_functions

EVALUATIONS = "evaluations.csv"
POLL_SECONDS = 1.0


def evaluations(run_dir):
    """The rows of RUN_DIR/evaluations.csv (numbers as numbers), [] when there is none."""
    return rundir.read_history(Path(run_dir) / EVALUATIONS)


def listed_checkpoints(folder):
    """[(number, path prefix)] of the complete checkpoints the state file lists, oldest first."""
    state = tf.train.get_checkpoint_state(str(folder))
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    found = []
    for path in paths:
        path = path if os.path.isabs(path) else str(Path(folder) / path)
        if Path(path + ".index").is_file():
            found.append((rundir.checkpoint_number(Path(path).name), path))
    return sorted(found)


def _mtime(path):
    try:
        return Path(path).stat().st_mtime_ns
    except OSError:
        return None


def follow(recipe, config, splits, run_dir, steps_per_epoch, global_batch, report, *, since=None, poll=POLL_SECONDS):
    """Evaluates every new checkpoint of the run in `run_dir` until the run ends; returns the
    evaluation rows written. `since` (ns): ignore a run record older than this (an --overwrite
    run whose chief has not yet replaced the previous run)."""
    run_dir = Path(run_dir)
    folder = rundir.checkpoints_dir(run_dir)
    inputs = preprocessed(splits)
    keras.utils.set_random_seed(config.seed)
    strategy = tf.distribute.get_strategy()
    model = recipe.build_model(config, splits)
    loss_fn, metrics = loss_and_metrics(recipe, config)
    _, eval_steps = step_functions(strategy, model, loss_fn, metrics, global_batch, micro_batches=1)
    checkpoint = tf.train.Checkpoint(model=model)
    writer = None
    rows = evaluations(run_dir)
    last = max((int(row["step"]) for row in rows), default=-1)
    if rows:
        report("notice", message=f"evaluator: {len(rows)} evaluation(s) in {run_dir / EVALUATIONS}; continuing after step {last}")
    written = []
    if remote.mirror_of(run_dir) is not None:
        poll = max(poll, 10.0)  # a gs:// run: each look lists the bucket
    while True:
        remote.pull(run_dir)  # a gs:// run: what the chief has uploaded so far
        record = _mtime(run_dir / "config.json")
        started = record is not None and (since is None or record >= since)
        # Read before the checkpoints: metrics.json comes after the last checkpoint it follows.
        ended = started and (_mtime(run_dir / "metrics.json") or 0) >= record
        for number, path in listed_checkpoints(folder) if started else []:
            if number <= last:
                continue
            try:
                checkpoint.restore(path).expect_partial()
            except (tf.errors.NotFoundError, tf.errors.DataLossError, ValueError):
                report("notice", message=f"evaluator: checkpoint {Path(path).name} went away before it was read; skipped")
                continue
            row = {"step": number, "epoch": round(number / steps_per_epoch, 4), "checkpoint": Path(path).name}
            if count(inputs.val):
                row.update({f"val_{k}": v for k, v in evaluate(strategy, eval_steps, metrics, inputs.val, global_batch).items()})
            row.update({f"test_{k}": v for k, v in evaluate(strategy, eval_steps, metrics, inputs.test, global_batch).items()})
            row["evaluated"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            rows.append(row)
            written.append(row)
            last = number
            rundir.write_history(run_dir / EVALUATIONS, rows)  # the whole table, replaced atomically
            if writer is None:
                writer = tf.summary.create_file_writer(str(rundir.logs_dir(run_dir) / "eval"))
            with writer.as_default(step=number):
                for key, value in row.items():
                    if key not in ("step", "epoch", "checkpoint", "evaluated"):
                        tf.summary.scalar(key, value)
            writer.flush()
            remote.push(run_dir)
            report("evaluation", row=row)
        if ended:
            break
        time.sleep(poll)
    if writer is not None:
        writer.close()
    return written

