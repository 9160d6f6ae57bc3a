"""`dlcli list`: the recipes, without importing TensorFlow."""

from typing import Annotated

import typer
from rich.table import Table

from dlcli.core import ui
from dlcli.training import registry


def list_command(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
):
    """List the recipes: name, summary and default dataset."""
    rows = []
    for name in registry.recipe_names():
        recipe = registry.load(name)
        rows.append({"name": name, "summary": registry.summary(name), "default_dataset": recipe.Config().dataset})
    if as_json:
        ui.print_json(rows)
        return
    table = Table("recipe", "summary", "default dataset", box=None, header_style="bold")
    for row in rows:
        table.add_row(row["name"], row["summary"], row["default_dataset"])
    ui.console.print(table)
