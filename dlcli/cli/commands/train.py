"""`dlcli train RECIPE`: train a recipe under a tf.distribute strategy and save the run."""

import dataclasses
import functools
import os
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dlcli import data
from dlcli.cli import options
from dlcli.core import cluster, ui
from dlcli.core.errors import DlcliError
from dlcli.models import config as config_lib
from dlcli.models import exports
from dlcli.runs import remote, rundir
from dlcli.runs.record import DataSpec, RunRecord, auto_resume
from dlcli.training import registry
from dlcli.training import strategy as strategy_lib
from dlcli.tuning import hypertune


def train_command(
    ctx: typer.Context,
    recipe: options.Recipe,
    epochs: Annotated[int | None, typer.Option(help=f"Epochs to train \\[default: {options.RECIPE_DEFAULT}].", show_default=False)] = None,
    batch_size: options.BatchSize = None,
    learning_rate: Annotated[
        float | None, typer.Option(help=f"Peak learning rate \\[default: {options.RECIPE_DEFAULT}].", show_default=False)
    ] = None,
    dataset: options.Dataset = None,
    data_path: options.Data = None,
    data_dir: options.DataDir = None,
    strategy: Annotated[options.StrategyName, typer.Option(help="tf.distribute strategy; auto picks from the machine and TF_CONFIG.")] = options.StrategyName.auto,
    tpu: Annotated[str | None, typer.Option(help="TPU name or 'local' (implies --strategy tpu under auto).", show_default=False)] = None,
    cpu_devices: Annotated[
        int | None, typer.Option(help="Split the CPU into N logical devices, to try mirrored training without GPUs.", show_default=False)
    ] = None,
    seed: Annotated[int | None, typer.Option(help=f"Random seed for initialisation and shuffling \\[default: {options.RECIPE_DEFAULT}].", show_default=False)] = None,
    deterministic: Annotated[
        bool | None, typer.Option("--deterministic", help="TensorFlow op determinism: identical metrics run to run.", show_default=False)
    ] = None,
    precision: Annotated[
        options.Precision | None,
        typer.Option(help="Compute precision: mixed_float16 for GPUs, mixed_bfloat16 for TPUs and recent CPUs \\[default: auto, mixed_bfloat16 where the recipe gains from it on a CPU with AVX512_BF16/AMX, else float32].", show_default=False),
    ] = None,
    jit: Annotated[bool | None, typer.Option("--jit/--no-jit", help="XLA-compile each training step \\[default: no-jit].", show_default=False)] = None,
    checkpoint_every: Annotated[
        int | None, typer.Option(help="Also checkpoint every N steps; epoch ends always are \\[default: 0, epoch ends only].", show_default=False)
    ] = None,
    early_stopping: Annotated[
        int | None,
        typer.Option(
            "--early-stopping", metavar="PATIENCE",
            help="Stop when the monitored metric (config monitor: the recipe's, else val_loss) has not improved for PATIENCE epochs; "
            "model.keras is then the best epoch's model, model-last.keras the last \\[default: 0, off].",
            show_default=False,
        ),
    ] = None,
    output: options.TrainOutput = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="TOML file of config overrides.", show_default=False)] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Config override key=value (repeatable).", show_default=False)] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --output from its last checkpoint (it must have one).")] = False,
    resume_auto: Annotated[
        bool,
        typer.Option(
            "--resume-auto",
            help="Continue the run in the run folder if it holds a checkpoint of the same recipe and config, else start it; "
            "the default under TF_CONFIG, CLUSTER_SPEC, AIP_* or Slurm (platforms that restart jobs) when neither --resume nor --overwrite is given.",
        ),
    ] = False,
    overwrite: options.Overwrite = False,
    as_json: options.Json = False,
):
    """Train a recipe and save the run: config, model, checkpoints, history and metrics."""
    started_ns = time.time_ns()
    module = registry.load(recipe)
    out = ui.LoggedConsole(ui.output(as_json))  # and, once the run folder is started, RUN_DIR/train.log
    flags = {
        "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
        "dataset": dataset, "data": data_path, "data_dir": data_dir, "seed": seed,
        "deterministic": deterministic, "precision": precision.value if precision else None, "jit": jit,
        "checkpoint_every": checkpoint_every, "early_stopping": early_stopping,
    }
    if cpu_devices is not None and cpu_devices < 1:
        raise DlcliError(f"--cpu-devices must be a positive integer. Received: {cpu_devices}")
    if resume and output is None:
        raise DlcliError("--resume needs --output RUN_DIR: the run to continue.")
    if resume and overwrite:
        raise DlcliError("--resume and --overwrite contradict each other; pick one.")
    if resume_auto and (resume or overwrite):
        raise DlcliError(f"--resume-auto and {'--resume' if resume else '--overwrite'} contradict each other; pick one.")
    if not (resume or overwrite or resume_auto) and restarting_platform():
        resume_auto = True  # the platform reruns this same command after a restart: continue then
    run_dir = rundir.resolve_run_dir(output, recipe)
    checkpoints = rundir.checkpoints_dir(run_dir)
    chief = cluster.is_chief()  # only the chief touches the run folder
    if chief and not resume_auto:
        rundir.check_output(run_dir, overwrite=overwrite, resume=resume)
    base = {}
    if resume:
        saved = RunRecord.read(run_dir / "config.json")
        if saved.recipe != recipe:
            raise DlcliError(f"{run_dir} is a run of recipe '{saved.recipe}', not '{recipe}'; resume it with that recipe.")
        base = saved.config
    sets = [*(sets or []), *hypertune.extra_sets(ctx.args, module.Config, recipe)]  # Vertex AI tuning's --KEY=VALUE: as --set
    toml_values = config_lib.read_toml(config_file) if config_file else {}
    config = config_lib.resolve(
        module.Config, recipe,
        toml_values={**base, **toml_values}, sets=config_lib.parse_sets(sets or []), flags=flags,
        # A resumed run keeps its saved config; a field added since takes the field's own default
        # (what the code did when the run was saved), not a dataset's newer one.
        dataset_defaults=None if resume else getattr(module, "DATASET_DEFAULTS", None),
    )
    start = None
    if resume_auto:
        # Every worker decides from the same files, before any of them writes; the loop then
        # makes the workers follow the chief's checkpoint (see checkpoints.agree_on_checkpoint).
        start = auto_resume(run_dir, recipe, dataclasses.asdict(config), checkpoints)
        resume, overwrite = start.resume, start.clear
    if chief:  # a folder training could not write is refused now, not after the data loaded
        rundir.check_writable(run_dir)
        for location, what in ((checkpoints, "checkpoint folder"), (rundir.logs_dir(run_dir), "TensorBoard folder")):
            if not location.is_relative_to(run_dir):
                rundir.check_writable(location, what)
        # Held until the command ends: a second `dlcli train` into the same folder is refused.
        ctx.call_on_close(rundir.RunLock(run_dir).release)
        ctx.call_on_close(remote.push_on_close(run_dir))  # a gs:// run: the last upload, also after a failure
    data.check_dataset(config, module.DATASETS, recipe)
    if hasattr(config, "check_files"):  # files the config names besides the data (cnn's backbone weights)
        config.check_files()
    if start is not None:
        out.print(start.message)

    # Everything above is checked without TensorFlow; now pay for the import.
    from dlcli.core.lazy import keras, tf
    from dlcli.training import artifacts, loop

    if cluster.task_type() == "evaluator":
        follow_run(ctx, module, config, run_dir, out, since=started_ns if overwrite else None)
        return
    micro_batches = strategy_lib.micro_batches(config, module, strategy.value, cpu_devices, tpu)  # sets threads: first
    strategy_lib.split_cpu(cpu_devices)
    dist, strategy_name = strategy_lib.make_strategy(strategy.value, tpu)
    facts = strategy_lib.describe(dist, strategy_name)
    facts["micro_batches"] = micro_batches
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    facts["precision"], precision_line = strategy_lib.resolve_precision(config, module, dist)
    # The policy is process-wide: put back what was there when the command ends (tune's trials, tests).
    ctx.call_on_close(functools.partial(keras.mixed_precision.set_global_policy, keras.mixed_precision.global_policy()))
    keras.mixed_precision.set_global_policy(facts["precision"])
    splits = module.load_data(config)

    out.print(
        f"[bold]{recipe}[/bold] on {splits.source}: {data.count(splits.train)} train / {data.count(splits.val)} val / "
        f"{data.count(splits.test)} test examples"
    )
    out.print(f"strategy {strategy_name} ({facts['class']}), {facts['replicas']} replica(s)")
    if precision_line:
        out.print(precision_line)
    if micro_batches > 1 and not config.micro_batches:
        out.print(f"{micro_batches} micro-batches of {config.batch_size // micro_batches} side by side, one thread per op (one per core)")
    record = RunRecord(
        recipe=recipe, config=dataclasses.asdict(config), data=DataSpec.of(splits), strategy=facts,
        versions=rundir.versions(), command=["dlcli", *sys.argv[1:]], job_id=os.environ.get("CLOUD_ML_JOB_ID") or None,
    )
    shown = remote.location_of(run_dir)  # a gs:// run: its URL, not the local mirror dlcli works in
    out.print(f"run folder {shown}")

    config = dataclasses.replace(config, micro_batches=micro_batches)  # config.json keeps 0 (auto): decided anew on resume
    with Reporter(out, header=" ".join(record.command)) as report:
        result = loop.fit(
            module, config, splits, dist, run_dir,
            chief=chief, resume=resume, overwrite=overwrite, record=record, report=report,
        )
    final = artifacts.write(module, config, splits, run_dir, result.metrics) if chief else result.metrics
    if chief and exports.vertex_model_dir(run_dir):  # what Vertex AI's model registry serves
        path, difference = exports.export_savedmodel(run_dir, data.arrays(splits.test, 8)[0])
        checked = f" (checked on 8 test inputs: largest difference {difference:.1e})" if difference is not None else ""
        out.print(f"SavedModel for Vertex AI: {path}{checked}")

    out.print(f"[bold]test[/bold] {ui.metrics_line(final['test'])}  ({final['test_examples']} examples)")
    if final.get("early_stopping"):
        out.print(model_line(final, len(result.history)))
    for key, value in final.get("report", {}).items():
        if key != "pictures":
            out.print(f"  {key}: {ui.fmt(value) if not isinstance(value, dict) else ui.metrics_line(value)}")
    out.print(
        f"trained in {final['train_seconds']:.1f} s ({final['examples_per_sec']} examples/s); "
        f"wall time {final['wall_seconds']:.1f} s"
    )
    if chief:
        out.print(f"run folder {shown}:")
        remote_run = shown != run_dir
        for name in [*rundir.RUN_FILES, *final.get("pictures", [])]:
            if (run_dir / name).exists():
                out.print(f"  {shown}/{name}" if remote_run else f"  {run_dir / name}")
        logs = rundir.logs_dir(run_dir)
        logs = f"{shown}/logs" if remote_run and logs == run_dir / "logs" else logs  # TensorBoard reads gs:// too
        out.print(f"  TensorBoard: tensorboard --logdir {logs}")
    if chief and hypertune.vertex_tuning():
        hypertune.report_to_vertex(run_dir, config_lib.monitor_of(module, config), out)
    if as_json:
        ui.print_json({"run_dir": str(shown), **final})


def model_line(final, trained_epochs):
    """Which epoch model.keras came from, when early stopping chose it."""
    best = final.get("best")
    if not best:
        return f"model.keras: epoch {trained_epochs}, the last (the monitor had no finite value to pick a best epoch by)"
    stopped = final.get("stopped_epoch")
    how = f"early stopping after epoch {stopped}" if stopped else f"ran all {trained_epochs} epochs"
    return (
        f"model.keras: epoch {final['best_epoch']} of {trained_epochs}, the best {best['monitor']} {ui.fmt(best['value'])} "
        f"({how}; the test metrics are this model's; the last epoch's is model-last.keras)"
    )


def restarting_platform():
    """Whether this runs where the platform restarts a failed or preempted job with the same
    command and environment: a Vertex AI custom job (AIP_* variables), a cluster (TF_CONFIG,
    Vertex AI's CLUSTER_SPEC) or a Slurm job (a requeued job runs its script again)."""
    return (
        any(os.environ.get(name) for name in ("TF_CONFIG", "CLUSTER_SPEC", "SLURM_JOB_ID"))
        or any(name.startswith("AIP_") for name in os.environ)
    )


def follow_run(ctx, module, config, run_dir, out, since=None):
    """The evaluator task of a cluster: evaluates each checkpoint the run writes until it ends
    (see dlcli/training/evaluator.py); trains nothing."""
    from dlcli.core.lazy import keras, tf
    from dlcli.training import evaluator, loop

    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    single = tf.distribute.get_strategy()
    precision, _ = strategy_lib.resolve_precision(config, module, single)  # as the workers compute
    ctx.call_on_close(functools.partial(keras.mixed_precision.set_global_policy, keras.mixed_precision.global_policy()))
    keras.mixed_precision.set_global_policy(precision)
    splits = module.load_data(config)
    the_plan = loop.plan(config, splits, single)
    out.print(
        f"evaluator: following {remote.location_of(run_dir)}; each new checkpoint is evaluated on "
        f"{data.count(splits.val)} val / {data.count(splits.test)} test examples"
    )

    def report(event, **facts):
        if event == "notice":
            out.print(facts["message"])
        elif event == "evaluation":
            row = facts["row"]
            shown = {k: v for k, v in row.items() if k not in ("step", "epoch", "checkpoint", "evaluated")}
            out.print(f"evaluated {row['checkpoint']} (epoch {row['epoch']:g}): {ui.metrics_line(shown)}")

    rows = evaluator.follow(module, config, splits, run_dir, the_plan.steps_per_epoch, the_plan.global_batch, report, since=since)
    out.print(f"evaluator: the run ended; {len(rows)} new evaluation(s) in {remote.location_of(run_dir)}/{evaluator.EVALUATIONS}")


class Reporter:
    """Shows training as it goes: a progress bar on a terminal, and one line per epoch always."""

    def __init__(self, console, header=""):
        # Lines printed here go to RUN_DIR/train.log too, once the loop has started the run folder.
        self.console = console if isinstance(console, ui.LoggedConsole) else ui.LoggedConsole(console)
        self.header = header
        self.progress = None
        self.task = None

    def __enter__(self):
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[logs]}"), TimeRemainingColumn(),
                console=self.console.console, transient=True,
            )
            self.progress.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.progress is not None:
            self.progress.stop()
        if isinstance(exc, DlcliError):  # the terminal shows it as `error: ...` (cli.main); so does the log
            self.console.log(f"error: {exc}")

    def __call__(self, event, **facts):
        if event == "run_dir_ready":
            self.console.start_log(Path(facts["run_dir"]) / "train.log", self.header)
        elif event == "start":
            self.console.print(
                f"global batch {facts['global_batch']}, {facts['global_batch'] // facts['replicas']} per replica; "
                f"{facts['steps_per_epoch']} steps per epoch"
            )
        elif event == "notice":
            self.console.print(f"notice: {facts['message']}")
        elif event == "resume":
            if facts["step"]:
                where = f"in epoch {facts['epoch'] + 1} at step {facts['step']}/{facts['steps']}"
            else:
                where = f"after epoch {facts['epoch']}"
            self.console.print(f"resuming {where}")
        elif event == "epoch_start" and self.progress is not None:
            if self.task is not None:
                self.progress.remove_task(self.task)
            self.task = self.progress.add_task(
                f"epoch {facts['epoch']}/{facts['epochs']}", total=facts["steps"], completed=facts["done"], logs=""
            )
        elif event == "steps" and self.progress is not None:
            self.progress.update(self.task, completed=facts["done"], logs=ui.metrics_line(facts["logs"]))
        elif event == "epoch_end":
            row = dict(facts["row"])
            epoch = row.pop("epoch")
            speed = row.pop("examples_per_sec")
            seconds = row.pop("seconds")
            self.console.print(f"epoch {epoch:>3}  {ui.metrics_line(row)}  {speed:.0f} ex/s  {seconds:.1f} s")
        elif event == "early_stop":
            self.console.print(
                f"early stopping after epoch {facts['stopped_epoch']}: {facts['monitor']} has not improved on "
                f"{ui.fmt(facts['best'])} (epoch {facts['best_epoch']}) for {facts['patience']} epoch(s)"
            )
