"""`dlcli tune RECIPE`: a resumable hyperparameter search, each trial a normal run folder.

Optuna keeps the study in OUT/study.log (a JournalStorage file: no database server), and its
ask/tell interface lets dlcli train each trial itself: a `dlcli train ... --resume-auto`
subprocess into OUT/trial-NNN, so every strategy works, a crashing trial cannot take the
search down, and a stopped trial continues from its checkpoint. Stopping the search and running
the same command again re-runs the trial that was in flight (same number, parameters and
folder) and then asks for new ones until --trials are done.
"""

import dataclasses
import math
import signal
import subprocess
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlcli import config as config_lib
from dlcli import data, hypertune, options, registry, remote, rundir, ui
from dlcli.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_PREEMPTED, DlcliError

STUDY_NAME = "dlcli-tune"
STUDY_FILE = "study.log"
BEST_FILE = "best.toml"
# Config keys a re-run may change without making it another search (where data is kept, how
# often trials checkpoint, XLA): they do not change what a trial measures.
IGNORED_CHANGES = tuple(k for k in rundir.RESUMABLE_CHANGES if k != "epochs")
LOCK_WAIT_SECONDS = 120  # a trial process orphaned by a killed search needs this to save its checkpoint


class Direction(str, Enum):
    min = "min"
    max = "max"


class TrialFailed(DlcliError):
    """A trial failed in a way every trial would (the command, the monitor): the search stops."""


class TuneStopped(DlcliError):
    """The search was stopped by a signal; the trial in flight saved its checkpoint."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = EXIT_PREEMPTED if signum == signal.SIGTERM else EXIT_INTERRUPTED


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
                _tell(study, number, None)
                raise
            _tell(study, number, value)

        left = [t for t in study.get_trials(deepcopy=False) if t.state.name == "RUNNING"]
        for trial in left:  # in flight when the last search stopped: continue it in its folder
            out.print(f"trial {trial.number} was in flight when the search stopped: continuing it")
            stop.check()
            run(trial.number, trial.params)
        while len(study.get_trials(deepcopy=False)) < trials:
            stop.check()
            _reseed(study, base.seed)
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


def trial_dir(out_dir, number):
    return Path(out_dir) / f"trial-{number:03d}"


# ## The study: Optuna's journal file in the search folder


def open_study(out_dir, search, mode):
    """Creates or loads the study in OUT/study.log; refuses one of another search in one line."""
    try:
        import optuna
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend
    except ImportError:
        raise DlcliError("dlcli tune needs Optuna: pip install -e '.[tune]' in the dlcli checkout") from None

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    path = Path(out_dir) / STUDY_FILE
    if not path.exists() and any(Path(out_dir).glob("trial-*")):
        raise DlcliError(
            f"{out_dir} holds trial folders but no {STUDY_FILE}: it is not a search this command can continue; choose another --output."
        )
    try:
        storage = JournalStorage(JournalFileBackend(str(path)))
        study = optuna.create_study(
            storage=storage, study_name=STUDY_NAME, load_if_exists=True,
            direction="minimize" if mode == "min" else "maximize",
        )
    except Exception as e:  # a damaged journal: Optuna raises its own errors, or JSON ones
        raise DlcliError(f"cannot read the study in {path}: {type(e).__name__}: {e}; choose another --output.") from None
    saved = study.user_attrs.get("search")
    if saved is None:
        study.set_user_attr("search", search)
    elif saved != search:
        raise DlcliError(f"{out_dir} holds another search ({_difference(saved, search)}); re-run it as it was, or choose another --output.")
    return study


def _difference(saved, new):
    for key in ("recipe", "monitor", "direction", "space"):
        if saved.get(key) != new.get(key):
            return f"{key} {_short(saved.get(key))} there, {_short(new.get(key))} here"
    old, now = saved.get("config", {}), new.get("config", {})
    changed = [k for k in sorted(set(old) | set(now)) if old.get(k) != now.get(k)]
    return ", ".join(f"{k}={old.get(k)!r} there, {now.get(k)!r} here" for k in changed[:3]) or "another config"


def _short(value):
    if isinstance(value, dict):  # a space: the keys and what they search
        return "{" + ", ".join(f"{k}={hypertune.Param(**{**v, 'choices': tuple(v['choices'])}).describe()}" for k, v in value.items()) + "}"
    return repr(value)


def _reseed(study, seed):
    """A TPE sampler seeded by the trials so far: a re-run draws new values, not the first ones again."""
    import optuna

    done = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=(seed or 0) * 7919 + done, n_startup_trials=5)


def _tell(study, number, value):
    """Records a trial's result: a finite value completes it, NaN fails it."""
    import optuna

    if value is None or not math.isfinite(value):
        study.tell(number, state=optuna.trial.TrialState.FAIL)
    else:
        study.tell(number, value)


def best_trial(study):
    import optuna

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.COMPLETE]
    return study.best_trial if complete else None


# ## One trial: `dlcli train` in its own folder


def run_trial(out, stop, module, recipe, number, params, fixed, strategy_args, out_dir, monitor, dataset_defaults, study):
    """Trains trial `number` with `params`; returns its objective (NaN when it failed).
    Raises TuneStopped when a signal stopped it (its checkpoint saved; a re-run continues it)."""
    folder = trial_dir(out_dir, number)
    values = {**fixed, **params}
    try:  # a combination the config refuses fails this trial, not the search
        config_lib.resolve(module.Config, recipe, toml_values=values, dataset_defaults=dataset_defaults)
    except DlcliError as e:
        out.print(f"trial {number} failed before training: {e}")
        return float("nan")
    wait_for_lock(folder)
    command = [
        sys.executable, "-m", "dlcli", "train", recipe, *strategy_args,
        *[arg for key, value in values.items() for arg in ("--set", f"{key}={_text(value)}")],
        "-o", str(folder), "--resume-auto", "--json",
    ]
    out.print(f"[bold]trial {number}[/bold] {ui.metrics_line(params)}  ({folder})")
    code = stop.run(command)
    if code in (EXIT_INTERRUPTED, EXIT_PREEMPTED, -signal.SIGTERM, -signal.SIGINT, -signal.SIGKILL):
        signum = stop.received or (signal.SIGINT if code in (EXIT_INTERRUPTED, -signal.SIGINT) else signal.SIGTERM)
        raise TuneStopped(
            f"search stopped by {signal.Signals(signum).name} in trial {number}; its checkpoint is saved in {folder}. "
            "Run the same command again to continue the search.",
            signum,
        )
    if code == EXIT_BAD_INPUT and best_trial(study) is None:
        # Refused input, before any trial worked: the next trials would be refused the same way.
        raise TrialFailed(f"trial {number}: dlcli train refused its command (its error is above); fix the options and search again in another --output.")
    if code != 0:
        out.print(f"trial {number} failed (dlcli train exit code {code}); its output is above.")
        return float("nan")
    try:
        value = hypertune.objective(folder, monitor)
    except DlcliError as e:
        raise TrialFailed(str(e)) from None
    out.print(f"trial {number}: {monitor} {ui.fmt(value)}")
    return value


def _text(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    return "none" if value is None else str(value)


def wait_for_lock(folder):
    """Waits until no process trains into `folder`: a trial process whose search was killed
    gets SIGTERM and saves its checkpoint before it lets go."""
    deadline = time.monotonic() + LOCK_WAIT_SECONDS
    while True:
        try:
            rundir.RunLock(folder).release()
            return
        except DlcliError:
            if time.monotonic() > deadline:
                raise DlcliError(f"another process still trains into {folder}; stop it, then run the search again.") from None
            time.sleep(1)


class TrialSignals:
    """SIGTERM and Ctrl-C stop the search after the trial in flight has saved its checkpoint.

    The trial runs in its own session, so a Ctrl-C at the terminal reaches it once, forwarded
    from here; on Linux it also gets SIGTERM if this process dies (kill -9), so it never trains
    on unwatched."""

    def __init__(self):
        self.received = None
        self.child = None
        self.previous = {}

    def __enter__(self):
        for signum in (signal.SIGTERM, signal.SIGINT):
            self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        for signum, handler in self.previous.items():
            signal.signal(signum, handler)

    def _handle(self, signum, frame):
        self.received = self.received or signum
        if self.child is not None and self.child.poll() is None:
            self.child.send_signal(signum)

    def check(self):
        if self.received:
            name = signal.Signals(self.received).name
            raise TuneStopped(f"search stopped by {name} between trials; run the same command again to continue it.", self.received)

    def run(self, command):
        """Runs a trial; its stderr (progress) passes through, its JSON stdout is dropped: the
        run folder holds the results."""
        self.child = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        if self.received:  # a signal between the check and the start
            self.child.send_signal(self.received)
        try:
            return self.child.wait()
        finally:
            self.child = None


def _die_with_parent():
    """In the trial process: SIGTERM when the search process dies (prctl PR_SET_PDEATHSIG)."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    except (OSError, AttributeError):
        pass


# ## The table of trials


def trial_rows(study, out_dir):
    rows = []
    for trial in study.get_trials(deepcopy=False):
        folder = trial_dir(out_dir, trial.number)
        history = rundir.read_history(folder / "history.csv") if (folder / "history.csv").is_file() else []
        try:
            metrics = rundir.read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else {}
        except DlcliError:
            metrics = {}
        seconds = metrics.get("wall_seconds") if isinstance(metrics, dict) else None
        rows.append({
            "number": trial.number, "params": trial.params, "value": trial.value, "state": trial.state.name.lower(),
            "epochs": len(history), "best_epoch": hypertune.best_epoch(folder),
            "seconds": seconds if seconds is not None else round(sum(r.get("seconds", 0) or 0 for r in history), 3),
            "run_dir": str(folder),
        })
    return rows


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
