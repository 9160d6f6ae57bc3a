"""Hyperparameter search over config keys: the search space, the objective a run folder holds,
the best config as TOML, and Vertex AI's hyperparameter tuning hand-off.

Nothing here imports TensorFlow; Optuna is imported only by the functions that need it, so a
bad `--space` is one line before anything heavy loads.

A space entry is `KEY=VALUES`, KEY a config key of the recipe:
    learning_rate=log:1e-4..1e-2   a range sampled on a log scale
    dropout=0.1..0.5               a range of the field's type (int or float)
    batch_size=int:16..128         an int range (the field must be an int)
    batch_size=32,64,128           a list of choices (any field type)
"""

import dataclasses
import json
import math
import os
import types
import typing
from dataclasses import dataclass
from pathlib import Path

from dlcli.core.errors import DlcliError
from dlcli.models import config as config_lib
from dlcli.runs import rundir

# Keys that say what the data is, not how to learn from it: a search over them compares
# objectives measured on different validation sets.
NOT_HYPERPARAMETERS = ("dataset", "data", "data_dir")
PREFIXES = ("log", "int")


@dataclass(frozen=True)
class Param:
    """One searched config key: a numeric range (`low`..`high`, optionally log-scaled) or choices."""

    name: str
    kind: str  # "int", "float" or "choice"
    low: float | None = None
    high: float | None = None
    log: bool = False
    choices: tuple = ()

    def describe(self):
        if self.kind == "choice":
            return ",".join(map(str, self.choices))
        return f"{'log:' if self.log else ''}{'int:' if self.kind == 'int' else ''}{self.low}..{self.high}"

    def distribution(self):
        import optuna

        if self.kind == "int":
            return optuna.distributions.IntDistribution(int(self.low), int(self.high), log=self.log)
        if self.kind == "float":
            return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log)
        return optuna.distributions.CategoricalDistribution(self.choices)


def parse_space(specs, config_cls, recipe, fixed=()):
    """Parses `--space KEY=VALUES` entries into {key: Param}, checked against the recipe's
    Config (known key, value type, declared Range). `fixed` are keys set otherwise (--set,
    --config, flags): searching one of them too is refused as ambiguous."""
    if not specs:
        raise DlcliError("dlcli tune needs at least one --space KEY=VALUES, e.g. --space learning_rate=log:1e-4..1e-2")
    hints = config_lib.field_types(config_cls)
    ranges = config_lib.ranges(config_cls)
    space = {}
    for spec in specs:
        key, sep, values = spec.partition("=")
        key, values = key.strip(), values.strip()
        if not sep or not key or not values:
            raise DlcliError(f"--space expects KEY=VALUES (LOW..HIGH, log:LOW..HIGH, int:LOW..HIGH or a,b,c). Received: {spec!r}")
        if key not in hints:
            raise config_lib._unknown_key(key, hints, recipe)
        if key in NOT_HYPERPARAMETERS:
            raise DlcliError(f"--space {key}: {key} chooses the data, not a hyperparameter; set it with --{key.replace('_', '-')}.")
        if key in space:
            raise DlcliError(f"--space {key} is given twice; give each key once.")
        if key in fixed:
            raise DlcliError(f"{key} is both searched (--space) and set (--set, --config or a flag); drop one of them.")
        space[key] = _param(key, values, _inner(hints[key]), ranges.get(key), spec)
    return space


def _inner(hint):
    """`int | None` -> int: an optional field is searched over its values."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(hint) if a is not type(None)][0]
    return hint


def _param(key, values, hint, allowed, spec):
    parts, prefixes = values.split(":"), []
    while len(parts) > 1 and parts[0] in PREFIXES and parts[0] not in prefixes:
        prefixes.append(parts.pop(0))
    body = ":".join(parts)
    if ".." in body and ":" in body:
        raise DlcliError(f"--space {key}: unknown prefix {body.rpartition(':')[0]!r}; use log:, int: or both. Received: {spec!r}")
    numeric = hint in (int, float)
    if ".." in body:
        if not numeric:
            raise DlcliError(
                f"--space {key}: {key} is {config_lib.type_name(hint)}, not a number; list the choices instead (KEY=a,b). Received: {spec!r}"
            )
        if "int" in prefixes and hint is not int:
            raise DlcliError(f"--space {key}: int: needs an int field and {key} is a float; use {key}=LOW..HIGH. Received: {spec!r}")
        low_text, sep, high_text = body.partition("..")
        low, high = (config_lib.coerce(key, text.strip(), hint) for text in (low_text, high_text))
        if not low < high:
            raise DlcliError(f"--space {key}: the range must have LOW < HIGH. Received: {spec!r}")
        for value in (low, high):
            if allowed and not allowed.allows(value):
                raise DlcliError(f"--space {key}: {key} must be {allowed}. Received: {spec!r}")
            if not math.isfinite(value):
                raise DlcliError(f"--space {key}: the range must be finite. Received: {spec!r}")
        log = "log" in prefixes
        if log and low <= 0:
            raise DlcliError(f"--space {key}: a log: range needs LOW > 0. Received: {spec!r}")
        return Param(key, "int" if hint is int else "float", low, high, log)
    if prefixes:
        raise DlcliError(f"--space {key}: {':'.join(prefixes)}: goes with a range LOW..HIGH. Received: {spec!r}")
    choices = [text.strip() for text in body.split(",")]
    if len(choices) < 2:
        raise DlcliError(
            f"--space {key}={body} is one value: set it with --set {key}={body}, or give a range LOW..HIGH or choices a,b."
        )
    coerced = tuple(config_lib.coerce(key, text, hint) for text in choices)
    for value in coerced:
        if allowed and value is not None and not allowed.allows(value):
            raise DlcliError(f"--space {key}: {key} must be {allowed}. Received: {key}={value}")
    if len(set(coerced)) != len(coerced):
        raise DlcliError(f"--space {key}: a choice is listed twice. Received: {spec!r}")
    return Param(key, "choice", choices=coerced)


def space_record(space):
    """The space as plain JSON, stored with the study so a re-run can tell it is the same search."""
    return {key: dataclasses.asdict(param) | {"choices": list(param.choices)} for key, param in sorted(space.items())}


# ## The objective: a validation metric a finished run folder holds


def objective(run_dir, monitor):
    """The value of `monitor` (a history.csv column such as val_loss) at the epoch whose weights
    the run kept in model.keras (metrics.json's `model_epoch`: the best epoch with early
    stopping), else at the last epoch.

    Raises DlcliError when the run has no such column (naming those it has)."""
    run_dir = Path(run_dir)
    history = rundir.read_history(run_dir / "history.csv")
    if not history:
        raise DlcliError(f"{run_dir} has no history.csv rows to read {monitor} from.")
    if monitor not in history[-1]:
        columns = ", ".join(k for k in history[-1] if k.startswith("val_")) or "none"
        raise DlcliError(
            f"monitor {monitor!r} is not a column of {run_dir / 'history.csv'}; validation columns: {columns}."
        )
    value = kept_row(run_dir, history)[monitor]
    return float(value) if isinstance(value, (int, float)) else float("nan")


def kept_row(run_dir, history):
    """The history row of the epoch model.keras holds (`model_epoch`), else the last row."""
    kept = _metrics_int(run_dir, "model_epoch")
    return next((row for row in history if row.get("epoch") == kept), history[-1]) if history else {}


def best_epoch(run_dir):
    """metrics.json's `best_epoch` (the best epoch of the monitor), or None."""
    return _metrics_int(run_dir, "best_epoch")


def _metrics_int(run_dir, key):
    path = Path(run_dir) / "metrics.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8")).get(key) if path.is_file() else None
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# ## The best config, as a TOML file `dlcli train --config` reads


def toml_value(value):
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a TOML basic string: JSON's escapes are TOML's


def write_best_toml(path, values, comment):
    """Writes {key: value} as flat TOML, `comment` lines first."""
    lines = [f"# {line}" for line in comment.splitlines()]
    lines += [f"{key} = {toml_value(value)}" for key, value in values.items() if value is not None]
    rundir.atomic_write(path, "\n".join(lines) + "\n")


# ## Vertex AI hyperparameter tuning: `--KEY=VALUE` arguments in, the metric out through cloudml-hypertune


def extra_sets(args, config_cls, recipe):
    """Turns the extra arguments Vertex AI adds to the command of each trial (`--learning_rate=0.003`,
    or `--learning_rate 0.003`) into --set pairs. Anything but a config key is refused as an
    unknown option, with the close option or key and the valid keys."""
    hints = config_lib.field_types(config_cls)
    pairs = []
    args = list(args)
    while args:
        arg = args.pop(0)
        if not arg.startswith("--") or len(arg) == 2:
            raise DlcliError(f"unexpected argument {arg!r}; config values go as --set KEY=VALUE or --KEY=VALUE.")
        name, sep, value = arg[2:].partition("=")
        key = name.replace("-", "_")
        if key not in hints:
            unknown = config_lib._unknown_key(key, hints, recipe)
            raise DlcliError(f"No such option: --{name} (see: dlcli train --help); config keys are also options (--KEY=VALUE), and {unknown}")
        if not sep:
            if not args or args[0].startswith("--"):
                raise DlcliError(f"--{name} needs a value: --{name}=VALUE.")
            value = args.pop(0)
        pairs.append(f"{key}={value}")
    return pairs


def vertex_tuning():
    """Whether this runs as a trial of a Vertex AI (or AI Platform) hyperparameter tuning job:
    the variables cloudml-hypertune and the service use are set."""
    return bool(os.environ.get("CLOUD_ML_HP_METRIC_TAG") or os.environ.get("CLOUD_ML_TRIAL_ID"))


def report_to_vertex(run_dir, monitor, console):
    """Reports `monitor`'s final value to Vertex AI through cloudml-hypertune, which writes it
    to $CLOUD_ML_HP_METRIC_FILE (default /tmp/hypertune/output.metrics) for the service to read.
    The metric's tag is $CLOUD_ML_HP_METRIC_TAG when set, else the monitor's name: the study's
    metric_id must be the same."""
    try:
        import hypertune
    except ImportError:
        console.print("notice: a Vertex AI tuning trial, but cloudml-hypertune is not installed: the metric is not reported (pip install -e '.[tune]' in the dlcli checkout).")
        return None
    value = objective(run_dir, monitor)
    tag = os.environ.get("CLOUD_ML_HP_METRIC_TAG") or monitor
    epochs = len(rundir.read_history(Path(run_dir) / "history.csv"))
    hypertune.HyperTune().report_hyperparameter_tuning_metric(
        hyperparameter_metric_tag=tag, metric_value=value, global_step=epochs
    )
    console.print(f"reported {tag} = {value:.6g} to Vertex AI hyperparameter tuning")
    return tag, value
