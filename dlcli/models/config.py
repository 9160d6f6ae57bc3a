"""Config as code: one flat dataclass per recipe, with typed overrides.

Overrides apply in one order: the recipe's defaults, then its per-dataset defaults (the
recipe's optional `DATASET_DEFAULTS`, keyed by dataset name), then an optional TOML file, then
`--set key=value` pairs, then the flags every recipe shares (`--epochs`, `--batch-size`, ...).
Unknown keys and values of the wrong type fail with the list of valid keys or values.
"""

import dataclasses
import difflib
import sys
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

from dlcli.core.errors import DlcliError

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib


@dataclass(frozen=True)
class Range:
    """The allowed values of a numeric config field, declared next to it:
    `dropout: Annotated[float, Range(0, 1, high_open=True)] = 0.25`. Checked before TensorFlow
    loads, so a value only a Keras layer would reject is one line, not a traceback."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def allows(self, value):
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or (value < self.high or (not self.high_open and value == self.high))

    def __str__(self):
        if self.high is None:
            return "positive" if self.low == 0 and self.low_open else f">= {self.low}"
        return f"in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


POSITIVE = Range(0, low_open=True)
AT_LEAST_ONE = Range(1)
FRACTION = Range(0, 1, high_open=True)  # dropout rates and the like
MAX_STEPS = 2**31 - 1  # what a step counter may reach, with room to spare in int64


def monitor_of(recipe, config):
    """The metric early stopping, the best model and `dlcli tune` follow: `config.monitor`, else
    the recipe's `MONITOR`, else val_loss."""
    return getattr(config, "monitor", "") or getattr(recipe, "MONITOR", "") or "val_loss"


def auto_mode(monitor):
    """What `mode = "auto"` picks: max for accuracy-like metrics, min for the rest (losses, errors)."""
    return "max" if any(word in monitor for word in ("accuracy", "auc", "precision", "recall")) else "min"


@dataclass
class TrainConfig:
    """What every recipe shares. A recipe's `Config` extends it and changes its defaults."""

    dataset: str = ""  # a name from the recipe's DATASETS; ignored when `data` is set
    data: str | None = None  # a local file or folder, which wins over `dataset`
    data_dir: str | None = None  # where tensorflow-datasets keeps prepared data
    epochs: Annotated[int, Range(1, 1_000_000)] = 10
    batch_size: Annotated[int, Range(0, 1 << 24)] = 128  # global: split evenly across replicas; 0 = the whole training split
    steps_per_epoch: Annotated[int, Range(0, 100_000_000)] = 0  # 0 = one pass over the training split
    learning_rate: Annotated[float, POSITIVE] = 1e-3
    lr_schedule: typing.Literal["constant", "cosine"] = "constant"
    validation_split: Annotated[float, FRACTION] = 0.1  # held out of the training split: stratified per class for classifiers
    seed: Annotated[int, Range(0, 2**32 - 1)] = 0
    deterministic: bool = False  # TensorFlow op determinism: identical metrics run to run
    steps_per_execution: Annotated[int, Range(0, 100_000)] = 0  # steps per tf.function call; 0 picks one per epoch size
    checkpoint_every: Annotated[int, Range(0, MAX_STEPS)] = 0  # also checkpoint every N steps (0: at epoch ends only)
    # auto: mixed_bfloat16 for the recipes that gain from it (BF16_CPU) on CPUs with AVX512_BF16 or
    # AMX-BF16, float32 elsewhere (strategy.resolve_precision); the run record keeps what it chose.
    precision: typing.Literal["auto", "float32", "mixed_float16", "mixed_bfloat16"] = "auto"
    jit: bool = False  # XLA-compile each training step
    # Each replica's batch as N micro-batches whose gradients are summed into one update (the same
    # update in less memory, but BatchNormalization's statistics are per part); 0 = auto: one per
    # core on CPUs for the recipes that gain (CPU_MICRO_BATCHES), else 1.
    micro_batches: Annotated[int, Range(0, 1 << 16)] = 0
    early_stopping: Annotated[int, Range(0, 1_000_000)] = 0  # patience in epochs: stop when `monitor` has not improved for this many (0: off)
    monitor: str = ""  # what early stopping and the best model follow, e.g. val_accuracy; "" = the recipe's MONITOR, else val_loss
    mode: typing.Literal["auto", "min", "max"] = "auto"  # auto: max for accuracy, auc, precision, recall; min otherwise
    min_delta: Annotated[float, Range(0)] = 0.0  # the least change of `monitor` that counts as an improvement

    def validate(self):
        """Raises DlcliError on values no recipe can train with."""
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "learning_rate": self.learning_rate}
        for key, value in positive.items():
            if not value > 0 and not (key == "batch_size" and value == 0):
                full = " (or 0 for the whole training split)" if key == "batch_size" else ""
                raise DlcliError(f"{key} must be positive{full}. Received: {key}={value}")
        for key in ("steps_per_epoch", "steps_per_execution", "checkpoint_every"):
            if getattr(self, key) < 0:
                raise DlcliError(f"{key} must be >= 0 (0 = automatic). Received: {key}={getattr(self, key)}")
        if not 0 <= self.validation_split < 1:
            raise DlcliError(
                f"validation_split must be in [0, 1). Received: validation_split={self.validation_split}"
            )
        for key, allowed in ranges(type(self)).items():
            value = getattr(self, key)
            if value is not None and not allowed.allows(value):
                raise DlcliError(f"{key} must be {allowed}. Received: {key}={value}")
        if getattr(self, "encoding", "auto") != "auto":  # the text recipes': a codec name, checked before any file is read
            from dlcli.data import encodings

            encodings.check_name(self.encoding)
        if self.epochs * max(self.steps_per_epoch, 1) > MAX_STEPS:
            raise DlcliError(f"epochs x steps_per_epoch must stay below {MAX_STEPS}. Received: epochs={self.epochs}")


def ranges(config_cls):
    """{field: Range} for the fields declared with one. A recipe that changes a shared field's
    default (`epochs: int = 5`) keeps the shared field's range, so the classes are walked from
    TrainConfig down and only a declared Range replaces another."""
    out = {}
    for klass in reversed(config_cls.__mro__):
        own = klass.__dict__.get("__annotations__", {})
        hints = typing.get_type_hints(klass, include_extras=True) if own else {}
        for name in own:
            found = [m for m in getattr(hints[name], "__metadata__", ()) if isinstance(m, Range)]
            if found:
                out[name] = found[0]
    return out


def check(condition, key, value, allowed):
    """Raises the one-line error for a recipe config value outside `allowed`."""
    if not condition:
        raise DlcliError(f"{key} must be {allowed}. Received: {key}={value}")


def field_types(config_cls):
    """Maps each field name to its resolved type hint."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


def _unknown_key(key, hints, recipe):
    close = difflib.get_close_matches(key, hints, n=1)
    suggestion = f" Did you mean '{close[0]}'?" if close else ""
    return DlcliError(f"unknown config key '{key}' for recipe {recipe}.{suggestion} Valid keys: {', '.join(hints)}.")


def type_name(hint):
    if typing.get_origin(hint) is typing.Literal:
        return "one of " + ", ".join(map(str, typing.get_args(hint)))
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if args:
        return f"{args[0].__name__} or none"
    return hint.__name__


def coerce(key, value, hint):
    """Converts `value` (a TOML value, or a string from --set) to the type `hint`."""
    origin = typing.get_origin(hint)
    from_text = isinstance(value, str)
    bad = DlcliError(f"{key} must be {type_name(hint)}. Received: {key}={value!r}")
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise bad
        return value
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)][0]
        if value is None or (from_text and value.lower() in ("none", "null", "")):
            return None
        return coerce(key, value, inner)
    if hint is bool:
        if isinstance(value, bool):
            return value
        if from_text and value.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return value.lower() in ("true", "1", "yes", "on")
        raise bad
    if hint in (int, float):
        # A TOML float in an int field is refused rather than truncated; bools are not numbers here.
        if isinstance(value, bool) or (hint is int and isinstance(value, float)):
            raise bad
        try:
            return hint(value)
        except (TypeError, ValueError):
            raise bad from None
    if hint is str:
        if not isinstance(value, str):
            raise bad
        return value
    raise bad


def read_toml(path):
    """Reads a flat TOML config file; errors name the file and the line."""
    path = Path(path)
    if not path.is_file():
        raise DlcliError(f"config file not found: {path}")
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise DlcliError(f"invalid TOML in {path}: {e}") from None
    except UnicodeDecodeError:
        raise DlcliError(f"config file {path} is not UTF-8 text") from None
    for key, value in table.items():
        if isinstance(value, dict):
            raise DlcliError(f"config file {path}: [{key}] tables are not supported; use flat keys (key = value).")
    return table


def parse_sets(pairs):
    """Turns ['key=value', ...] into a dict, refusing malformed pairs."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise DlcliError(f"--set expects key=value. Received: {pair!r}")
        out[key.strip()] = value.strip()
    return out


# Keys that were renamed: a run recorded before (its config.json), or a habit, still reads.
# skip_bad meant "decode with replacement" for the text recipes: now decode_errors=replace.
RENAMED = {"skip_bad": ("decode_errors", lambda value: "replace" if str(value).lower() in ("true", "1", "yes") else "strict")}


def renamed(key, value, hints):
    if key in RENAMED and key not in hints and RENAMED[key][0] in hints:
        new_key, convert = RENAMED[key]
        return new_key, convert(value)
    return key, value


def resolve(config_cls, recipe, *, toml_values=None, sets=None, flags=None, dataset_defaults=None):
    """Builds a config: defaults, then the dataset's defaults, then TOML values, then --set
    pairs, then non-None flags.

    `dataset_defaults` maps a dataset name to overrides (a recipe's `DATASET_DEFAULTS`); the
    name is `--dataset`, or for `--data` the dataset recognised from the files' content.
    """
    hints = field_types(config_cls)
    values = {}
    for layer in (toml_values or {}, sets or {}, {k: v for k, v in (flags or {}).items() if v is not None}):
        for key, value in layer.items():
            key, value = renamed(key, value, hints)
            if key not in hints:
                raise _unknown_key(key, hints, recipe)
            values[key] = coerce(key, value, hints[key])
    if dataset_defaults:
        name = dataset_name(config_cls(**values))
        values = {**{k: coerce(k, v, hints[k]) for k, v in dataset_defaults.get(name, {}).items()}, **values}
    config = config_cls(**values)
    config.validate()
    return config


def dataset_name(config):
    """The dataset a config trains on: its `dataset`, or what its `data` path holds: an IDX folder
    of MNIST or Fashion-MNIST by its labels, "photos" for a folder of colour photos, "spoken_digit"
    for FSDD's clips and "recordings" for class folders of clips (None if unknown)."""
    if config.data is None:
        return config.dataset
    from dlcli.data.sources import audio_folder, idx, image_folder  # numpy and Pillow only; TensorFlow stays unloaded

    return idx.recognise(config.data) or image_folder.recognise(config.data) or audio_folder.recognise(config.data)
