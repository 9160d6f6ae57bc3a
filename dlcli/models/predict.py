"""Using a trained model: find a run or an exported artifact, load it, read inputs, describe outputs.

A run folder holds config.json and model.keras. `dlcli export` writes its artifacts with a copy
of config.json (inside a SavedModel folder as dlcli.json, beside a file as FILE.json), so an
exported model can be used without the run folder.
"""

import functools
import math
from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError, json_type
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


def predictor(kind, path, unsafe=False, model=None, compiled=False):
    """A function from a batch of raw inputs (numpy) to the model's outputs (numpy); `model`
    is an already loaded Keras model (kind "keras"). `compiled`: a Keras model runs as one traced
    function of any batch size (about 1 ms a call where `model.predict` takes 60: what `dlcli
    serve` calls once per batch), not through `model.predict`."""
    from dlcli.models import exports

    if kind == "keras":
        model = model or load_keras(path, unsafe)
        return exports.compiled_runner(model) if compiled else exports.keras_runner(model)
    info = export_info(path)
    if not unsafe:
        check_trusted(kind, path, info)
    return exports.runner(kind, path, info)


# ## Images in, classes out: what the image recipes share


def read_images(record, inputs):
    """(batch, names): the image files `inputs` as a uint8 batch shaped like the model's input,
    converted by the same function that decoded the training images (`image_folder.decoder`):
    any size, mode and format it reads, 256 files to a call of it. Files that are not images are refused."""
    images, names = [], [Path(name) for name in inputs]
    for path in names:
        if not path.is_file():
            raise DlcliError(f"input image not found: {path}")
        images.append(checked_image(path, path))
    batch = np.concatenate([decode_images(record, images[i : i + 256], names[i : i + 256]) for i in range(0, len(images), 256)])
    return batch, list(inputs)


def checked_image(source, name):
    """`source` (a file, or an image file's bytes) as `ImageBytes` once its header, pixel
    budget and completeness are checked; `name` is what the refusal calls it."""
    from dlcli.data.sources import image_folder

    why = image_folder.check_image(source)
    if why is not None:
        raise image_folder.bad_image_error(name, why, "use another file" if isinstance(source, Path) else "send another")
    return ImageBytes(source if isinstance(source, bytes) else Path(source).read_bytes())


class ImageBytes(bytes):
    """An image file's contents, checked by `checked_image` and not decoded yet: `dlcli serve`
    and `dlcli predict` decode a batch's images together (`decode_images`), in one call."""


def decode_images(record, images, names):
    """`images` (ImageBytes) as one uint8 batch, converted by the function that decoded the
    training images: in one call for a batch (0.05 ms an image at 64, on a 2-core Zen 4 VM),
    alone for one (0.4 ms; a one-image batch would cost 0.5). A batch that fails is decoded
    image by image, so that the refusal names the image (`names`) that is not one."""
    shape, resize = tuple(record.data.input_shape), record.config.get("resize", "stretch")
    try:
        if len(images) == 1:
            return image_decoder(shape, resize)(tf.constant(images[0]))[None].numpy()
        return batch_image_decoder(shape, resize)(tf.constant(list(images))).numpy()
    except Exception:  # TensorFlow's and Pillow's decoders raise many kinds
        if len(images) > 1:
            return np.concatenate([decode_images(record, [image], [name]) for image, name in zip(images, names)])
        raise DlcliError(f"{names[0]} is not an image this model can read ({', '.join(sorted(IMAGE_SUFFIXES))}).") from None


@functools.lru_cache(maxsize=8)
def image_decoder(shape, resize):
    """`image_folder.contents_decoder` for one model's input, traced once (a call then costs
    about 0.3 ms, not the 3 ms of its ops run one by one)."""
    from dlcli.data.sources import image_folder

    return tf.function(image_folder.contents_decoder(shape, resize), input_signature=[tf.TensorSpec([], tf.string)])


@functools.lru_cache(maxsize=8)
def batch_image_decoder(shape, resize):
    """`image_decoder` mapped over a batch of image files in one traced call (the same ops,
    image by image: the pixels are those of `image_decoder`, to the bit)."""
    from dlcli.data.sources import image_folder

    decode = image_folder.contents_decoder(shape, resize)
    signature = tf.TensorSpec(shape, tf.uint8)
    return tf.function(lambda contents: tf.map_fn(decode, contents, fn_output_signature=signature),
                       input_signature=[tf.TensorSpec([None], tf.string)])


def stack_examples(record, examples, names):
    """The model's input batch from `examples`: arrays, and ImageBytes decoded together."""
    encoded = [i for i, example in enumerate(examples) if isinstance(example, ImageBytes)]
    if not encoded:
        return np.stack(examples)
    decoded = decode_images(record, [examples[i] for i in encoded], [names[i] for i in encoded])
    examples = list(examples)
    for i, image in zip(encoded, decoded):
        examples[i] = image
    return np.stack(examples)


def binary(value, what):
    """`value` as the bytes of a file that a client sent ({"b64": ...} decoded by the server), or
    a one-line refusal saying how `what` is sent."""
    if not isinstance(value, bytes):
        raise DlcliError(f'send {what} as {{"b64": "..."}} (its file, base64-encoded), not as a JSON {json_type(value)}.')
    return value


def classify(record, outputs, names, context):
    """One row per input: the top class, its probability, and the top-k classes."""
    classes = record.data.class_names or [str(i) for i in range(outputs.shape[-1])]
    logits = outputs.astype(np.float64)  # the softmax in numpy: 10 us a call, where a TensorFlow op costs 100 (dlcli serve calls it per request)
    exp = np.exp(logits - logits.max(axis=-1, keepdims=True))
    probabilities = (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
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

    return table_rows(csv_table.load(path, None), columns)


def table_rows(table, columns):
    """The named columns of a table (`dlcli.data.splits.Table`: a CSV file, or `json_row`'s row)
    as float32 rows; a missing value is refused."""
    from dlcli.data.sources import csv_table

    values, dropped = csv_table.numeric(table, columns)
    if dropped:
        raise DlcliError(f"{table.path}: {dropped} row(s) have missing values; predictions need complete rows.")
    return values.astype(np.float32)


def json_row(row, columns, where="the row"):
    """A table row sent as a JSON object ({column: value}) as a one-row `Table` of CSV cells, so
    that it is read as the same row of a CSV file would be: null and "" are blank cells, numbers
    their text, strings as they are. Every column the model reads must be there, and no other."""
    from dlcli.data.splits import Table

    if not isinstance(row, dict):
        raise DlcliError(f"send a table row as a JSON object of its columns ({', '.join(columns)}), not as a JSON {json_type(row)}.")
    missing, unknown = [c for c in columns if c not in row], [c for c in row if c not in columns]
    if missing or unknown:
        what = "; ".join(part for part in (
            f"it lacks {', '.join(map(repr, missing))}" if missing else "",
            f"it has {', '.join(repr(c[:40]) for c in unknown[:5])}, which the model does not read" if unknown else "",
        ) if part)
        raise DlcliError(f"{where}: {what}. The model reads the columns {', '.join(columns)}.")
    cells = []
    for column in columns:
        value = row[column]
        if value is None:
            cells.append("")
        elif isinstance(value, str):
            cells.append(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and finite(value):
            cells.append(repr(value))
        else:
            raise DlcliError(f"{where}: column '{column}' holds a JSON {json_type(value)} ({str(value)[:40]}); send a number, a string or null.")
    return Table(path=where, header=list(columns), rows=[cells], description=where)


def finite(number):
    try:
        return math.isfinite(number)
    except OverflowError:  # an int beyond a float's range
        return False
