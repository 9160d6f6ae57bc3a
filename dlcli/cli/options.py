"""The command-line options several commands share, defined once.

Each is an `Annotated` type a command uses as a parameter's annotation, so the flag name, help
text and completion are the same everywhere. Choices are enums, so `--help` and shell
completion list them. Defaults that come from the recipe are None here and say so in the help.
"""

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from dlcli.cli import complete

RECIPE_DEFAULT = "the recipe's default (see dlcli show RECIPE)"


class StrategyName(str, Enum):
    auto = "auto"
    default = "default"
    one_device = "one-device"
    mirrored = "mirrored"
    multi_worker = "multi-worker"
    tpu = "tpu"


class Precision(str, Enum):
    auto = "auto"
    float32 = "float32"
    mixed_float16 = "mixed_float16"
    mixed_bfloat16 = "mixed_bfloat16"


Recipe = Annotated[str, typer.Argument(help="Recipe name (see `dlcli list`).", autocompletion=complete.recipes)]
RunDir = Annotated[Path, typer.Argument(help="A run folder written by `dlcli train`.")]
Dataset = Annotated[
    str | None,
    typer.Option(help=f"Dataset name \\[default: {RECIPE_DEFAULT}].", autocompletion=complete.datasets, show_default=False),
]
Data = Annotated[
    str | None,
    typer.Option("--data", help="Local data: a file or folder, which wins over --dataset (see `dlcli data info PATH`).", show_default=False),
]
DataDir = Annotated[
    str | None,
    typer.Option(help="tensorflow-datasets data dir with prepared data \\[default: $TFDS_DATA_DIR or ~/tensorflow_datasets].", show_default=False),
]
BatchSize = Annotated[int | None, typer.Option(help=f"Global batch size, split across replicas \\[default: {RECIPE_DEFAULT}].", show_default=False)]
Json = Annotated[bool, typer.Option("--json", help="Print JSON on stdout (progress and tables go to stderr).")]
Unsafe = Annotated[bool, typer.Option(help="Run models that contain code: .keras files with Lambda layers, SavedModels, .tflite, .onnx and OpenVINO files you did not export with dlcli. Only for files you trust.")]
Overwrite = Annotated[bool, typer.Option(help="Replace what is already at the output.")]


def output(help_text, default_text):
    """The one output flag, `-o/--output`, worded for each command."""
    return Annotated[Path | None, typer.Option("--output", "-o", help=f"{help_text} \\[default: {default_text}].", show_default=False)]


TrainOutput = output("Run folder", "runs/RECIPE-TIMESTAMP, or $AIP_MODEL_DIR on Vertex AI")
ExportOutput = output("Where to write the export", "RUN_DIR/export/model.keras, savedmodel, model.tflite, model.onnx or openvino")
PredictOutput = output("Folder for files that predictions write (autoencoder reconstructions)", "predictions")
