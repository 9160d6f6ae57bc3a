"""The export formats: how each is written from a run's Keras model, and how each is run.

One table, `FORMATS`, used by `dlcli export` (write, then check) and `dlcli predict` (run).
Every format takes the same raw inputs as the run's model.keras, with one exception, handled
here and not by the caller: a model that reads strings (lstm, transformer: TextVectorization
then a token model) is exported to LiteRT, ONNX and OpenVINO as its token model with a static
sequence length, since string ops do not run in those runtimes; the vocabulary goes into the
export's sidecar (signed with the artifact, see dlcli/models/trust.py), and `runner` tokenizes the raw
strings with it in TensorFlow before calling the runtime. SavedModels keep the strings inside.

Every format is traced with `training=False`: Keras' own exporters call the model without it,
which leaves augmentation layers (speech's RandomTranslation) active in the exported graph.
"""

import importlib.util
import logging
import os
import shutil
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlcli.core.errors import DlcliError, WriteError
from dlcli.models.safe_model import load_keras
from dlcli.runs.rundir import local_path

EXTRA = 'pip install -e ".[export]" in the dlcli checkout'


@dataclass(frozen=True)
class Format:
    default_name: str  # under RUN_DIR/export/
    modules: tuple = ()  # what its writer and its runtime import
    description: str = ""


FORMATS = {
    "keras": Format("model.keras", description="the .keras file (Keras 3)"),
    "savedmodel": Format("savedmodel", description="TensorFlow SavedModel, serving signature on raw inputs (TF Serving, Vertex AI)"),
    "litert": Format("model.tflite", ("ai_edge_litert",), "LiteRT (TFLite) flatbuffer, builtin ops only, batch of 1"),
    "onnx": Format("model.onnx", ("tf2onnx", "onnx", "onnxruntime"), "ONNX (tf2onnx), run with onnxruntime"),
    "openvino": Format("openvino", ("openvino",), "OpenVINO IR folder (model.xml + model.bin)"),
}
ALIASES = {"tflite": "litert"}
# What the largest difference from the Keras model may be, times max(1, largest |output|):
# fp32 kernels that sum in another order or fuse ops differ by ~1e-6 of the output scale
# (measured: <= 3e-6 on every recipe and format); a conversion that is wrong (a missing
# normalisation, dropout left on, wrong weights) is off by 1e-2 or more.
TOLERANCE = 1e-4


def canonical(name):
    return ALIASES.get(name, name)


def require(name):
    """Raises the one-line error naming the extra when a format's packages are missing."""
    missing = [m for m in FORMATS[canonical(name)].modules if importlib.util.find_spec(m) is None]
    if missing:
        raise DlcliError(f"the {canonical(name)} format needs {', '.join(missing)}, which is not installed: {EXTRA}")


# ## Writing


def split_text_model(model):
    """(TextVectorization, token model) of a string-reading model, or (None, model)."""
    from dlcli.core.lazy import keras

    if model.inputs[0].dtype != "string":
        return None, model
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if len(layers) != 2 or not isinstance(layers[0], keras.layers.TextVectorization) or not isinstance(layers[1], keras.Model):
        raise DlcliError(f"{model.name} reads strings through layers other than TextVectorization; export it as savedmodel.")
    return layers[0], layers[1]


# The TextVectorization settings a sidecar may hold: built-in names only, no callables.
TEXT_SETTINGS = {"standardize": {"lower_and_strip_punctuation", "lower", "strip_punctuation", None}, "split": {"whitespace", "character", None}}


def text_vectorization(layer):
    """What the sidecar keeps of a TextVectorization so predict can tokenize without Keras' file."""
    config = layer.get_config()
    settings = {key: config.get(key) for key in TEXT_SETTINGS}
    if any(value not in TEXT_SETTINGS[key] for key, value in settings.items()) or config.get("output_mode") != "int":
        raise DlcliError("this model's TextVectorization uses custom settings that only the savedmodel format carries; export it as savedmodel.")
    return {
        **settings,
        "ngrams": config.get("ngrams"),
        "output_sequence_length": config["output_sequence_length"],
        "vocabulary": layer.get_vocabulary(include_special_tokens=False),
    }


def vectorizer(settings):
    """A TextVectorization rebuilt from the sidecar's settings (checked against TEXT_SETTINGS)."""
    from dlcli.core.lazy import keras

    if any(settings.get(key) not in allowed for key, allowed in TEXT_SETTINGS.items()):
        raise DlcliError("the export's text settings are not ones dlcli writes; export the run again.")
    return keras.layers.TextVectorization(
        standardize=settings["standardize"], split=settings["split"], ngrams=settings.get("ngrams"),
        output_mode="int", output_sequence_length=int(settings["output_sequence_length"]), vocabulary=list(settings["vocabulary"]),
    )


def float32_model(model):
    """`model` computing in float32, with the same weights: a mixed-precision model (cnn trains
    in mixed_bfloat16 on CPUs with AMX, see strategy.resolve_precision) is rebuilt with each
    mixed layer's policy set to float32. Exports are float32 whatever the training precision:
    LiteRT's builtin ops, ONNX Runtime and OpenVINO reject bf16 casts, and a serving CPU
    without native bf16 would emulate them. Variables are float32 under mixed policies, so
    the weights carry over exactly."""
    from dlcli.core.lazy import keras
    from dlcli.models.layers import all_layers

    if not any(layer.dtype_policy.name.startswith("mixed_") for layer in all_layers(model)):
        return model

    def float32_layer(layer):
        config = layer.get_config()
        if layer.dtype_policy.name.startswith("mixed_"):
            config["dtype"] = "float32"
        return layer.__class__.from_config(config)

    rebuilt = keras.models.clone_model(model, clone_function=float32_layer, recursive=True)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def inference_graph(model, batch_size):
    """`model` as a functional model called with training=False, inputs of a fixed batch size
    (or None) and every other dimension the model's own (static)."""
    from dlcli.core.lazy import keras

    spec = model.inputs[0]
    inputs = keras.Input(batch_shape=(batch_size, *spec.shape[1:]), dtype=spec.dtype, name="inputs")
    return keras.Model(inputs, model(inputs, training=False), name=f"{model.name}_inference")


def input_signature(model):
    from dlcli.core.lazy import tf

    spec = model.inputs[0]
    return [tf.TensorSpec(spec.shape, spec.dtype, name="inputs")]


def write(name, model, target):
    """Writes `model` (a run's raw-input model) as format `name` at `target`; returns the
    sidecar's extra facts (the text vectorization of a string model)."""
    from dlcli.core.lazy import tf

    name = canonical(name)
    target = Path(target)
    if name == "savedmodel":
        inference_graph(model, None).export(str(target), format="tf_saved_model", verbose=False)
        return {}
    text, tokens_model = split_text_model(model)
    extra = {"text_vectorization": text_vectorization(text)} if text is not None else {}
    try:
        if name == "litert":
            # Batch 1 and every other dimension static: recurrent layers' while loops then convert
            # to builtin ops (no TensorList, so no Flex delegate: tensorflow#58668), and the model
            # runs in the plain LiteRT interpreter. Keras' litert export allows TF ops unless told.
            graph = inference_graph(tokens_model, 1)
            staged = target.with_name(target.name + ".staged.tflite")  # Keras wants the suffix; -o may lack it
            graph.export(
                str(staged), format="litert", input_signature=input_signature(graph), verbose=False,
                target_spec={"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]},
            )
            staged.rename(target)
        elif name == "onnx":
            graph = inference_graph(tokens_model, None)
            # tf2onnx logs each graph fix-up it makes, and Keras' numpy-2 patch warns: keep the terminal to ours.
            logging.getLogger("tf2onnx").setLevel(logging.ERROR)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)
                graph.export(str(target), format="onnx", input_signature=input_signature(graph), verbose=False)
        elif name == "openvino":
            graph = inference_graph(tokens_model, None)
            target.mkdir()
            graph.export(str(target / "model.xml"), format="openvino", input_signature=input_signature(graph), verbose=False)
    except Exception as e:  # converters raise their own kinds, with the unconvertible ops in the message
        raise DlcliError(f"cannot convert {model.name} to {name}: {type(e).__name__}: {ops_line(e)}") from None
    return extra


def ops_line(error):
    """The line of a converter's error that names what failed (they put it deep in long messages)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    for line in lines:
        if any(word in line for word in ("No conversion rule", "op requires", "not supported", "No Op registered", "Required inputs", "failed to legalize")):
            return line[:300]
    return lines[0][:300] if lines else ""


# ## Running


def keras_runner(model):
    """A loaded Keras model as a runner: numpy batch in, numpy outputs out."""
    from dlcli.core.lazy import tf

    # Text (object or str arrays, a table's raw cells) goes in as a string tensor.
    as_tensor = lambda x: tf.constant(np.asarray(x).astype(str)) if np.asarray(x).dtype.kind in "OU" and np.ndim(x) > 1 else x
    return lambda x: np.asarray(model.predict(as_tensor(x), verbose=0))


def compiled_runner(model):
    """A loaded Keras model as one traced function of any batch size: `model(x, training=False)`,
    what `model.predict` runs for each batch, without the data pipeline it sets up on every call
    (about 60 ms, against 1 ms for a call of the cnn on one image). Numpy in, numpy out."""
    from dlcli.core.lazy import tf

    source = model.inputs[0]
    signature = tf.TensorSpec([None, *source.shape[1:]], source.dtype)
    call = tf.function(lambda x: model(x, training=False), input_signature=[signature])

    def run(x):
        x = np.asarray(x)
        if x.dtype.kind in "OU":  # texts, a table's raw cells
            return call(tf.constant(x.astype(str))).numpy()
        return call(tf.constant(x.astype(signature.dtype.as_numpy_dtype, copy=False))).numpy()

    return run


def runner(kind, path, export_info):
    """A function from a batch of raw inputs (numpy) to the model's outputs (numpy), running
    the export at `path` in its own runtime. `export_info` is the sidecar's "export" block."""
    from dlcli.core.lazy import tf

    require(kind)
    run = {"savedmodel": savedmodel_runner, "litert": litert_runner, "onnx": onnx_runner, "openvino": openvino_runner}[kind](Path(path))
    settings = (export_info or {}).get("text_vectorization")
    if settings is None:
        return run
    vectorize = vectorizer(settings)
    return lambda texts: run(vectorize(tf.constant(np.asarray(texts).astype(str))).numpy())


def first_line(error):
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else ""


def savedmodel_runner(path):
    from dlcli.core.lazy import tf

    try:
        loaded = tf.saved_model.load(str(path))
        spec = loaded.serve.input_signature[0]
    except Exception as e:  # no variables/, a damaged graph, no `serve` signature...
        raise DlcliError(f"cannot load SavedModel {path}: {type(e).__name__}: {first_line(e)}") from None
    return lambda x: loaded.serve(tf.constant(x, dtype=spec.dtype)).numpy()


def litert_runner(path):
    from ai_edge_litert.interpreter import Interpreter

    from dlcli.core.lazy import native_stderr_filtered

    try:
        with native_stderr_filtered():  # "INFO: Created TensorFlow Lite XNNPACK delegate" is not news
            interpreter = Interpreter(model_path=str(path))
            interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as e:  # not a FlatBuffer, a truncated file, ops it lacks
        raise DlcliError(f"cannot load LiteRT model {path}: {first_line(e)}") from None
    source, target = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    batch = int(source["shape"][0])

    def run(x):
        # dlcli's LiteRT exports take a fixed batch (1): run the inputs in slices of it.
        x = np.asarray(x, dtype=source["dtype"])
        outputs = []
        for start in range(0, len(x), batch):
            part = x[start:start + batch]
            padded = np.concatenate([part, np.repeat(part[-1:], batch - len(part), axis=0)]) if len(part) < batch else part
            interpreter.set_tensor(source["index"], padded)
            interpreter.invoke()
            outputs.append(interpreter.get_tensor(target["index"])[: len(part)].copy())
        return np.concatenate(outputs)

    return run


def onnx_runner(path):
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph kinds
        raise DlcliError(f"cannot load ONNX model {path}: {first_line(e)}") from None
    source = session.get_inputs()[0]
    dtype = {"tensor(float)": np.float32, "tensor(int64)": np.int64, "tensor(int32)": np.int32}.get(source.type, np.float32)

    def run(x):
        try:
            return session.run(None, {source.name: np.asarray(x, dtype=dtype)})[0]
        except Exception as e:  # a graph that loads but cannot run (inputs the converter left unbound)
            raise DlcliError(f"cannot run ONNX model {path}: {first_line(e)}") from None

    return run


def openvino_runner(path):
    import openvino

    xml = path / "model.xml" if path.is_dir() else path
    try:
        # f32: the CPU plugin would otherwise run in bf16 where the CPU has it (a 1e-3 difference).
        compiled = openvino.Core().compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    except Exception as e:
        raise DlcliError(f"cannot load OpenVINO model {xml}: {first_line(e)}") from None
    dtype = compiled.inputs[0].get_element_type().to_dtype()
    return lambda x: np.asarray(compiled(np.asarray(x, dtype=dtype))[0])


def verify(model, name, export, inputs):
    """(largest difference, tolerance) between the Keras `model` and `export` (a runner: numpy
    batch in, outputs out) on `inputs`; an export outside the tolerance is refused. One input at
    a time on both sides: LiteRT exports take a batch of 1, and a model may not treat the
    examples of a batch independently (Keras' MelSpectrogram clamps its decibels at top_db
    below the loudest value of the whole batch)."""
    keras_model = keras_runner(model)
    expected = np.concatenate([keras_model(inputs[i:i + 1]) for i in range(len(inputs))])
    try:
        found = np.concatenate([export(inputs[i:i + 1]) for i in range(len(inputs))])
    except DlcliError as e:  # converted, but its own runtime cannot run it
        raise DlcliError(f"cannot convert {model.name} to {name}: the export does not run: {e}") from None
    difference, tolerance = largest_difference(expected, found)
    if not difference <= tolerance:  # NaN fails too
        raise DlcliError(
            f"the {name} export differs from the Keras model by up to {difference:.3g} on the run's test inputs "
            f"(tolerance {tolerance:.1g}); it was not written."
        )
    return difference, tolerance


def largest_difference(expected, found):
    """(largest |difference|, tolerance) between the Keras model's outputs and an export's."""
    expected, found = np.asarray(expected, np.float64), np.asarray(found, np.float64)
    if expected.shape != found.shape:
        raise DlcliError(f"the export's outputs have shape {list(found.shape)}, the Keras model's {list(expected.shape)}.")
    return float(np.max(np.abs(expected - found))), TOLERANCE * max(1.0, float(np.max(np.abs(expected))))


def vertex_model_dir(run_dir):
    """Whether `run_dir` is Vertex AI's AIP_MODEL_DIR, where its model registry looks for a model."""
    location = os.environ.get("AIP_MODEL_DIR")
    return bool(location) and Path(run_dir).resolve() == local_path(location, "AIP_MODEL_DIR").resolve()


def export_savedmodel(run_dir, inputs=None):
    """Exports RUN_DIR/model.keras as a SavedModel at the root of RUN_DIR (saved_model.pb,
    variables/), the layout Vertex AI's model registry and prediction containers load from
    AIP_MODEL_DIR. Built in a scratch folder first and, given test `inputs`, run on them and
    compared with the Keras model as `dlcli export` does (refused outside the tolerance);
    saved_model.pb, which readers look for, is moved in last, so a reader never finds it
    without its variables. Returns (path, largest difference or None)."""
    run_dir = Path(run_dir)
    # dlcli's one loader (safe mode, its own layers, the size budget); served in float32 (float32_model)
    model = float32_model(load_keras(run_dir / "model.keras"))
    with tempfile.TemporaryDirectory(dir=run_dir, prefix=".savedmodel-") as scratch:
        staged = Path(scratch) / "savedmodel"
        try:
            # training=False traced in: Keras' export alone leaves augmentation layers (speech's
            # RandomTranslation) active in the serving graph.
            inference_graph(model, None).export(str(staged), format="tf_saved_model", verbose=False)
            difference = None
            if inputs is not None and len(inputs):
                difference, _ = verify(model, "savedmodel", runner("savedmodel", staged, None), inputs)
            names = sorted((p.name for p in staged.iterdir()), key=lambda name: name == "saved_model.pb")
            for name in names:
                target = run_dir / name
                if target.is_dir():
                    shutil.rmtree(target)
                os.replace(staged / name, target)
        except OSError as e:
            raise WriteError(f"could not write the SavedModel in {run_dir}: {e.strerror}.") from None
    return run_dir / "saved_model.pb", difference
