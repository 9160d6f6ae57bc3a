"""The search behind `dlcli tune`: Optuna's study in a journal file of the search folder, and each
trial a `dlcli train ... --resume-auto` subprocess into OUT/trial-NNN.

Training each trial in its own process lets every strategy work, keeps a crashing trial from
taking the search down, and lets a stopped trial continue from its checkpoint. Stopping the
search and running the same command again re-runs the trial that was in flight (same number,
parameters and folder), then asks for new ones.
"""

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

from dlcli.core import ui
from dlcli.core.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_PREEMPTED, DlcliError
from dlcli.models import config as config_lib
from dlcli.runs import rundir
from dlcli.tuning import hypertune

STUDY_NAME = "dlcli-tune"
STUDY_FILE = "study.log"
BEST_FILE = "best.toml"
# Config keys a re-run may change without making it another search (where data is kept, how
# often trials checkpoint, XLA): they do not change what a trial measures.
IGNORED_CHANGES = tuple(k for k in rundir.RESUMABLE_CHANGES if k != "epochs")
LOCK_WAIT_SECONDS = 120  # a trial process orphaned by a killed search needs this to save its checkpoint


class TrialFailed(DlcliError):
    """A trial failed in a way every trial would (the command, the monitor): the search stops."""


class TuneStopped(DlcliError):
    """The search was stopped by a signal; the trial in flight saved its checkpoint."""

    def __init__(self, message, signum):
        super().__init__(message)
        self.exit_code = EXIT_PREEMPTED if signum == signal.SIGTERM else EXIT_INTERRUPTED


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


def reseed(study, seed):
    """A TPE sampler seeded by the trials so far: a re-run draws new values, not the first ones again."""
    import optuna

    done = len(study.get_trials(deepcopy=False))
    study.sampler = optuna.samplers.TPESampler(seed=(seed or 0) * 7919 + done, n_startup_trials=5)


def tell(study, number, value):
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
