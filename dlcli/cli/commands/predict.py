"""`dlcli predict RUN_OR_MODEL INPUT...`: run a trained or exported model on your own inputs."""

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from dlcli.cli import options
from dlcli.core import ui
from dlcli.core.errors import DlcliError
from dlcli.models import predict
from dlcli.runs import remote
from dlcli.training import registry


def predict_command(
    model: Annotated[Path, typer.Argument(help="A run folder, or a model written by `dlcli export`.", show_default=False)],
    inputs: Annotated[list[str], typer.Argument(help="Images, texts or text files, or CSV files, as the recipe reads.")],
    top_k: Annotated[int, typer.Option(help="Classes listed per input (classifiers).")] = 3,
    output: options.PredictOutput = None,
    unsafe: options.Unsafe = False,
    as_json: options.Json = False,
):
    """Predict with a trained run or an exported model (.keras, SavedModel, .tflite, .onnx, OpenVINO)."""
    if top_k < 1:
        raise DlcliError(f"--top-k must be a positive integer. Received: {top_k}")
    record, kind, artifact = predict.locate(remote.local_run(model, what="model"))
    recipe = registry.load(record.recipe)
    batch, names = recipe.read_inputs(record, inputs)
    outputs = predict.predictor(kind, artifact, unsafe)(batch)
    context = {"batch": batch, "top_k": top_k, "out_dir": output or Path("predictions")}
    rows = recipe.describe(record, outputs, names, context)
    if as_json:
        ui.print_json(rows)
        return
    table = Table(*[key for key in rows[0] if key != "top_k"], box=None, header_style="bold")
    for row in rows:
        table.add_row(*[ui.fmt(value) for key, value in row.items() if key != "top_k"])
    ui.console.print(table)
