"""`dlcli predict RUN_OR_MODEL INPUT...`: run a trained or exported model on your own inputs."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlcli import predict, registry, ui
from dlcli.errors import DlcliError


def predict_command(
    model: Annotated[Path, typer.Argument(help="A run folder, or a model written by `dlcli export`.")],
    inputs: Annotated[list[str], typer.Argument(help="Images, texts or text files, or CSV files, as the recipe reads.")],
    top_k: Annotated[int, typer.Option(help="Classes listed per input (classifiers).")] = 3,
    out: Annotated[Path, typer.Option(help="Folder for output files (autoencoder reconstructions).")] = Path("predictions"),
    unsafe: Annotated[bool, typer.Option(help="Load models that contain code (Lambda layers). Only for files you trust.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
):
    """Predict with a trained run or an exported model (.keras, SavedModel, .tflite)."""
    if top_k < 1:
        raise DlcliError(f"--top-k must be a positive integer. Received: {top_k}")
    info, kind, artifact = predict.locate(model)
    recipe = registry.load(str(info.get("recipe")))
    batch, names = recipe.read_inputs(info, inputs)
    outputs = predict.predictor(kind, artifact, unsafe)(batch)
    rows = recipe.describe(info, outputs, names, {"batch": batch, "top_k": top_k, "out_dir": out})
    if as_json:
        ui.print_json(rows)
        return
    table = Table(*[key for key in rows[0] if key != "top_k"], box=None, header_style="bold")
    for row in rows:
        table.add_row(*[ui.fmt(value) for key, value in row.items() if key != "top_k"])
    ui.console.print(table)
