"""`dlcli train RECIPE`: train a recipe under a tf.distribute strategy and save the run."""

import dataclasses
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from dlcli import config as config_lib
from dlcli import complete, data, registry, rundir, strategy as strategy_lib, ui
from dlcli.errors import DlcliError


def train_command(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `dlcli list`).", autocompletion=complete.recipes)],
    epochs: Annotated[int | None, typer.Option(help="Epochs to train.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Global batch size, split across replicas.")] = None,
    learning_rate: Annotated[float | None, typer.Option(help="Peak learning rate.")] = None,
    dataset: Annotated[
        str | None, typer.Option(help="Dataset name (see `dlcli show RECIPE`).", autocompletion=complete.datasets)
    ] = None,
    data_path: Annotated[str | None, typer.Option("--data", help="Local data: a file or folder (wins over --dataset).")] = None,
    data_dir: Annotated[str | None, typer.Option(help="tensorflow-datasets data dir with prepared data.")] = None,
    strategy: Annotated[str, typer.Option(help="auto, default, one-device, mirrored, multi-worker or tpu.")] = "auto",
    tpu: Annotated[str | None, typer.Option(help="TPU name or 'local' (implies --strategy tpu under auto).")] = None,
    cpu_devices: Annotated[
        int | None, typer.Option(help="Split the CPU into N logical devices, to try mirrored training without GPUs.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed for initialisation and shuffling.")] = None,
    deterministic: Annotated[
        bool | None, typer.Option("--deterministic", help="TensorFlow op determinism: identical metrics run to run.")
    ] = None,
    precision: Annotated[str | None, typer.Option(help="float32, mixed_float16 (GPU) or mixed_bfloat16 (TPU, recent CPUs).")] = None,
    jit: Annotated[bool | None, typer.Option("--jit/--no-jit", help="XLA-compile each training step.")] = None,
    checkpoint_every: Annotated[int | None, typer.Option(help="Also checkpoint every N steps (epoch ends always).")] = None,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Run folder [default: runs/RECIPE-TIMESTAMP].")] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="TOML file of config overrides.")] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Config override key=value (repeatable).")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the run in --output from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace the run already in --output.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the final metrics as JSON on stdout.")] = False,
):
    """Train a recipe and save the run: config, model, checkpoints, history and metrics."""
    module = registry.load(recipe)
    out = ui.output(as_json)
    flags = {
        "epochs": epochs, "batch_size": batch_size, "learning_rate": learning_rate,
        "dataset": dataset, "data": data_path, "data_dir": data_dir, "seed": seed,
        "deterministic": deterministic, "precision": precision, "jit": jit, "checkpoint_every": checkpoint_every,
    }
    if cpu_devices is not None and cpu_devices < 1:
        raise DlcliError(f"--cpu-devices must be a positive integer. Received: {cpu_devices}")
    if strategy not in strategy_lib.STRATEGIES:
        raise DlcliError(f"unknown strategy '{strategy}'. Choose one of: {', '.join(strategy_lib.STRATEGIES)}.")
    if resume and output is None:
        raise DlcliError("--resume needs --output RUN_DIR: the run to continue.")
    if resume and overwrite:
        raise DlcliError("--resume and --overwrite contradict each other; pick one.")
    run_dir = rundir.resolve_run_dir(output, recipe)
    chief = strategy_lib.is_chief()  # only the chief touches the run folder
    if chief:
        rundir.check_output(run_dir, overwrite=overwrite, resume=resume)
    base = {}
    if resume:
        saved = rundir.read_json(run_dir / "config.json")
        if saved.get("recipe") != recipe:
            raise DlcliError(f"{run_dir} is a run of recipe '{saved.get('recipe')}', not '{recipe}'; resume it with that recipe.")
        base = saved.get("config", {})
    toml_values = config_lib.read_toml(config_file) if config_file else {}
    config = config_lib.resolve(
        module.Config, recipe,
        toml_values={**base, **toml_values}, sets=config_lib.parse_sets(sets or []), flags=flags,
        dataset_defaults=getattr(module, "DATASET_DEFAULTS", None),
    )
    data.check_dataset(config, module.DATASETS, recipe)

    # Everything above is checked without TensorFlow; now pay for the import.
    from dlcli import loop
    from dlcli.lazy import keras, tf

    strategy_lib.split_cpu(cpu_devices)
    dist, strategy_name = strategy_lib.make_strategy(strategy, tpu)
    facts = strategy_lib.describe(dist, strategy_name)
    if config.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.mixed_precision.set_global_policy(config.precision)
    splits = module.load_data(config)

    out.print(
        f"[bold]{recipe}[/bold] on {splits.source}: {len(splits.train[0])} train / {len(splits.val[0])} val / "
        f"{len(splits.test[0])} test examples"
    )
    out.print(f"strategy {strategy_name} ({facts['class']}), {facts['replicas']} replica(s)")
    run_info = {
        "recipe": recipe,
        "config": dataclasses.asdict(config),
        "data_source": splits.source,
        # What `dlcli predict` needs to read raw inputs and name the outputs.
        "data": {
            "input_shape": list(splits.input_shape),
            "class_names": splits.class_names,
            "feature_names": splits.info.get("feature_names"),
        },
        "strategy": facts,
        "versions": rundir.versions(),
        "command": ["dlcli", *sys.argv[1:]],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    out.print(f"run folder {run_dir}")

    with Reporter(out) as report:
        final, _ = loop.fit(
            module, config, splits, dist, run_dir,
            chief=chief, resume=resume, overwrite=overwrite, run_info=run_info, report=report,
        )

    out.print(f"[bold]test[/bold] {ui.metrics_line(final['test'])}  ({final['test_examples']} examples)")
    for key, value in final.get("report", {}).items():
        out.print(f"  {key}: {ui.fmt(value) if not isinstance(value, dict) else ui.metrics_line(value)}")
    out.print(
        f"trained in {final['train_seconds']:.1f} s ({final['examples_per_sec']} examples/s); "
        f"wall time {final['wall_seconds']:.1f} s"
    )
    if chief:
        out.print(f"run folder {run_dir}:")
        for name in [*rundir.RUN_FILES, *final.get("pictures", []), *final.get("report", {}).get("pictures", [])]:
            if (run_dir / name).exists():
                out.print(f"  {run_dir / name}")
        out.print(f"  TensorBoard: tensorboard --logdir {rundir.logs_dir(run_dir)}")
    if as_json:
        ui.print_json({"run_dir": str(run_dir), **final})


class Reporter:
    """Shows training as it goes: a progress bar on a terminal, and one line per epoch always."""

    def __init__(self, console):
        self.console = console
        self.progress = None
        self.task = None

    def __enter__(self):
        if self.console.is_terminal:
            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                TextColumn("{task.fields[logs]}"), TimeRemainingColumn(),
                console=self.console, transient=True,
            )
            self.progress.start()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self.progress.stop()

    def __call__(self, event, **facts):
        if event == "start":
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
