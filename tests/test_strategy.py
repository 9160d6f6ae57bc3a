"""Strategy resolution: TF_CONFIG checks, what `auto` picks, the chief, and the TPU path."""

import json

import pytest
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.core import cluster
from dlcli.core.errors import DlcliError
from dlcli.training import strategy

runner = CliRunner()
TWO_WORKERS = {"cluster": {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}, "task": {"type": "worker", "index": 0}}


@pytest.mark.parametrize(
    "raw, message",
    [
        ("{not json", "TF_CONFIG is not valid JSON"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "TF_CONFIG must be"),
        (json.dumps({**TWO_WORKERS, "task": {"type": "worker", "index": 2}}), "task index 2 is out of range: job 'worker' has 2 task(s)"),
        (json.dumps({**TWO_WORKERS, "task": {"type": "ps", "index": 0}}), "task type 'ps' is not a job of the cluster"),
        (json.dumps({"cluster": {"evaluator": ["h:1"]}, "task": {"type": "evaluator", "index": 0}}), "neither a 'chief' nor a 'worker'"),
    ],
)
def test_a_wrong_tf_config_is_one_clear_line(monkeypatch, raw, message):
    monkeypatch.setenv("TF_CONFIG", raw)
    with pytest.raises(DlcliError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cluster.tf_config()
    result = runner.invoke(app, ["train", "cnn", "--dataset", "digits"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and message.split(":")[0] in result.stderr


def test_auto_picks_multi_worker_when_tf_config_names_several_workers(monkeypatch):
    monkeypatch.setenv("TF_CONFIG", json.dumps(TWO_WORKERS))
    assert strategy.auto_choice(tpu=None) == "multi-worker"


def test_auto_picks_tpu_when_one_is_configured(monkeypatch):
    assert strategy.auto_choice(tpu="my-tpu") == "tpu"
    monkeypatch.setenv("TPU_NAME", "my-tpu")
    assert strategy.auto_choice(tpu=None) == "tpu"


def test_auto_on_cpus(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("TPU_NAME", raising=False)
    assert strategy.auto_choice(tpu=None) == "mirrored"  # the test process has two logical CPUs


@pytest.mark.parametrize(
    "spec, chief",
    [
        (None, True),
        (TWO_WORKERS, True),
        ({**TWO_WORKERS, "task": {"type": "worker", "index": 1}}, False),
        ({"cluster": {"chief": ["h:0"], "worker": ["h:1"]}, "task": {"type": "worker", "index": 0}}, False),
        ({"cluster": {"chief": ["h:0"], "worker": ["h:1"]}, "task": {"type": "chief", "index": 0}}, True),
    ],
)
def test_only_the_chief_writes(monkeypatch, spec, chief):
    if spec is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", json.dumps(spec))
    assert cluster.is_chief() is chief


def test_a_tpu_name_goes_to_the_tpu_cluster_resolver(monkeypatch):
    import tensorflow as tf

    seen = {}

    class FakeResolver:
        def __init__(self, tpu):
            seen["tpu"] = tpu

    monkeypatch.setattr(tf.distribute.cluster_resolver, "TPUClusterResolver", FakeResolver)
    monkeypatch.setattr(tf.config, "experimental_connect_to_cluster", lambda resolver: seen.setdefault("connected", resolver))
    monkeypatch.setattr(tf.tpu.experimental, "initialize_tpu_system", lambda resolver: seen.setdefault("initialised", resolver))
    monkeypatch.setattr(tf.distribute, "TPUStrategy", lambda resolver: ("TPUStrategy", resolver))
    built, name = strategy.make_strategy("tpu", tpu="my-tpu")
    assert name == "tpu" and built[0] == "TPUStrategy" and seen["tpu"] == "my-tpu"
    assert seen["connected"] is seen["initialised"] is built[1]


def test_tpu_on_a_machine_without_one_is_one_clear_line(tmp_path):
    result = runner.invoke(app, ["train", "cnn", "--dataset", "digits", "--strategy", "tpu", "-o", tmp_path / "run"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: no TPU found for --tpu local") and result.stderr.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_multi_worker_without_tf_config_is_refused(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    result = runner.invoke(app, ["train", "cnn", "--dataset", "digits", "--strategy", "multi-worker"])
    assert result.exit_code == 2 and "needs TF_CONFIG" in result.stderr


def test_vertex_ai_model_dir_is_the_default_run_folder(monkeypatch, tmp_path):
    from dlcli.runs import rundir

    monkeypatch.setenv("AIP_MODEL_DIR", str(tmp_path / "model"))
    assert rundir.resolve_run_dir(None, "cnn") == tmp_path / "model"
    assert rundir.resolve_run_dir(tmp_path / "mine", "cnn") == tmp_path / "mine"
    monkeypatch.setenv("AIP_MODEL_DIR", "gs://bucket/model")
    if not __import__("pathlib").Path("/gcs").is_dir():
        with pytest.raises(DlcliError, match="needs the Cloud Storage FUSE mount at /gcs"):
            rundir.resolve_run_dir(None, "cnn")


def test_bf16_flags_are_read_from_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nflags\t\t: fpu avx2 avx512f amx_bf16 avx512_bf16\n\nprocessor\t: 1\nflags\t: fpu avx2\n")
    assert strategy.cpu_bf16_flags(info) == ["avx512_bf16", "amx_bf16"]
    info.write_text("flags\t\t: fpu sse2 avx avx2 fma\n")
    assert strategy.cpu_bf16_flags(info) == []
    assert strategy.cpu_bf16_flags(tmp_path / "missing") == []


@pytest.mark.parametrize(
    "precision, recipe, flags, expected",
    [
        ("auto", "cnn", ["amx_bf16"], "mixed_bfloat16"),  # the one recipe measured faster in bf16
        ("auto", "cnn", [], "float32"),  # no native bf16: oneDNN would emulate it, 10x slower
        ("auto", "lstm", ["avx512_bf16", "amx_bf16"], "float32"),  # measured 0.86x: stays float32
        ("float32", "cnn", ["amx_bf16"], "float32"),  # --precision float32 turns it off
        ("mixed_float16", "lstm", [], "mixed_float16"),  # an explicit choice is kept as it is
    ],
)
def test_auto_precision_is_bf16_only_where_it_was_measured_faster(monkeypatch, precision, recipe, flags, expected):
    import tensorflow as tf

    from dlcli.training import registry

    monkeypatch.setattr(strategy, "cpu_bf16_flags", lambda: flags)
    module = registry.load(recipe)
    policy, line = strategy.resolve_precision(module.Config(precision=precision), module, tf.distribute.get_strategy())
    assert policy == expected
    assert (line is not None) == (precision == "auto" and expected == "mixed_bfloat16")
    if line:
        assert line.startswith("precision mixed_bfloat16") and "--precision float32" in line


def test_train_says_and_records_the_precision_auto_chose_and_puts_the_policy_back(monkeypatch, tmp_path):
    import keras

    monkeypatch.setattr(strategy, "cpu_bf16_flags", lambda: ["amx_bf16"])
    run = tmp_path / "run"
    args = ["train", "cnn", "--dataset", "digits", "--epochs", "1", "--set", "steps_per_epoch=2", "--strategy", "default"]
    result = runner.invoke(app, [*args, "-o", str(run)])
    assert result.exit_code == 0, result.output
    assert "precision mixed_bfloat16: this CPU runs bf16 natively (amx_bf16)" in result.output
    record = json.loads((run / "config.json").read_text())
    assert record["config"]["precision"] == "auto" and record["strategy"]["precision"] == "mixed_bfloat16"
    assert keras.mixed_precision.global_policy().name == "float32"  # the next command starts clean
    result = runner.invoke(app, [*args, "--precision", "float32", "-o", str(tmp_path / "fp32")])
    assert result.exit_code == 0 and "precision mixed_bfloat16" not in result.output
    record = json.loads((tmp_path / "fp32" / "config.json").read_text())
    assert record["strategy"]["precision"] == "float32"


ONEDNN_PROBE = (
    "import os, dlcli\n"
    "from tensorflow.python.util import _pywrap_util_port as port  # TensorFlow's own answer, not the variable\n"
    "print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'), port.IsMklEnabled())\n"
)


@pytest.mark.parametrize("given, expected", [(None, "1 True"), ("0", "0 False")])
def test_importing_dlcli_turns_onednn_on_on_x86_unless_the_environment_says_otherwise(given, expected):
    import os
    import platform
    import subprocess
    import sys

    if platform.machine().lower() not in ("x86_64", "amd64"):
        pytest.skip("dlcli sets TF_ENABLE_ONEDNN_OPTS on x86 only")
    env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
    if given is not None:
        env["TF_ENABLE_ONEDNN_OPTS"] = given
    probe = subprocess.run([sys.executable, "-c", ONEDNN_PROBE], capture_output=True, text=True, env=env, timeout=120)
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert probe.stdout.strip().splitlines()[-1] == expected
