"""Recipes are the modules of the `recipes` package, found by file name.

Adding `recipes/<name>.py` adds the recipe `<name>`: no list to edit. A recipe module holds
what is specific to it:

- a module docstring: the first line is the summary; the rest says what it modernises,
  the reference result and the command that reproduces it;
- `Config`: a dataclass of defaults, extending `dlcli.config.TrainConfig`;
- `DATASETS`: the dataset names it accepts, mapped to a one-line description;
- `MODERNISES`: (old TF1/PyTorch idiom, modern Keras form) pairs, shown by `dlcli show`;
- `load_data(config) -> dlcli.data.Splits`, `build_model(config, splits) -> keras.Model`,
  `loss(config)` (a per-example Keras loss) and `metrics(config)` (Keras metrics);
- `QUICK`: config overrides for a fast offline run (the tests train every recipe with it);
- `read_inputs(info, inputs) -> (batch, names)` and `describe(info, outputs, names, context)
  -> rows`, for `dlcli predict` (info is the run's config.json);
- optionally `DATASET_DEFAULTS`: {dataset name: config overrides} applied after the defaults and
  before --config/--set/flags, for `--dataset NAME` or a `--data` path recognised as that dataset;
  `optimizer(config, learning_rate)` when Adam is not the right default;
  `after_training(config, splits, model, run_dir) -> dict` for baselines and pictures (merged
  into metrics.json as "report"; `model` is the saved, raw-input model); `inference_model(model, splits)` when the data pipeline
  preprocesses inputs (`splits.preprocess`), to save a model that takes raw inputs.

Importing a recipe module must not import TensorFlow (use `dlcli.lazy`).
"""

import ast
import difflib
import importlib
import pkgutil
from pathlib import Path

import recipes

from dlcli.errors import DlcliError

REQUIRED = (
    "Config", "DATASETS", "MODERNISES", "QUICK", "load_data", "build_model", "loss", "metrics",
    "read_inputs", "describe",
)


def recipe_names():
    """Every recipe name, sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(recipes.__path__) if not m.name.startswith("_"))


def summary(name):
    """The first line of a recipe's docstring, read without importing it."""
    source = Path(recipes.__path__[0], f"{name}.py").read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(source)) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def check_name(name):
    """Returns `name` if it is a recipe, else raises with the closest names."""
    names = recipe_names()
    if name in names:
        return name
    close = difflib.get_close_matches(name, names, n=1)
    hint = f" Did you mean '{close[0]}'?" if close else ""
    raise DlcliError(f"unknown recipe '{name}'.{hint} Available: {', '.join(names)}.")


def load(name):
    """Imports and returns the recipe module `name`."""
    module = importlib.import_module(f"recipes.{check_name(name)}")
    missing = [attr for attr in REQUIRED if not hasattr(module, attr)]
    if missing:
        raise DlcliError(f"recipe '{name}' is incomplete: it lacks {', '.join(missing)}.")
    return module
