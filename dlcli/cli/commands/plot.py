"""`dlcli plot RUN_DIR`: redraw a run's pictures from the files it keeps."""

from pathlib import Path
from typing import Annotated

import typer

from dlcli.core import ui
from dlcli.core.errors import DlcliError
from dlcli.models import plots


def plot_command(run_dir: Annotated[Path, typer.Argument(help="A run folder written by `dlcli train`.")]):
    """Redraw a run's curves, confusion matrix and forecast plot as PNG files in the run folder."""
    if not (Path(run_dir) / "history.csv").is_file():
        raise DlcliError(f"{run_dir} has no history.csv: it is not a dlcli run folder (or no epoch has finished).")
    for path in plots.redraw(run_dir):
        ui.console.print(f"drew {path}")
