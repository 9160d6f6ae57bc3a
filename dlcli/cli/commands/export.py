"""`dlcli export RUN_DIR --format keras|savedmodel|litert|onnx|openvino`: ship a trained model,
checked by running it on real inputs in its own runtime before it is reported."""

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer

from dlcli import data
from dlcli.cli import options
from dlcli.core import ui
from dlcli.core.errors import DlcliError
from dlcli.models import config as config_lib
from dlcli.models import exports, predict, safe_model, trust
from dlcli.runs import remote, rundir
from dlcli.runs.record import Run
from dlcli.training import registry

CHECK_EXAMPLES = 8  # test inputs each export is checked on


def export_command(
    run_dir: options.RunDir,
    format: Annotated[
        Literal["keras", "savedmodel", "litert", "tflite", "onnx", "openvino"],
        typer.Option(help="keras, savedmodel (TF Serving), litert (= tflite), onnx or openvino; the last three need the export extra."),
    ] = "savedmodel",
    output: options.ExportOutput = None,
    overwrite: options.Overwrite = False,
    unsafe: options.Unsafe = False,
):
    """Export a run's model, then run the export on a few of the run's test inputs in its own
    runtime and compare with the Keras model: it is kept only when they agree."""
    name = exports.canonical(format)
    exports.require(name)
    if remote.is_remote(output):
        raise DlcliError(f"--output {remote.url(output)}: export into the gs:// run folder itself (the default, RUN_DIR/export/...) or to a local path.")
    run_dir = remote.local_run(run_dir)  # a gs:// run: its local copy; the export goes back up with it
    run = Run(run_dir)
    target = Path(output) if output else run_dir / rundir.EXPORTS / exports.FORMATS[name].default_name
    check_target(target, run.path, overwrite)
    trained = safe_model.load_keras(run.model_path, unsafe)
    model = exports.float32_model(trained)  # what is converted, and what the export is checked against
    inputs = check_inputs(run) if name != "keras" else None
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as scratch:
        staged = Path(scratch) / target.name
        if name == "keras":
            shutil.copyfile(run.model_path, staged)
            extra = {}
        else:
            extra = exports.write(name, model, staged)
        # The sidecar makes the export usable alone, marks it as dlcli's (what --overwrite may
        # replace) and signs it with what predict reads from it (see dlcli/models/trust.py).
        export = {"format": name, **extra, "signature": trust.sign(staged, extra)}
        rundir.write_json(predict.sidecar(staged), {**run.record.to_dict(), "export": export})
        if inputs is not None:
            difference, tolerance = check(model, name, staged, inputs)
            export["check"] = {"examples": len(inputs), "max_abs_difference": difference, "tolerance": tolerance}
            rundir.write_json(predict.sidecar(staged), {**run.record.to_dict(), "export": export})
        # Replace the old export only once the new one is complete and checked.
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        staged.rename(target)
        if not staged.is_dir() and predict.sidecar(staged).exists():
            predict.sidecar(staged).replace(predict.sidecar(target))
    remote.push(run_dir)
    if inputs is not None:
        ui.console.print(
            f"checked {name} on {len(inputs)} test inputs: largest difference from the Keras model {difference:.2e} "
            f"(tolerance {tolerance:.1e})"
        )
    if model is not trained:
        ui.console.print(
            f"the run computes in {trained.dtype_policy.name}, the export in float32 with the same weights: "
            "its outputs differ from the run's by bf16's rounding (about 3 significant digits)"
        )
    ui.console.print(f"exported {name} to {target}")


def check_inputs(run):
    """A few raw inputs from the run's test split, as the run's model.keras reads them."""
    record = run.record
    module = registry.load(record.recipe)
    config = config_lib.resolve(module.Config, record.recipe, toml_values=record.config)
    try:
        splits = module.load_data(config)
    except DlcliError as e:
        raise DlcliError(f"cannot read the run's data to check the export on: {e}") from None
    inputs = data.arrays(splits.test, CHECK_EXAMPLES)[0]
    if not len(inputs):
        raise DlcliError("the run's test split is empty: there is nothing to check the export on.")
    return inputs


def check(model, name, staged, inputs):
    """(largest difference, tolerance) of the export at `staged` against the Keras model on
    `inputs`, through predict's own path (signature check, runtime, text tokenizer)."""
    try:
        export = predict.predictor(name, staged)
    except DlcliError as e:  # converted, but its own runtime cannot load it
        raise DlcliError(f"cannot convert {model.name} to {name}: the export does not run: {e}") from None
    return exports.verify(model, name, export, inputs)


def is_dlcli_export(path):
    """Whether `path` is something `dlcli export` wrote: it has the sidecar export writes."""
    sidecar = predict.sidecar(path)
    return sidecar.is_file() and (path.is_file() or (path / "saved_model.pb").is_file() or (path / "model.xml").is_file())


def check_target(target, run_dir, overwrite):
    """Refuses, before any work, an export that would replace the run itself or files that
    dlcli did not export: --overwrite only ever replaces a previous dlcli export."""
    resolved, run = target.resolve(), run_dir.resolve()
    if resolved == run or run.is_relative_to(resolved) or resolved.is_relative_to(run / "checkpoints"):
        raise DlcliError(f"--output {target} would replace the run folder {run_dir} or its checkpoints; choose another --output.")
    if not target.exists():
        return
    if not overwrite:
        raise DlcliError(f"{target} already exists; pass --overwrite to replace it or choose another --output.")
    if not is_dlcli_export(target):
        raise DlcliError(
            f"{target} holds files that dlcli did not export; --overwrite only replaces a previous dlcli export. Choose another --output."
        )

