"""Every export format on every recipe: `dlcli export` checks the export in its own runtime
against the Keras model, and `dlcli predict` on the export gives the run's own answers from the
same raw inputs (images, texts, table rows, a series, audio). Formats that cannot convert a
recipe's model are refused with one line and leave nothing behind."""

import importlib
import json

import numpy as np
import pytest

from dlcli.data import load_digits
from dlcli.training import registry
from tests.helpers import invoke, tone, write_png, write_wav

RECIPES = registry.recipe_names()
FORMATS = {"savedmodel": "savedmodel", "litert": "model.tflite", "onnx": "model.onnx", "openvino": "openvino"}
# What each converter cannot take here (TF 2.21, tf2onnx 1.17, OpenVINO 2026.4), with the reason
# the export prints; the README lists them. Everything else must round-trip.
REFUSED = {
    ("onnx", "forecast"): "Required inputs",  # tf2onnx makes Normalization's mean/variance graph inputs
    ("onnx", "regression"): "Required inputs",
    ("onnx", "transformer"): "",  # tf2onnx leaves tf.nn.gelu's Erfc unconverted: onnxruntime rejects the graph
    ("onnx", "speech"): "",  # RFFT (the log-mel STFT) has no ONNX conversion in tf2onnx
    ("openvino", "forecast"): "TensorList",  # OpenVINO's TF frontend has no rule for LSTM's TensorList ops
    ("openvino", "rnn"): "TensorList",
    ("openvino", "lstm"): "TensorList",
}
# One pair per format in the default run (text through LiteRT is the acceptance case); the rest are slow.
DEFAULT = {("litert", "cnn"), ("savedmodel", "speech"), ("litert", "lstm"), ("litert", "forecast"), ("onnx", "softmax"), ("onnx", "regression"), ("openvino", "softmax")}
CASES = [
    pytest.param(fmt, name, marks=() if (fmt, name) in DEFAULT else pytest.mark.slow, id=f"{fmt}-{name}")
    for fmt in FORMATS for name in RECIPES
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return {"DLCLI_HOME": str(tmp_path_factory.mktemp("home"))}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, env):
    """recipe -> a tiny run folder (the recipe's QUICK settings, 1 epoch), trained once."""
    root, runs = tmp_path_factory.mktemp("runs"), {}

    def get(name):
        if name not in runs:
            quick = dict(importlib.import_module(f"recipes.{name}").QUICK, epochs=1)
            args = ["train", name, "--strategy", "default", "-o", root / name]
            args += [item for key, value in quick.items() for item in ("--set", f"{key}={value}")]
            result = invoke(*args, env=env)
            assert result.exit_code == 0, result.output
            runs[name] = root / name
        return runs[name]

    return get


@pytest.fixture(scope="module")
def raw_inputs(tmp_path_factory):
    """recipe kind -> inputs for `dlcli predict`, as a user gives them."""
    folder = tmp_path_factory.mktemp("inputs")
    _, (x, _) = load_digits()
    images = [folder / f"digit{i}.png" for i in range(3)]
    for path, image in zip(images, x):
        write_png(path, image)
    (folder / "rows.csv").write_text("x0,x1,x2\n0,0,0\n1,2,3\n-1,0.5,2\n")
    (folder / "series.csv").write_text("value\n" + "\n".join(str(10 + 2 * np.sin(2 * np.pi * t / 24)) for t in range(60)))
    # One clip: the speech model's log-mel clamps at 80 dB below the loudest value of the whole
    # batch (Keras' MelSpectrogram), so its answers depend on the batch, and LiteRT runs one clip at a time.
    clips = [folder / "tone300.wav"]
    write_wav(clips[0], tone(300, 0.4))
    texts = ["great wonderful superb film", "awful boring dull film with a weak plot", "the cast was quite charming"]
    return {
        "images": images, "text": texts, "table": [folder / "rows.csv"], "series": [folder / "series.csv"], "audio": clips,
    }


KINDS = {"autoencoder": "images", "cnn": "images", "rnn": "images", "softmax": "images", "lstm": "text", "transformer": "text",
         "regression": "table", "forecast": "series", "speech": "audio"}


def predictions(env, model, inputs, out):
    result = invoke("predict", model, *inputs, "--json", "--output", out, env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def assert_same_answers(expected, found, tolerance=1e-3):
    assert len(expected) == len(found)
    for a, b in zip(expected, found):
        assert a.keys() == b.keys()
        for key, value in a.items():
            if isinstance(value, float):
                assert b[key] == pytest.approx(value, rel=tolerance, abs=tolerance), key
            elif key in ("class", "input"):
                assert b[key] == value, key


@pytest.mark.parametrize("fmt, name", CASES)
def test_export_round_trips_or_is_refused_cleanly(fmt, name, trained, raw_inputs, env, tmp_path):
    assert set(KINDS) == set(RECIPES), "a new recipe needs its predict inputs here"
    run = trained(name)
    target = tmp_path / "shipped" / FORMATS[fmt]
    result = invoke("export", run, "--format", fmt, "-o", target, env=env)
    if (fmt, name) in REFUSED:
        assert result.exit_code == 2, result.output
        assert result.stderr.count("\n") == 1 and "cannot convert" in result.stderr and REFUSED[fmt, name] in result.stderr, result.stderr
        assert not target.exists() and not any((tmp_path / "shipped").iterdir())  # no half-written export
        return
    assert result.exit_code == 0, result.output
    assert "largest difference from the Keras model" in result.stdout
    sidecar = json.loads(((target / "dlcli.json") if target.is_dir() else target.with_name(target.name + ".json")).read_text())
    check = sidecar["export"]["check"]
    assert check["examples"] >= 1 and 0 <= check["max_abs_difference"] <= check["tolerance"]
    inputs = raw_inputs[KINDS[name]]
    expected = predictions(env, run, inputs, tmp_path / "keras-out")
    # A run trained in mixed_bfloat16 (cnn on a CPU with AMX) answers with bf16's 8-bit mantissa
    # (relative rounding 2^-8); its exports compute in float32 (exports.float32_model).
    bf16 = json.loads((run / "config.json").read_text())["strategy"].get("precision") == "mixed_bfloat16"
    assert ("the export in float32" in result.stdout) == bf16
    tolerance = 2**-7 if bf16 else 1e-3
    assert_same_answers(expected, predictions(env, target, inputs, tmp_path / "export-out"), tolerance)
    if fmt == "openvino":  # the folder or its model.xml
        assert_same_answers(expected, predictions(env, target / "model.xml", inputs, tmp_path / "xml-out"), tolerance)


def test_text_litert_export_is_integer_tokens_and_runs_without_flex_ops(trained, env, tmp_path):
    """The acceptance case: a text model's .tflite holds builtin ops only (no Flex delegate),
    and predict tokenizes raw strings with the vocabulary signed into its sidecar."""
    from ai_edge_litert.interpreter import Interpreter

    target = tmp_path / "lstm.tflite"
    assert invoke("export", trained("lstm"), "--format", "litert", "-o", target, env=env).exit_code == 0
    interpreter = Interpreter(model_path=str(target))  # the plain interpreter: Flex ops would fail here
    interpreter.allocate_tensors()
    (source,) = interpreter.get_input_details()
    assert source["dtype"] == np.int64 and list(source["shape"]) == [1, 32]
    assert b"Flex" not in target.read_bytes()
    rows = predictions(env, target, ["great wonderful superb brilliant film", "awful boring dull tedious film"], tmp_path / "out")
    assert [row["input"] for row in rows] == ["great wonderful superb brilliant film", "awful boring dull tedious film"]
    # The vocabulary is signed with the model: changing a word in the sidecar makes it foreign.
    sidecar = target.with_name(target.name + ".json")
    info = json.loads(sidecar.read_text())
    info["export"]["text_vectorization"]["vocabulary"][0] = "tampered"
    sidecar.write_text(json.dumps(info))
    result = invoke("predict", target, "great film", env=env)
    assert result.exit_code == 2 and "did not export with dlcli" in result.stderr and "--unsafe" in result.stderr


@pytest.mark.parametrize("fmt", ["litert", "onnx", "openvino"])
def test_a_tampered_export_is_refused_unless_unsafe(fmt, trained, raw_inputs, env, tmp_path):
    target = tmp_path / FORMATS[fmt]
    assert invoke("export", trained("softmax"), "--format", fmt, "-o", target, env=env).exit_code == 0
    changed = target / "model.bin" if fmt == "openvino" else target
    data = bytearray(changed.read_bytes())
    data[-1] ^= 1  # one bit of a weight or of the file's tail
    changed.write_bytes(bytes(data))
    result = invoke("predict", target, raw_inputs["images"][0], env=env)
    assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
    assert "did not export with dlcli" in result.stderr and "--unsafe" in result.stderr
    # --unsafe lifts the trust refusal (whether the changed bytes still load is then the runtime's business).
    assert "did not export" not in invoke("predict", target, raw_inputs["images"][0], "--unsafe", env=env).stderr


@pytest.mark.parametrize("fmt, module", [("litert", "ai_edge_litert"), ("onnx", "onnxruntime"), ("openvino", "openvino")])
def test_a_missing_runtime_is_one_line_naming_the_extra(fmt, module, trained, raw_inputs, env, tmp_path, monkeypatch):
    run = trained("softmax")
    exported = tmp_path / FORMATS[fmt]
    assert invoke("export", run, "--format", fmt, "-o", exported, env=env).exit_code == 0
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real_find_spec(name, *a))
    for args in (["export", run, "--format", fmt, "-o", tmp_path / "again" / FORMATS[fmt]], ["predict", exported, raw_inputs["images"][0]]):
        result = invoke(*args, env=env)
        assert result.exit_code == 2 and result.stderr.count("\n") == 1, result.output
        assert module in result.stderr and 'pip install -e ".[export]"' in result.stderr, result.stderr
    assert not (tmp_path / "again").exists()


def test_an_export_that_disagrees_with_the_keras_model_is_not_kept(trained, env, tmp_path, monkeypatch):
    """The check is real: an export whose outputs drift past the tolerance is refused and removed."""
    from dlcli.models import exports

    real_runner = exports.runner
    monkeypatch.setattr(exports, "runner", lambda *a: (lambda x, run=real_runner(*a): run(x) + 0.01))
    target = tmp_path / "drift.onnx"
    result = invoke("export", trained("softmax"), "--format", "onnx", "-o", target, env=env)
    assert result.exit_code == 2 and "differs from the Keras model by up to 0.01" in result.stderr, result.output
    assert not target.exists() and not target.with_name("drift.onnx.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == []


def test_a_mixed_precision_model_is_exported_in_float32_with_the_same_weights():
    """cnn trains in mixed_bfloat16 on CPUs with AMX (strategy.resolve_precision); LiteRT, ONNX
    Runtime and OpenVINO reject its bf16 casts, so exports are rebuilt in float32."""
    import keras

    from dlcli.models import exports
    from recipes import cnn

    config = cnn.Config(**cnn.QUICK)
    splits = cnn.load_data(config)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_bfloat16")
    try:
        model = cnn.build_model(config, splits)
    finally:
        keras.mixed_precision.set_global_policy(previous)
    rebuilt = exports.float32_model(model)
    assert {layer.dtype_policy.name for layer in rebuilt.layers} == {"float32"}
    assert all(np.array_equal(a, b) for a, b in zip(rebuilt.get_weights(), model.get_weights()))
    x = splits.test[0][:8]
    mixed = model.predict(x, verbose=0)
    # bf16 keeps 8 bits of mantissa: the two models agree to bf16's rounding, not to float32's.
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), mixed, atol=0.05 * max(1, np.abs(mixed).max()))
    assert exports.float32_model(rebuilt) is rebuilt  # a float32 model is exported as it is
