"""`dlcli tune RECIPE`: a resumable hyperparameter search, each trial a normal run folder.

Optuna keeps the study in OUT/study.log (a JournalStorage file: no database server), and its
ask/tell interface lets dlcli train each trial itself (dlcli/tuning/study.py); this module
wires the options to it and prints the table of trials.
"""

import dataclasses
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlcli import data
from dlcli.cli import options
from dlcli.core import ui
from dlcli.core.errors import DlcliError
from dlcli.models import config as config_lib
from dlcli.runs import remote, rundir
from dlcli.training import registry
from dlcli.tuning import hypertune
from dlcli.tuning.study import (
    BEST_FILE,
    IGNORED_CHANGES,
    STUDY_FILE,
    TrialFailed,
    TrialSignals,
    best_trial,
    open_study,
    reseed,
    run_trial,
    tell,
    trial_dir,
    trial_rows,
)


class Direction(str, Enum):
    min = "min"
    max = "max"


def tune_command(
    ctx: typer.Context,
    recipe: options.Recipe,
    space: Annotated[
        list[str] | None,
        typer.Option(
            "--space",
            help="A searched config key (repeatable): KEY=log:LOW..HIGH, KEY=LOW..HIGH, KEY=int:LOW..HIGH or KEY=a,b,c.",
            show_default=False,
        ),
    ] = None,
    trials: Annotated[int, typer.Option(help="Trials in the whole search (a re-run counts those already done).")] = 10,
    monitor: Annotated[
        str | None, typer.Option(help="Validation metric to optimise, a history.csv column \\[default: the recipe's, else val_loss].", show_default=False)
    ] = None,
    direction: Annotated[
        Direction | None, typer.Option(help="min or max \\[default: max for accuracy, auc, precision, recall; else min].", show_default=False)
    ] = None,
    epochs: Annotated[int | None, typer.Option(help=f"Epochs per trial \\[default: {options.RECIPE_DEFAULT}].", show_default=False)] = None,
    dataset: options.Dataset = None,
    data_path: options.Data = None,
    data_dir: options.DataDir = None,
    seed: Annotated[int | None, typer.Option(help="Seed of every trial, and of the sampler.", show_default=False)] = None,
    deterministic: Annotated[bool | None, typer.Option("--deterministic", help="TensorFlow op determinism in every trial.", show_default=False)] = None,
    early_stopping: Annotated[
        int | None, typer.Option(help="Stop a trial after N epochs without improvement (forwarded to each trial).", show_default=False)
    ] = None,
    strategy: Annotated[options.StrategyName, typer.Option(help="tf.distribute strategy of every trial.")] = options.StrategyName.auto,
    tpu: Annotated[str | None, typer.Option(help="TPU name or 'local', for every trial.", show_default=False)] = None,
    cpu_devices: Annotated[int | None, typer.Option(help="Split the CPU into N logical devices in every trial.", show_default=False)] = None,
    config_file: Annotated[Path | None, typer.Option("--config", help="TOML file of config overrides shared by every trial.", show_default=False)] = None,
    sets: Annotated[list[str] | None, typer.Option("--set", help="Config override key=value shared by every trial (repeatable).", show_default=False)] = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Search folder: study.log, trial-NNN/, best.toml \\[default: runs/tune-RECIPE].", show_default=False)
    ] = None,
    as_json: options.Json = False,
):
    """Search config values for the best validation metric; re-run the same command to continue a stopped search."""
    module = registry.load(recipe)
    out = ui.output(as_json)
    if trials < 1:
        raise DlcliError(f"--trials must be a positive integer. Received: {trials}")
    if cpu_devices is not None and cpu_devices < 1:
        raise DlcliError(f"--cpu-devices must be a positive integer. Received: {cpu_devices}")
    flags = {
        "epochs": epochs, "dataset": dataset, "data": data_path, "data_dir": data_dir, "seed": seed,
        "deterministic": deterministic, "early_stopping": early_stopping,
    }
    overrides = {
        **(config_lib.read_toml(config_file) if config_file else {}),
        **config_lib.parse_sets(sets or []),
        **{k: v for k, v in flags.items() if v is not None},
    }
    known = config_lib.field_types(module.Config)
    if monitor and overrides.get("monitor") not in (None, "", monitor):
        raise DlcliError(f"--monitor {monitor} and monitor={overrides['monitor']} disagree; give one of them.")
    # Trials early-stop on (and keep the best model of) the metric the search optimises.
    if monitor and "monitor" in known:
        overrides.setdefault("monitor", monitor)
    if direction and "mode" in known:
        overrides.setdefault("mode", direction.value)
    searched = hypertune.parse_space(space, module.Config, recipe, fixed=overrides)
    dataset_defaults = getattr(module, "DATASET_DEFAULTS", None)
    base = config_lib.resolve(module.Config, recipe, toml_values=overrides, dataset_defaults=dataset_defaults)
    if remote.is_remote(output):  # trials are local run folders; only `train` mirrors one to gs://
        raise DlcliError(f"--output {remote.url(output)}: dlcli tune writes a local folder; pass a local path or /gcs/... (Cloud Storage FUSE).")
    data.check_dataset(base, module.DATASETS, recipe)
    fixed = {k: getattr(base, k) for k in overrides}  # typed as the config has them
    monitor = monitor or config_lib.monitor_of(module, base)
    mode = (direction.value if direction else None) or _config_mode(base) or config_lib.auto_mode(monitor)
    out_dir = rundir.resolve_run_dir(output, recipe) if output is not None else rundir.runs_root() / f"tune-{recipe}"
    if out_dir.exists() and not out_dir.is_dir():
        raise DlcliError(f"--output {out_dir} exists and is not a folder.")
    rundir.check_writable(out_dir, "search folder")
    # One search process per folder: a second one would ask for trials the first is running.
    lock = rundir.RunLock(out_dir)
    ctx.call_on_close(lock.release)

    search = {
        "recipe": recipe, "space": hypertune.space_record(searched), "monitor": monitor, "direction": mode,
        "config": {k: v for k, v in dataclasses.asdict(base).items() if k not in searched and k not in IGNORED_CHANGES},
    }
    study = open_study(out_dir, search, mode)
    trial_args = [*_strategy_args(strategy, tpu, cpu_devices)]

    with TrialSignals() as stop:

        def run(number, params):
            try:
                value = run_trial(out, stop, module, recipe, number, params, fixed, trial_args, out_dir, monitor, dataset_defaults, study)
            except TrialFailed:
                tell(study, number, None)
                raise
            tell(study, number, value)

        left = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
        for trial in left:  # in flight when the last search stopped: continue it in its folder
            out.print(f"trial {trial.number} was in flight when the search stopped: continuing it")
            stop.check()
            run(trial.number, trial.params)
        while len(study.get_trials(deepcopy=False)) < trials:
            stop.check()
            reseed(study, base.seed)
            trial = study.ask({k: p.distribution() for k, p in searched.items()})
            run(trial.number, trial.params)

    rows = trial_rows(study, out_dir)
    best = best_trial(study)
    summary = {"output": str(out_dir), "study": str(out_dir / STUDY_FILE), "recipe": recipe, "monitor": monitor, "direction": mode, "trials": rows}
    if best is not None:
        best_file = out_dir / BEST_FILE
        values = {**fixed, **best.params}
        hypertune.write_best_toml(
            best_file, values,
            f"dlcli tune {recipe}: best of {len(rows)} trials, trial {best.number} ({monitor} {best.value:.6g}).\n"
            f"Train it: dlcli train {recipe} --config {best_file}",
        )
        # What train will do with the file, checked now: a file it refused would be no result.
        config_lib.resolve(module.Config, recipe, toml_values=config_lib.read_toml(best_file), dataset_defaults=dataset_defaults)
        summary["best"] = {
            "trial": best.number, "value": best.value, "params": best.params,
            "run_dir": str(trial_dir(out_dir, best.number)), "config_file": str(best_file),
        }
    print_table(out, rows, searched, monitor, mode, best)
    if best is not None:
        out.print(f"best: trial {best.number}, {monitor} {ui.fmt(best.value)}: {ui.metrics_line(best.params)}")
        out.print(f"best config: {summary['best']['config_file']}  (dlcli train {recipe} --config {summary['best']['config_file']})")
    else:
        out.print("no trial completed: no best config yet.")
    if as_json:
        ui.print_json(summary)


def _config_mode(config):
    """The config's early-stopping `mode` (min/max) when it has one set."""
    mode = getattr(config, "mode", None)
    return mode if mode in ("min", "max") else None


def _strategy_args(strategy, tpu, cpu_devices):
    args = ["--strategy", strategy.value]
    if tpu is not None:
        args += ["--tpu", tpu]
    if cpu_devices is not None:
        args += ["--cpu-devices", str(cpu_devices)]
    return args


def print_table(out, rows, searched, monitor, mode, best):
    table = Table("trial", *searched, f"{monitor} ({mode})", "state", "epochs", "seconds", box=None, title_justify="left",
                  title=f"{len(rows)} trials")
    for row in rows:
        style = "bold" if best is not None and row["number"] == best.number else None
        table.add_row(
            str(row["number"]), *(ui.fmt(row["params"].get(k, "")) for k in searched),
            ui.fmt(row["value"]) if row["value"] is not None else "-", row["state"], str(row["epochs"]),
            f"{row['seconds']:.1f}" if isinstance(row["seconds"], (int, float)) else "-", style=style,
        )
    out.print(table)
