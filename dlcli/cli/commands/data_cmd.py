"""`dlcli data list|download|info`: which data each recipe reads, and what a local file holds.

Everything here goes through the tables: recipes' DATASETS and DATA_KINDS, `dlcli.data.sources`
for local formats and `dlcli.data.sources.tfds` for named downloads; no recipe is named here.
"""

from pathlib import Path
from types import SimpleNamespace
from typing import Annotated

import typer
from rich.table import Table

from dlcli.cli import complete, options
from dlcli.core import ui
from dlcli.core.errors import DlcliError
from dlcli.data import sources
from dlcli.data.sources import tfds
from dlcli.models import config as config_lib
from dlcli.training import registry

app = typer.Typer(help="See, fetch and inspect datasets.", no_args_is_help=True)


def recipe_datasets():
    """(recipe, dataset, description) for every dataset every recipe names."""
    return [
        (recipe, name, about)
        for recipe in registry.recipe_names()
        for name, about in registry.load(recipe).DATASETS.items()
    ]


def availability(name, data_dir):
    """Whether a named dataset is here: downloaded, prepared by tfds, or made on the fly."""
    if name in tfds.DOWNLOADS:
        cached = tfds.keras_cache() / tfds.DOWNLOADS[name][1]
        return "cached" if cached.is_file() else "not downloaded (dlcli data download NAME, or --data FILE)"
    if tfds.is_tfds_name(name):
        prepared = tfds.is_prepared(name, data_dir)
        return "prepared" if prepared else "not downloaded (dlcli data download NAME)"
    return "bundled or generated (offline)"


@app.command("list")
def list_command(
    data_dir: options.DataDir = None,
    as_json: options.Json = False,
):
    """Which datasets each recipe accepts, and which are available here now."""
    status = {}
    rows = []
    for recipe, name, about in recipe_datasets():
        if name not in status:
            status[name] = availability(name, data_dir)
        rows.append({"recipe": recipe, "dataset": name, "about": about, "here": status[name]})
    if as_json:
        ui.print_json(rows)
        return
    table = Table("recipe", "dataset", "available here", "about", box=None, header_style="bold")
    for row in rows:
        table.add_row(row["recipe"], row["dataset"], row["here"], row["about"])
    ui.console.print(table)
    ui.console.print("Any recipe also reads local files: --data PATH (see `dlcli data info PATH`).")


@app.command("download")
def download_command(
    name: Annotated[str, typer.Argument(help="A dataset name from `dlcli data list`.", autocompletion=complete.datasets)],
    data_dir: options.DataDir = None,
):
    """Download and prepare a dataset now, for later offline training."""
    if name in tfds.DOWNLOADS:
        path = tfds.download(name, f"Copy {tfds.DOWNLOADS[name][1]} here by other means and pass --data FILE.")
        ui.console.print(f"{name} ready at {path}")
        return
    names = sorted({dataset for _, dataset, _ in recipe_datasets()})
    downloadable = [n for n in names if n in tfds.DOWNLOADS or tfds.is_tfds_name(n)]
    if name not in downloadable:
        raise DlcliError(f"unknown dataset '{name}'. Downloadable: {', '.join(downloadable)}.")
    builder = tfds.builder(name, data_dir)
    splits = {split: info.num_examples for split, info in builder.info.splits.items()}
    ui.console.print(f"{name} prepared in {builder.data_dir}: " + ", ".join(f"{k} {v}" for k, v in splits.items()))


def training_defaults(path, readers):
    """What training would pick for this data: the dataset it is recognised as, and each recipe's
    per-dataset defaults for it (cnn's photo network for a folder of colour photos, ...)."""
    name = config_lib.dataset_name(SimpleNamespace(data=str(path), dataset=""))
    if not name:
        return {}
    picked = {recipe: defaults[name] for recipe in readers if name in (defaults := getattr(registry.load(recipe), "DATASET_DEFAULTS", {}))}
    return {"recognised_as": name, **({"training_defaults": picked} if picked else {})}


@app.command("info")
def info_command(
    path: Annotated[Path, typer.Argument(help="A local dataset: " + "; ".join(s.NAME for s in sources.SOURCES) + ".")],
    as_json: options.Json = False,
):
    """What dlcli sees in a local file or folder: format, splits, examples, classes."""
    if not path.exists():
        raise DlcliError(f"not found: {path}")
    source = sources.find(path)
    readers = [name for name in registry.recipe_names() if source.KIND in registry.load(name).DATA_KINDS]
    facts = {"format": source.NAME, "read_by": readers, **source.describe(path)}
    facts.update(training_defaults(path, readers))
    if as_json:
        ui.print_json(facts)
        return
    ui.console.print(f"[bold]{path}[/bold]: {facts['format']} (read by {', '.join(readers)}: --data)")
    for split, about in facts.get("splits", {}).items():
        ui.console.print(f"  {split}: " + ", ".join(f"{k} {v}" for k, v in about.items()))
    for key, value in facts.items():
        if key not in ("format", "splits", "read_by"):
            ui.console.print(f"  {key}: {value}")
