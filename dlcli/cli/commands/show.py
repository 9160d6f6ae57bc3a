"""`dlcli show RECIPE`: what a recipe does, its defaults, datasets and what it modernises."""

import dataclasses
from typing import Annotated

import typer
from rich.table import Table

from dlcli import data
from dlcli.cli import complete
from dlcli.core import ui
from dlcli.models import config as config_lib
from dlcli.models.config import TrainConfig
from dlcli.training import registry


def show_command(
    recipe: Annotated[str, typer.Argument(help="Recipe name (see `dlcli list`).", autocompletion=complete.recipes)],
    model: Annotated[
        bool, typer.Option("--model", help="Also build the model and print its Keras summary (imports TensorFlow).")
    ] = False,
    dataset: Annotated[str | None, typer.Option(help="Dataset whose shapes the --model summary uses.")] = None,
    data_path: Annotated[str | None, typer.Option("--data", help="Local data whose shapes the --model summary uses.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
):
    """Show a recipe: what it does, its defaults, its datasets and the old code it modernises."""
    module = registry.load(recipe)
    defaults = module.Config()
    shared = {f.name for f in dataclasses.fields(TrainConfig)}
    hints = config_lib.field_types(module.Config)
    ranges = config_lib.ranges(module.Config)
    info = {
        "name": recipe,
        "description": (module.__doc__ or "").strip(),
        "config": {k: v for k, v in dataclasses.asdict(defaults).items()},
        "datasets": module.DATASETS,
        "data_kinds": sorted(module.DATA_KINDS),
        "dataset_defaults": getattr(module, "DATASET_DEFAULTS", {}),
        "modernises": [{"old": old, "new": new} for old, new in module.MODERNISES],
    }
    if model:
        config = config_lib.resolve(
            module.Config, recipe, flags={"dataset": dataset, "data": data_path},
            dataset_defaults=getattr(module, "DATASET_DEFAULTS", None),
        )
        data.check_dataset(config, module.DATASETS, recipe)
        splits = module.load_data(config)
        built = module.build_model(config, splits)
        lines = []
        built.summary(print_fn=lambda line, *args, **kwargs: lines.append(line))
        info["model_summary"] = "\n".join(lines)
    if as_json:
        ui.print_json(info)
        return

    out = ui.console
    out.print(f"[bold]{recipe}[/bold]\n")
    out.print(reflow(info["description"]), markup=False)
    table = Table("key", "default", "type", "", title="config (override with --set key=value)", box=None, title_justify="left")
    for key, value in info["config"].items():
        allowed = f" {ranges[key]}" if key in ranges else ""
        table.add_row(key, repr(value), config_lib.type_name(hints[key]) + allowed, "" if key in shared else "recipe")
    out.print(table)
    kinds = ", ".join(info["data_kinds"])
    table = Table("dataset", "", title=f"datasets (--dataset NAME, or --data PATH holding {kinds}: see dlcli data info PATH)", box=None, title_justify="left")
    for name, about in module.DATASETS.items():
        table.add_row(name + (" (default)" if name == defaults.dataset else ""), about)
    out.print(table)
    if info["dataset_defaults"]:
        table = Table("dataset", "overrides", title="per-dataset defaults (before --config/--set/flags)", box=None, title_justify="left")
        for name, overrides in info["dataset_defaults"].items():
            table.add_row(name, ", ".join(f"{k}={v!r}" for k, v in overrides.items()))
        out.print(table)
    table = Table("old", "modern Keras", title="what it modernises", box=None, title_justify="left")
    for row in info["modernises"]:
        table.add_row(row["old"], row["new"])
    out.print(table)
    if model:
        out.print(info["model_summary"], markup=False)
    else:
        out.print("\nAdd --model for the Keras model summary (builds it with TensorFlow; --dataset picks the data).")


def reflow(text):
    """Joins a docstring's hard-wrapped lines into paragraphs, keeping indented lines as they are."""
    out = []
    for line in text.splitlines():
        if out and line.strip() and out[-1].strip() and not line.startswith(" ") and not out[-1].startswith(" "):
            out[-1] += " " + line.strip()
        else:
            out.append(line)
    return "\n".join(out)
