"""Recipes are the modules of the `recipes` package, found by file name.

Adding `recipes/<name>.py` adds the recipe `<name>`: no list to edit. What a recipe module must
and may hold is `Recipe` below; `load` checks every module against it and names what is missing
or has the wrong parameters. Importing a recipe module must not import TensorFlow (use
`dlcli.core.lazy`), so `dlcli list` and `show` stay instant.
"""

import ast
import difflib
import importlib
import inspect
import pkgutil
from pathlib import Path
from typing import Protocol

import recipes
from dlcli.core.errors import DlcliError


class Recipe(Protocol):
    """The recipe contract. The module docstring's first line is the summary `dlcli list`
    shows; the rest says what it modernises, the reference result and the command
    (`Reproduce: dlcli train ...`) that reproduces it."""

    Config: type  # a dataclass of defaults extending dlcli.config.TrainConfig
    DATASETS: dict  # --dataset names -> one-line descriptions
    DATA_KINDS: set  # what --data may hold: "images", "text", "table" (see dlcli.sources)
    MODERNISES: list  # (old TF1/PyTorch idiom, modern Keras form) pairs, shown by `dlcli show`
    QUICK: dict  # config overrides for a fast offline run: the tests train every recipe with it

    def load_data(self, config):
        """-> dlcli.data.Splits"""

    def build_model(self, config, splits):
        """-> keras.Model taking raw inputs (or preprocessed ones, with `inference_model`)"""

    def loss(self, config):
        """-> a per-example Keras loss (reduction=None): the loop averages over the global batch"""

    def metrics(self, config):
        """-> a list of Keras metrics"""

    def read_inputs(self, record, inputs):
        """-> (batch, names): `dlcli predict`'s inputs (paths or texts) as the model's raw input"""

    def describe(self, record, outputs, names, context):
        """-> one dict per input, for `dlcli predict`'s table or JSON"""


class OptionalHooks(Protocol):
    """Hooks a recipe may add. It may also hold `DATASET_DEFAULTS`: {dataset name: config
    overrides} applied after its defaults and before --config/--set/flags, for `--dataset NAME`
    or a `--data` path recognised as that dataset (`dlcli show` prints them); and `MONITOR`, the
    metric early stopping and the best model follow when the config's `monitor` is empty
    (e.g. "val_accuracy"; val_loss when the recipe names none); and `BF16_CPU = True` where
    mixed_bfloat16 was measured faster on CPUs that run bf16 natively (`precision = "auto"`
    then picks it there: strategy.resolve_precision); and `CPU_MICRO_BATCHES = True` where one
    micro-batch per core, one thread per op, was measured faster on multi-core CPUs
    (`micro_batches = 0` then picks it there: strategy.micro_batches). Either flag may be a
    function of the config instead, where only some of a recipe's models were measured."""

    def optimizer(self, config, learning_rate):
        """-> a Keras optimizer, when Adam is not the right default"""

    def after_training(self, config, splits, model, run_dir):
        """-> dict of baselines and facts, merged into metrics.json as "report" (a "pictures"
        list names the PNG files it wrote); `model` is the saved, raw-input model"""

    def training_phase(self, config, model, optimizer, epoch):
        """-> the phase's name for this epoch (e.g. "head", "fine-tune"), after setting which
        layers train and the learning rate; called before every epoch, a resumed one included,
        so it must follow from `epoch` alone. The loop retraces its steps when the name changes."""

    def inference_model(self, model, splits):
        """-> the model to save, taking raw inputs, when `splits.preprocess` preprocesses them"""

    def read_instance(self, record, value):
        """-> one example of the model's raw input from one instance a `dlcli serve` client sent:
        bytes (a file's contents: an image, a .wav clip), a str (a text) or a dict (a table row by
        column), read by the same function `read_inputs` reads files with; an image file may come
        back as predict.ImageBytes, checked but not decoded, for the server to decode a batch's
        images in one call. Without it, the recipe is served raw arrays only (lists shaped like
        the model's input)"""


def _hooks(protocol):
    """{name: parameter names} of a Protocol's functions (without self)."""
    return {
        name: list(inspect.signature(function).parameters)[1:]
        for name, function in vars(protocol).items()
        if inspect.isfunction(function) and not name.startswith("_")
    }


REQUIRED_HOOKS = _hooks(Recipe)
OPTIONAL_HOOKS = _hooks(OptionalHooks)
REQUIRED_ATTRIBUTES = [name for name in Recipe.__annotations__]
REQUIRED = (*REQUIRED_ATTRIBUTES, *REQUIRED_HOOKS)


def check_contract(name, module):
    """Raises DlcliError naming every attribute or hook `module` lacks or declares wrongly."""
    problems = [f"lacks {attr}" for attr in REQUIRED if not hasattr(module, attr)]
    if not isinstance(getattr(module, "MONITOR", ""), str):
        problems.append("has a MONITOR that is not a metric name (str)")
    for hook, params in {**REQUIRED_HOOKS, **OPTIONAL_HOOKS}.items():
        function = getattr(module, hook, None)
        if function is None:
            continue
        try:
            found = inspect.signature(function).parameters
        except (TypeError, ValueError):
            problems.append(f"{hook} is not a function")
            continue
        if len(found) != len(params):
            problems.append(f"{hook} takes ({', '.join(found)}), not ({', '.join(params)})")
    if problems:
        raise DlcliError(f"recipe '{name}' is incomplete: it {'; '.join(problems)} (see dlcli.registry.Recipe).")


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
    check_contract(name, module)
    return module
