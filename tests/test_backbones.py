"""Pretrained backbones (recipes/cnn.py, dlcli/models/backbones.py): every backbone from a local
weights file (made here from a random initialisation, as no weights can be downloaded), both
phases, exact resume after a kill in each phase, predict and export round trips, and
weights=imagenet offline as one line."""

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dlcli.models import backbones
from tests.conftest import REPO
from tests.helpers import write_png

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}
SIZE = 32  # the smallest input these networks take: fast on two cores
QUICK = ["--dataset", "digits", "--batch-size", "32", "--set", f"image_size={SIZE}", "--set", "fine_tune_layers=12"]


def dlcli(*args, timeout=600):
    result = subprocess.run([sys.executable, "-m", "dlcli", *map(str, args)], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout)
    return result.returncode, result.stdout, result.stderr


def weights_file(folder, name):
    """The backbone `name` with random weights, saved as a .weights.h5 (what `weights=PATH` reads)."""
    import keras

    path = Path(folder) / f"{name}.weights.h5"
    if not path.exists():
        keras.utils.set_random_seed(1)
        backbones.build(name, (SIZE, SIZE, 3), "none").save_weights(str(path))
    return path


def backbone_weights(run_dir, name):
    from dlcli.models.safe_model import load_keras

    model = load_keras(Path(run_dir) / "model.keras")
    return model, backbones.backbone_of(model)


# mobilenet_v3_small in the default run; the three larger networks with `pytest -m slow` (minutes each on two cores)
EVERY_BACKBONE = [pytest.param(name, marks=() if name == "mobilenet_v3_small" else pytest.mark.slow) for name in backbones.BACKBONES]


@pytest.mark.parametrize("name", EVERY_BACKBONE)
def test_each_backbone_trains_in_two_phases_from_a_weights_file_and_predicts(tmp_path, name):
    import keras

    weights = weights_file(tmp_path, name)
    run = tmp_path / "run"
    code, out, err = dlcli("train", "cnn", *QUICK, "--set", f"backbone={name}", "--set", f"weights={weights}",
                           "--set", "steps_per_epoch=4", "--epochs", 2, "-o", run, "--json")
    assert code == 0, err[-3000:]
    assert f"network {name} ({weights} weights) with a new head: epochs 1-1 train the head" in err
    assert "epochs 2-2 fine-tune its top 12 layers at 1e-05" in err and "epoch 2: fine-tune" in err
    rates = [float(row["learning_rate"]) for row in csv.DictReader((run / "history.csv").open())]
    assert rates == [pytest.approx(3e-3), pytest.approx(1e-5)]  # the head's rate, then fine_tune_lr
    # Fine-tuning changed the top layers only; the frozen bottom is the file's, to the bit.
    model, trained = backbone_weights(run, name)
    original = backbones.build(name, (SIZE, SIZE, 3), str(weights))
    changed = [not all(np.array_equal(a, b) for a, b in zip(t.get_weights(), o.get_weights()))
               for t, o in zip(trained.layers, original.layers) if t.weights]
    top = sum(1 for layer in trained.layers[-12:] if layer.trainable_weights or layer.weights)
    assert not any(changed[:-top]), "a frozen layer changed"
    assert any(changed[-top:]), "fine-tuning changed nothing"
    # predict: a picture file, converted as training converted its inputs
    picture = tmp_path / "digit.png"
    write_png(picture, (np.random.default_rng(0).random((20, 24)) * 255).astype(np.uint8))
    code, out, err = dlcli("predict", run, picture, "--json")
    assert code == 0, err[-2000:]
    row = json.loads(out)[0]
    assert row["class"] in [str(i) for i in range(10)]
    from dlcli.data.sources import image_folder

    pixels = image_folder.decoder((28, 28, 1))(str(picture)).numpy()[None]
    expected = keras.ops.convert_to_numpy(keras.ops.softmax(model(pixels, training=False)))[0]
    assert row["probability"] == pytest.approx(float(expected.max()), abs=2e-4)


@pytest.mark.slow  # five exports and five predicts: minutes on two cores
def test_a_backbone_run_exports_to_every_format_and_each_export_predicts(tmp_path):
    weights = weights_file(tmp_path, "mobilenet_v3_small")
    run = tmp_path / "run"
    code, out, err = dlcli("train", "cnn", *QUICK, "--set", "backbone=mobilenet_v3_small", "--set", f"weights={weights}",
                           "--set", "steps_per_epoch=2", "--epochs", 2, "-o", run, "--json")
    assert code == 0, err[-3000:]
    picture = tmp_path / "digit.png"
    write_png(picture, (np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8))
    code, out, err = dlcli("predict", run, picture, "--json")
    assert code == 0, err[-2000:]
    expected = json.loads(out)[0]
    for fmt in ("keras", "savedmodel", "litert", "onnx", "openvino"):  # each written only when it agrees with the Keras model
        code, out, err = dlcli("export", run, "--format", fmt)
        assert code == 0, f"{fmt}: {err[-2000:]}"
    for exported in sorted(p for p in (run / "export").iterdir() if p.suffix != ".json"):  # not the signed sidecars
        code, out, err = dlcli("predict", exported, picture, "--json")
        assert code == 0, f"{exported.name}: {err[-2000:]}"
        assert json.loads(out)[0]["class"] == expected["class"], exported.name


@pytest.mark.slow  # two more trainings; the weights=PATH path of .weights.h5 files runs in the default suite
def test_a_backbone_reused_from_a_keras_model(tmp_path):
    """weights=PATH may be a .keras model holding the backbone: here, the first run's."""
    weights = weights_file(tmp_path, "mobilenet_v3_small")
    first, second = tmp_path / "first", tmp_path / "second"
    common = [*QUICK, "--set", "backbone=mobilenet_v3_small", "--set", "steps_per_epoch=2", "--epochs", 2]
    assert dlcli("train", "cnn", *common, "--set", f"weights={weights}", "-o", first)[0] == 0
    code, out, err = dlcli("train", "cnn", *common, "--set", f"weights={first / 'model.keras'}", "--set", "fine_tune_layers=0", "-o", second)
    assert code == 0, err[-2000:]
    _, a = backbone_weights(first, "mobilenet_v3_small")
    _, b = backbone_weights(second, "mobilenet_v3_small")
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights())), "the frozen backbone is the first run's"


def checkpoints_past(run_dir, step):
    found = [int(m.group(1)) for p in (Path(run_dir) / "checkpoints").glob("ckpt-*.index") if (m := re.match(r"ckpt-(\d+)", p.name))]
    return any(n > step for n in found)


def test_a_kill_in_either_phase_resumes_to_the_same_model(tmp_path):
    """SIGKILL once in the head phase and once while fine-tuning: the resumed run ends with the
    metrics of the uninterrupted one (--deterministic), each phase at its own rate."""
    weights = weights_file(tmp_path, "mobilenet_v3_small")
    args = ["train", "cnn", *QUICK, "--set", "backbone=mobilenet_v3_small", "--set", f"weights={weights}", "--deterministic",
            "--set", "steps_per_epoch=30", "--set", "steps_per_execution=1", "--checkpoint-every", 5, "--epochs", 4]
    whole = tmp_path / "whole"
    code, out, err = dlcli(*args, "-o", whole, "--json")
    assert code == 0, err[-3000:]
    expected = json.loads(out)
    run = tmp_path / "killed"
    for kill_after, resume in ((35, []), (95, ["--resume"])):  # epoch 2 (head), then epoch 4 (fine-tune)
        process = subprocess.Popen([sys.executable, "-m", "dlcli", *map(str, args), "-o", run, *resume], cwd=REPO, env=ENV,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 300
        while not checkpoints_past(run, kill_after):
            assert process.poll() is None, process.communicate()[1][-2000:]
            assert time.time() < deadline
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait()
        assert not (run / "metrics.json").exists(), "killed too late: the run had finished"
    code, out, err = dlcli(*args, "-o", run, "--resume", "--json")
    assert code == 0, err[-3000:]
    assert "fine-tune" in err
    resumed = json.loads(out)
    assert resumed["test"] == expected["test"]
    rows = (run / "history.csv").read_text().splitlines()
    assert len(rows) == 5


def test_weights_imagenet_offline_is_one_line(tmp_path):
    """No network here: Keras cannot fetch the ImageNet weights, and the line says which file to put where."""
    env = {**ENV, "KERAS_HOME": str(tmp_path / "keras")}
    result = subprocess.run([sys.executable, "-m", "dlcli", "train", "cnn", *QUICK, "--set", "backbone=mobilenet_v3_small",
                             "--epochs", "2", "-o", str(tmp_path / "run"), "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stderr[-2000:]
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.stderr and result.stdout == ""
    assert "weights=imagenet: Keras could not download weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5" in errors[0]
    assert str(tmp_path / "keras" / "models" / "weights_mobilenet_v3_small_224_1.0_float_no_top_v2.h5") in errors[0]
    assert not (tmp_path / "run").exists()
