"""The served model: what a request's instances become before the model call, and what the
model's outputs become after it.

`resolve` does every check that needs no TensorFlow before the port opens (the path, the run
record, the recipe, an export's signature, a .keras file's declared size), so a model that cannot
be served is one line and exit 2 before anything listens. `Served.load` then loads it as `dlcli
predict` does (Keras safe mode; an export only when signed by this user, else `--unsafe`).

Instances are read by the recipe's `read_instance` hook: the function `dlcli predict` reads a
file with, given the bytes a client sent ({"b64": ...}), a text or a table row. Lists of numbers
shaped like the model's input are taken as they are (raw arrays). Outputs become the rows
`dlcli predict --json` prints, without its "input" key (the client knows what it sent).
"""

import base64
import binascii
import json
import zipfile
from dataclasses import dataclass, field

import numpy as np

from dlcli.core.errors import DlcliError, json_type
from dlcli.models import predict, safe_model
from dlcli.runs import remote
from dlcli.training import registry

# Vertex AI refuses prediction requests over 1.5 MB; the server refuses them the same way.
MAX_BODY_BYTES = 1_572_864
# Raw arrays: the dtype each kind of model input is read as (text is sent as strings).
RAW_DTYPES = {"images": np.uint8, "audio": np.float32, "table": np.float32, "series": np.float32, "table cells": object}
TF_DTYPES = {np.uint8: "DT_UINT8", np.float32: "DT_FLOAT", object: "DT_STRING"}
BODY_KEYS = ("instances", "inputs", "parameters", "signature_name")
PARAMETERS = ("top_k",)


class RequestError(Exception):
    """A request the server answers with a JSON error and this HTTP status (never a traceback)."""

    def __init__(self, status, message, close=False):
        super().__init__(message)
        self.status, self.message, self.close = status, message, close


@dataclass
class Parsed:
    """A predict request, read: its examples (arrays, or image files decoded with the rest of
    the batch they join: predict.ImageBytes), and how to answer it."""

    examples: list
    names: list
    top_k: int
    key: str  # "predictions" (row format, "instances") or "outputs" (columnar, "inputs")
    batch: np.ndarray = None  # the examples as the model read them, once computed


@dataclass
class Served:
    name: str
    record: object
    kind: str  # keras, savedmodel, litert, onnx, openvino
    artifact: object
    recipe: object
    local: object = None  # the run folder or export as given (a gs:// one: its downloaded copy)
    unsafe: bool = False
    top_k: int = 3
    max_batch: int = 64
    runner: object = field(default=None, repr=False)
    outputs: list = field(default_factory=list)  # the keys of a prediction, known once loaded

    # ## Loading

    def load(self):
        """Loads the model (TensorFlow starts here) and runs it once on a blank example, so that
        the first request does not pay for tracing and a model that cannot run fails now."""
        self.runner = predict.predictor(self.kind, self.artifact, self.unsafe, compiled=True)
        blank = self.blank_example()
        if self.record.data.kind == "images" and hasattr(self.recipe, "read_instance"):  # trace the image decoders too (alone, batched)
            from dlcli.core.lazy import tf

            image = self.recipe.read_instance(self.record, tf.io.encode_png(blank if blank.ndim == 3 else blank[..., None]).numpy())
            self.prepare([[image]])
            self.prepare([[image], [image]])
        outputs = self.runner(blank[None])
        rows = self.recipe.describe(self.record, outputs, ["blank"], {"batch": blank[None], "top_k": self.top_k, "out_dir": None})
        self.outputs = [key for key in rows[0] if key != "input"]

    def blank_example(self):
        data = self.record.data
        if data.kind == "text":
            return np.array("", object)
        dtype = RAW_DTYPES.get(data.kind, np.float32)
        if dtype is object:  # raw cells: blanks, which the model imputes
            return np.full(tuple(data.input_shape), "", object)
        return np.zeros(tuple(data.input_shape), dtype)

    # ## A request's body to a batch

    def parse(self, body):
        """A predict request's body (bytes) as a `Parsed` batch, or RequestError(400)."""
        try:
            payload = json.loads(body, parse_constant=refuse_constant)
        except RecursionError:
            raise RequestError(400, "the body nests arrays or objects too deeply.") from None
        except UnicodeDecodeError:
            raise RequestError(400, "the body is not UTF-8 text.") from None
        except ValueError as e:  # JSONDecodeError, and NaN/Infinity (refuse_constant)
            raise RequestError(400, f"the body is not valid JSON: {e}.") from None
        if not isinstance(payload, dict):
            raise RequestError(400, f'the body must be a JSON object such as {{"instances": [...]}}, not a JSON {json_type(payload)}.')
        unknown = [key for key in payload if key not in BODY_KEYS]
        if unknown:
            raise RequestError(400, f"unknown key(s) {', '.join(repr(k[:40]) for k in unknown[:5])} in the body; it may hold {', '.join(BODY_KEYS)}.")
        if ("instances" in payload) == ("inputs" in payload):
            raise RequestError(400, 'the body must hold either "instances" (a list, one item per example) or "inputs", not both or neither.')
        if payload.get("signature_name", "serving_default") not in ("serving_default", ""):
            raise RequestError(400, f"unknown signature_name {str(payload['signature_name'])[:40]!r}; this model has serving_default only.")
        top_k = self.parameters(payload.get("parameters"))
        key = "predictions" if "instances" in payload else "outputs"
        instances = payload["instances"] if key == "predictions" else self.columns(payload["inputs"])
        if not isinstance(instances, list) or not instances:
            raise RequestError(400, f'"instances" must be a non-empty list, one item per example; received a JSON {json_type(instances)}{" (empty)" if instances == [] else ""}.')
        if len(instances) > self.max_batch:
            raise RequestError(400, f"too many instances: {len(instances)}; at most {self.max_batch} per request (--max-batch).")
        examples = [self.example(value, i) for i, value in enumerate(instances)]
        if len({example.shape for example in examples if isinstance(example, np.ndarray)}) > 1:  # decoders always give the model's shape
            raise RequestError(400, "the instances do not all have the model's input shape.")
        return Parsed(examples, [f"instance {i}" for i in range(len(examples))], top_k, key)

    def prepare(self, requests):
        """One model input batch from the examples of several requests (a list of each one's
        examples), the image files among them decoded in one call. DlcliError names the
        instance that cannot be decoded (the batcher then prepares each request alone)."""
        examples = [example for request in requests for example in request]
        names = [f"instance {i}: this file" for request in requests for i in range(len(request))]
        return predict.stack_examples(self.record, examples, names)

    def parameters(self, parameters):
        """top_k from Vertex AI's "parameters" object (the server's --top-k when absent)."""
        if parameters is None:
            return self.top_k
        if not isinstance(parameters, dict):
            raise RequestError(400, f'"parameters" must be a JSON object such as {{"top_k": 3}}, not a JSON {json_type(parameters)}.')
        unknown = [key for key in parameters if key not in PARAMETERS]
        if unknown:
            raise RequestError(400, f"unknown parameter(s) {', '.join(repr(k[:40]) for k in unknown[:5])}; known: {', '.join(PARAMETERS)}.")
        top_k = parameters.get("top_k", self.top_k)
        if not isinstance(top_k, int) or isinstance(top_k, bool) or not 1 <= top_k <= 1000:
            raise RequestError(400, f"top_k must be an integer from 1 to 1000. Received: top_k={str(top_k)[:40]}")
        return top_k

    def columns(self, inputs):
        """TensorFlow Serving's columnar "inputs" as a list of instances: a list is the batch; an
        object of one named input is that input's list; for a table, an object of columns
        (each a list over the batch) gives one row per position."""
        if isinstance(inputs, dict) and self.record.data.kind in ("table", "table cells") and inputs:
            lengths = {len(v) if isinstance(v, list) else -1 for v in inputs.values()}
            if len(lengths) != 1 or -1 in lengths:
                raise RequestError(400, '"inputs" of a table is an object of columns, each a list of the same length.')
            return [dict(zip(inputs, values)) for values in zip(*inputs.values())]
        if isinstance(inputs, dict) and len(inputs) == 1:
            return next(iter(inputs.values()))
        return inputs

    def example(self, value, i):
        """One instance as one example of the model's raw input (RequestError 400 naming it)."""
        try:
            value = self.unwrap(value)
            if isinstance(value, (bytes, str, dict)):
                read = getattr(self.recipe, "read_instance", None)
                if read is None:
                    raise DlcliError(f"send a list of numbers shaped {list(self.record.data.input_shape)}: this model takes raw arrays only.")
                example = read(self.record, value)
                if isinstance(example, predict.ImageBytes) and self.max_batch == 1:  # no batch to decode it with: now, in the decode pool
                    return predict.decode_images(self.record, [example], ["this file"])[0]
                return example if isinstance(example, predict.ImageBytes) else np.asarray(example)
            if isinstance(value, (list, int, float)) and not isinstance(value, bool):
                return self.raw(value)
            raise DlcliError(f"a JSON {json_type(value)} is not an input this model reads ({self.instance_help()}).")
        except DlcliError as e:
            raise RequestError(400, f"instance {i}: {e}") from None

    def unwrap(self, value):
        """{"b64": "..."} as bytes; a one-key object around an input ({"image_bytes": {"b64": ...}},
        TensorFlow Serving's named input) as that input, except for tables, whose rows are objects."""
        if isinstance(value, dict) and len(value) == 1 and "b64" not in value and self.record.data.kind not in ("table", "table cells"):
            value = next(iter(value.values()))
        if isinstance(value, dict) and "b64" in value:
            if len(value) != 1 or not isinstance(value["b64"], str):
                raise DlcliError('a binary value is {"b64": "<base64 string>"} and nothing else.')
            try:
                return base64.b64decode("".join(value["b64"].split()), validate=True)
            except (binascii.Error, ValueError):
                raise DlcliError('"b64" does not hold valid base64 (standard alphabet, = padding).') from None
        return value

    def raw(self, value):
        """A list of numbers (or, for raw table cells, of cells) shaped like the model's input."""
        data = self.record.data
        dtype = RAW_DTYPES.get(data.kind)
        shape = tuple(data.input_shape)
        if dtype is None:
            raise DlcliError(f"this model reads {data.kind or 'its own inputs'}: {self.instance_help()}.")
        if dtype is object:  # raw table cells, in the model's column order: read as a row object
            if not isinstance(value, list) or len(value) != len(data.feature_names):
                raise DlcliError(f"a row is a list of {len(data.feature_names)} cells ({', '.join(data.feature_names)}) or an object of them.")
            return np.asarray(self.recipe.read_instance(self.record, dict(zip(data.feature_names, value))))
        try:
            array = np.asarray(value)
        except (ValueError, TypeError, OverflowError):  # ragged lists
            array = None
        if array is None or array.dtype.kind not in "iuf":  # strings, booleans, nulls, ints past 64 bits
            raise DlcliError(f"not an array of numbers shaped {list(shape)} (nested lists of equal length).")
        array = array.astype(np.float64)
        if array.shape != shape and not (shape[-1] == 1 and array.shape == shape[:-1]):
            raise DlcliError(f"an array shaped {list(array.shape)}; the model reads {list(shape)} per instance.")
        if not np.isfinite(array).all():
            raise DlcliError("the array holds a number out of range (finite numbers only).")
        if dtype is np.uint8 and (array.min() < 0 or array.max() > 255 or (array != np.round(array)).any()):
            raise DlcliError("pixel values are integers from 0 to 255 (or send the image file as {\"b64\": ...}).")
        return array.reshape(shape).astype(dtype)

    def instance_help(self):
        kind = self.record.data.kind
        shape = list(self.record.data.input_shape)
        return {
            "images": f'an image file as {{"b64": "..."}} (PNG, JPEG, BMP, GIF, WebP, TIFF; any size), or its pixels as a list shaped {shape}',
            "audio": f'a .wav file as {{"b64": "..."}}, or the waveform as a list of {shape[0]} samples',
            "text": 'a text as a JSON string, or a text file as {"b64": "..."}',
            "table": f"a row as an object of its columns ({', '.join(self.record.data.feature_names or [])}), or a list of their values",
            "table cells": f"a row as an object of its columns ({', '.join(self.record.data.feature_names or [])}); null or \"\" for a blank",
            "series": f"the last values of the series as a list shaped {shape}",
        }.get(kind, f"a list shaped {shape}")

    # ## Outputs to the answer

    def answer(self, outputs, parsed):
        """The JSON answer (bytes): one row per instance, as `dlcli predict --json` prints it."""
        context = {"batch": parsed.batch, "top_k": parsed.top_k, "out_dir": None}
        rows = self.recipe.describe(self.record, outputs, parsed.names, context)
        for row in rows:
            row.pop("input", None)
        try:
            return json.dumps({parsed.key: rows}, allow_nan=False, separators=(",", ":")).encode()
        except ValueError:  # NaN or infinity: a model fed extreme (but finite) values
            raise RequestError(400, "the model's output for this input is not a finite number; check the input values.") from None

    # ## What GET /v1/models/NAME and .../metadata answer

    def status(self, state):
        return {"model_version_status": [{"version": "1", "state": state, "status": {"error_code": "OK", "error_message": ""}}]}

    def metadata(self):
        data = self.record.data
        dtype = object if data.kind == "text" else RAW_DTYPES.get(data.kind, np.float32)
        shape = [] if data.kind == "text" else list(data.input_shape)
        dims = [{"size": str(size), "name": ""} for size in [-1, *shape]]
        tensor = {"dtype": TF_DTYPES[dtype], "tensor_shape": {"dim": dims, "unknown_rank": False}, "name": "instances"}
        signature = {"inputs": {"instances": tensor}, "outputs": {key: {"name": key} for key in self.outputs},
                     "method_name": "tensorflow/serving/predict"}
        return {
            "model_spec": {"name": self.name, "signature_name": "", "version": "1"},
            "metadata": {"signature_def": {"signature_def": {"serving_default": signature}}},
            "dlcli": {
                "recipe": self.record.recipe, "format": self.kind, "input_kind": data.kind, "input_shape": list(data.input_shape),
                "instance": self.instance_help(), "class_names": data.class_names, "feature_names": data.feature_names,
                "target": data.target, "outputs": self.outputs, "top_k": self.top_k, "max_instances": self.max_batch,
                "max_body_bytes": MAX_BODY_BYTES,
            },
        }


def refuse_constant(name):
    raise ValueError(f"{name} is not JSON (only finite numbers are)")


def resolve(location, name=None, unsafe=False, top_k=3, max_batch=64):
    """The model to serve, checked without TensorFlow where it can be: a run folder or an
    export (gs:// downloaded first), its record and recipe, an export's signature (unless
    `unsafe`) and a .keras file's declared size. Raises DlcliError (one line) otherwise."""
    local = remote.local_run(location, what="model")
    record, kind, artifact = predict.locate(local)
    recipe = registry.load(record.recipe)
    if kind == "keras":
        if not zipfile.is_zipfile(artifact):  # truncated or not Keras' format: Keras would say so only after TensorFlow starts
            raise DlcliError(f"cannot load {artifact}: it is not a .keras archive (a zip file); damaged, or not a Keras model.")
        safe_model.check_keras_file(artifact)
    elif not unsafe:
        predict.check_trusted(kind, artifact, predict.export_info(artifact))
    if not hasattr(recipe, "read_instance") and record.data.kind not in RAW_DTYPES:
        raise DlcliError(f"recipe '{record.recipe}' reads {record.data.kind or 'inputs'} that dlcli serve cannot take (no read_instance hook).")
    return Served(name=name or record.recipe, record=record, kind=kind, artifact=artifact, recipe=recipe, local=local,
                  unsafe=unsafe, top_k=top_k, max_batch=max_batch)
