"""`dlcli export RUN_DIR --format keras|savedmodel|tflite`: ship a trained model."""

import shutil
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import typer

from dlcli import options, predict, remote, rundir, trust, ui
from dlcli.errors import DlcliError
from dlcli.run import Run

DEFAULT_NAMES = {"keras": "model.keras", "savedmodel": "savedmodel", "tflite": "model.tflite"}


def export_command(
    run_dir: options.RunDir,
    format: Annotated[Literal["keras", "savedmodel", "tflite"], typer.Option(help="keras, savedmodel (TF Serving) or tflite.")] = "savedmodel",
    output: options.ExportOutput = None,
    overwrite: options.Overwrite = False,
    unsafe: options.Unsafe = False,
):
    """Export a run's model as .keras, a SavedModel (serving signature on raw inputs) or TFLite."""
    if remote.is_remote(output):
        raise DlcliError(f"--output {remote.url(output)}: export into the gs:// run folder itself (the default, RUN_DIR/export/...) or to a local path.")
    run_dir = remote.local_run(run_dir)  # a gs:// run: its local copy; the export goes back up with it
    run = Run(run_dir)
    target = Path(output) if output else run_dir / "export" / DEFAULT_NAMES[format]
    check_target(target, run.path, overwrite)
    model = predict.load_keras(run.model_path, unsafe)
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".export-") as scratch:
        staged = Path(scratch) / target.name
        if format == "keras":
            shutil.copyfile(run.model_path, staged)
        else:
            savedmodel = Path(scratch) / "savedmodel"
            model.export(str(savedmodel), format="tf_saved_model", verbose=False)
            if format == "savedmodel":
                savedmodel.rename(staged)
            else:
                staged.write_bytes(to_tflite(savedmodel))
        # The sidecar makes the export usable alone, marks it as dlcli's (what --overwrite may
        # replace) and signs it (what predict runs without --unsafe: see dlcli/trust.py).
        rundir.write_json(predict.sidecar(staged), {**run.record.to_dict(), "export": {"format": format, "signature": trust.sign(staged)}})
        # Replace the old export only once the new one is complete.
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
        staged.rename(target)
        if format != "savedmodel":
            predict.sidecar(staged).replace(predict.sidecar(target))
    remote.push(run_dir)
    ui.console.print(f"exported {format} to {target}")


def is_dlcli_export(path):
    """Whether `path` is something `dlcli export` wrote: it has the sidecar export writes."""
    sidecar = predict.sidecar(path)
    return sidecar.is_file() and (path.is_file() or (path / "saved_model.pb").is_file())


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


def to_tflite(savedmodel):
    from dlcli.lazy import tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(savedmodel))
    # Text models keep TensorFlow's string ops and LSTMs their TensorList ops: allow TF ops.
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    converter._experimental_lower_tensor_list_ops = False
    return converter.convert()
