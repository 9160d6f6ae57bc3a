"""Using a trained model: find a run or an exported artifact, load it, read inputs, describe outputs.

A run folder holds config.json and model.keras. `dlcli export` writes its artifacts with a copy
of config.json (inside a SavedModel folder as dlcli.json, beside a file as FILE.json), so an
exported model can be used without the run folder.
"""

from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError
from dlcli.core.lazy import tf
from dlcli.data.sources.image_folder import EXTENSIONS as IMAGE_SUFFIXES
from dlcli.models import trust
from dlcli.models.safe_model import load_keras
from dlcli.runs import rundir
from dlcli.runs.record import Run, RunRecord


def sidecar(artifact):
    """Where `dlcli export` keeps the run's config for an artifact."""
    artifact = Path(artifact)
    return artifact / "dlcli.json" if artifact.is_dir() else artifact.with_name(artifact.name + ".json")


SUFFIX_KINDS = {".keras": "keras", ".tflite": "litert", ".onnx": "onnx"}
KIND_NAMES = {"savedmodel": "a SavedModel", "litert": "a LiteRT model", "onnx": "an ONNX model", "openvino": "an OpenVINO model"}


def locate(path):
    """(run record, kind, artifact path) for a run folder, a .keras/.tflite/.onnx file, a
    SavedModel folder or an OpenVINO folder (or its model.xml)."""
    path = Path(path)
    if path.is_dir() and (path / "config.json").is_file() and (path / "model.keras").is_file():
        run = Run(path)
        return run.record, "keras", run.model_path
    if path.is_file() and path.suffix == ".xml":
        path = path.parent  # dlcli's OpenVINO export is a folder: model.xml, model.bin, dlcli.json
    if path.is_dir() and (path / "saved_model.pb").is_file():
        kind = "savedmodel"
    elif path.is_dir() and (path / "model.xml").is_file():
        kind = "openvino"
    elif path.is_file() and path.suffix in SUFFIX_KINDS:
        kind = SUFFIX_KINDS[path.suffix]
    elif not path.exists():
        raise DlcliError(f"not found: {path}")
    else:
        raise DlcliError(
            f"{path} is neither a run folder, a .keras, .tflite or .onnx file, nor a SavedModel or OpenVINO folder."
        )
    candidates = [sidecar(path), *(parent / "config.json" for parent in path.parents)]
    for candidate in candidates:
        if candidate.is_file():
            return RunRecord.read(candidate), kind, path
    raise DlcliError(f"{path} has no dlcli.json beside it: export it with `dlcli export RUN_DIR`.")


def first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else ""


def export_info(path):
    """The "export" block of an artifact's sidecar ({} when it has none or cannot be read)."""
    try:
        info = rundir.read_json(sidecar(path)).get("export")
    except (DlcliError, AttributeError):
        return {}
    return info if isinstance(info, dict) else {}


def check_trusted(kind, path, info):
    """An exported graph runs as code: only this user's own signed export runs without
    --unsafe (dlcli/models/trust.py says how that is decided); the text settings are signed with it."""
    extra = {key: info[key] for key in ("text_vectorization",) if key in info}
    if not trust.is_own_export(path, info.get("signature"), extra):
        raise DlcliError(
            f"{path} is {KIND_NAMES[kind]} that this user did not export with dlcli (or it changed since); its graph runs as code. "
            "Pass --unsafe only if you trust where it came from."
        )


def predictor(kind, path, unsafe=False, model=None):
    """A function from a batch of raw inputs (numpy) to the model's outputs (numpy); `model`
    is an already loaded Keras model (kind "keras")."""
    from dlcli.models import exports

    if kind == "keras":
        return exports.keras_runner(model or load_keras(path, unsafe))
    info = export_info(path)
    if not unsafe:
        check_trusted(kind, path, info)
    return exports.runner(kind, path, info)


# ## Images in, classes out: what the image recipes share


def read_images(record, inputs):
    """(batch, names): the image files `inputs` as a uint8 batch shaped like the model's input,
    converted by the same function that decoded the training images (`image_folder.decoder`):
    any size, mode and format it reads. Files that are not images are refused."""
    from dlcli.data.sources import image_folder

    decode = image_folder.decoder(tuple(record.data.input_shape), record.config.get("resize", "stretch"))
    images = []
    for name in inputs:
        path = Path(name)
        if not path.is_file():
            raise DlcliError(f"input image not found: {path}")
        why = image_folder.check_image(path)  # header, pixel budget and completeness, before decoding
        if why is not None:
            raise image_folder.bad_image_error(path, why, "use another file")
        try:
            images.append(decode(tf.constant(str(path))).numpy())
        except Exception:  # TensorFlow's and Pillow's decoders raise many kinds
            raise DlcliError(f"{path} is not an image this model can read ({', '.join(sorted(IMAGE_SUFFIXES))}).") from None
    return np.stack(images), list(inputs)


def classify(record, outputs, names, context):
    """One row per input: the top class, its probability, and the top-k classes."""
    classes = record.data.class_names or [str(i) for i in range(outputs.shape[-1])]
    probabilities = tf.nn.softmax(outputs.astype(np.float32), axis=-1).numpy()
    rows = []
    for name, p in zip(names, probabilities):
        order = np.argsort(-p)[: context["top_k"]]
        rows.append({
            "input": str(name),
            "class": classes[order[0]],
            "probability": round(float(p[order[0]]), 4),
            "top_k": [{"class": classes[i], "probability": round(float(p[i]), 4)} for i in order],
        })
    return rows


def csv_rows(path, columns):
    """The named columns of a CSV file as float32 rows, for models that read tables."""
    from dlcli.data.sources import csv_table

    values, dropped = csv_table.numeric(csv_table.load(path, None), columns)
    if dropped:
        raise DlcliError(f"{path}: {dropped} row(s) have missing values; predictions need complete rows.")
    return values.astype(np.float32)
