"""Bad input, round 2, through the real `dlcli` binary: exactly one stderr line, exit code 2,
nothing pre-existing changed. Config ranges, TF_CONFIG roles, CSV cells, file names, resume
without a checkpoint, two runs into one folder, and every documented config choice."""

import hashlib
import json
import typing

import numpy as np
import pytest

from dlcli.models import config as config_lib
from dlcli.training import registry


def one_line(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("recipe, key, value, fragment", [
    ("cnn", "dropout", "1.5", "dropout must be in [0, 1)"),
    ("lstm", "units", "0", "units must be >= 1"),
    ("lstm", "recurrent_dropout", "-0.1", "recurrent_dropout must be in [0, 1)"),
    ("autoencoder", "latent", "0", "latent must be >= 1"),
    ("forecast", "season", "0", "season must be >= 1"),
    ("forecast", "test_fraction", "1", "test_fraction must be in (0, 1)"),
    ("regression", "features", "0", "features must be in [1, 100000]"),
    ("cnn", "seed", "-1", "seed must be in [0, 4294967295]"),
    ("cnn", "epochs", str(2**63), "epochs must be in [1, 1000000]"),
])
def test_config_values_out_of_range_are_one_line_before_tensorflow(recipe, key, value, fragment, dlcli_subprocess, tmp_path):
    one_line(dlcli_subprocess("train", recipe, "--set", f"{key}={value}", "-o", tmp_path / "run"), fragment, f"Received: {key}=")
    assert not (tmp_path / "run").exists()


def choices():
    """(recipe, key, value) for every Literal choice every recipe documents."""
    for name in registry.recipe_names():
        for key, hint in config_lib.field_types(registry.load(name).Config).items():
            if typing.get_origin(hint) is typing.Literal and key != "precision":
                yield from ((name, key, value) for value in typing.get_args(hint))


SPLITS = {}


@pytest.mark.parametrize("name, key, value", list(choices()))
def test_every_documented_choice_builds_and_runs(name, key, value):
    recipe = registry.load(name)
    # A backbone's choice is built with random weights (no download here) at its smallest input.
    extra = {"weights": "none", "image_size": "32"} if key == "backbone" and value else {}
    config = config_lib.resolve(recipe.Config, name, toml_values={**recipe.QUICK, key: value, **extra})
    if name not in SPLITS:
        SPLITS[name] = recipe.load_data(config)
    splits = SPLITS[name]
    model = recipe.build_model(config, splits)
    x = splits.train[0][:4]
    if splits.preprocess is not None:
        x = splits.preprocess(x.astype(str))
    assert np.all(np.isfinite(np.asarray(model(x, training=False))))


def test_tf_config_roles_dlcli_cannot_play_are_refused(dlcli_subprocess, tmp_path):
    ps = {"cluster": {"worker": ["127.0.0.1:1"], "ps": ["127.0.0.1:2"]}, "task": {"type": "ps", "index": 0}}
    one_line(dlcli_subprocess("train", "cnn", "--dataset", "digits", "-o", tmp_path / "r", env={"TF_CONFIG": json.dumps(ps)}),
             "task type 'ps' is not supported")
    bad_types = {"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}
    one_line(dlcli_subprocess("train", "cnn", "--dataset", "digits", "-o", tmp_path / "r", env={"TF_CONFIG": json.dumps(bad_types)}),
             "must be lists of \"host:port\" strings")
    assert not (tmp_path / "r").exists()


def test_csv_cells_that_are_not_finite_or_start_with_a_bom(dlcli_subprocess, tmp_path):
    rows = [f"{i},{2 * i + 1}" for i in range(40)]
    infinite = tmp_path / "inf.csv"
    infinite.write_text("x,y\n" + "\n".join(rows[:10] + ["3,1e999"] + rows[10:]))
    one_line(dlcli_subprocess("train", "regression", "--data", infinite, "--set", "target=y", "-o", tmp_path / "a"),
             "line 12: column 'y' holds '1e999', which is not a finite number")
    excel = tmp_path / "excel.csv"
    excel.write_bytes(b"\xef\xbb\xbfx,y\n" + "\n".join(rows).encode())
    result = dlcli_subprocess("train", "regression", "--data", excel, "--set", "target=y", "--epochs", 2, "-o", tmp_path / "b", "--json")
    assert result.returncode == 0, result.stderr[-2000:]
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())  # strict JSON: no NaN/Infinity
    assert metrics["test"]["loss"] is None or np.isfinite(metrics["test"]["loss"])


def test_a_file_name_with_a_newline_stays_on_one_line(dlcli_subprocess, tmp_path):
    weird = tmp_path / "two\nlines.csv"
    weird.write_text("a,b\n1,2\n")
    line = one_line(dlcli_subprocess("train", "regression", "--data", weird, "-o", tmp_path / "r"))
    assert "two\\nlines.csv" in line


def checksums(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_resume_with_nothing_to_resume_refuses_and_changes_nothing(dlcli_subprocess, tmp_path):
    run = tmp_path / "run"
    result = dlcli_subprocess("train", "softmax", "--dataset", "digits", "--epochs", 1, "-o", run)
    assert result.returncode == 0, result.stderr[-2000:]
    (run / "checkpoints" / "checkpoint").write_text("model_checkpoint_path: \x00\x01 garbage {{{")
    before = checksums(run)
    one_line(dlcli_subprocess("train", "softmax", "-o", run, "--resume", "--epochs", 2), "holds no readable checkpoint")
    assert checksums(run) == before
    for path in (run / "checkpoints").iterdir():
        path.unlink()
    (run / "checkpoints").rmdir()
    before = checksums(run)
    one_line(dlcli_subprocess("train", "softmax", "-o", run, "--resume", "--epochs", 2), "holds no readable checkpoint")
    assert checksums(run) == before


def test_two_trainings_into_one_folder_the_second_is_refused(tmp_path):
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    run = tmp_path / "run"
    args = [sys.executable, "-m", "dlcli", "train", "cnn", "--dataset", "digits", "--set", "steps_per_epoch=400",
            "--set", "steps_per_execution=1", "--batch-size", "32", "--epochs", "2"]
    first = subprocess.Popen([*args, "-o", run], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (run / "config.json").exists():  # the first one holds the lock and has started
            assert first.poll() is None and time.time() < deadline, first.communicate()[1][-2000:]
            time.sleep(0.2)
        second = subprocess.run([*args, "-o", run, "--overwrite"], cwd=REPO, capture_output=True, text=True, timeout=120)
        one_line(second, "another dlcli process is training into")
    finally:
        first.terminate()
        first.wait(timeout=120)


def test_fifos_and_devices_are_refused_without_hanging(dlcli_subprocess, tmp_path):
    import os

    fifo = tmp_path / "stream.csv"
    os.mkfifo(fifo)
    one_line(dlcli_subprocess("train", "regression", "--data", fifo, "--set", "target=y", "-o", tmp_path / "a", timeout=120))
    one_line(dlcli_subprocess("train", "regression", "--data", "/dev/zero", "-o", tmp_path / "b", timeout=120), "not a format dlcli reads")
    reviews = tmp_path / "reviews"
    for split in ("train", "test"):
        for label in ("pos", "neg"):
            (reviews / split / label).mkdir(parents=True)
            (reviews / split / label / "0_1.txt").write_text(f"a {label} film")
    os.mkfifo(reviews / "train" / "pos" / "1_9.txt")  # would block forever if read
    from dlcli.data.sources import aclimdb

    assert len(aclimdb.load(reviews, None).train[0]) == 2


# ## Round 3: the gaps the first pass left (pixel budget, giant layers, names, empty corpora,
# truncated images deep in a folder, truncated checkpoints)


def measured(*args, timeout=300, env=None):
    """(CompletedProcess, peak RSS in MiB) of the real `dlcli` binary: the child's own rusage."""
    import os
    import subprocess
    import sys
    import tempfile

    from tests.conftest import REPO

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([sys.executable, "-m", "dlcli", *map(str, args)], cwd=REPO, stdout=out, stderr=err, text=True,
                                 env={**os.environ, **(env or {})})
        try:
            child.wait(timeout=timeout)  # reaps the child; its rusage is read below
        except subprocess.TimeoutExpired:
            child.kill()
            raise
        out.seek(0)
        err.seek(0)
        result = subprocess.CompletedProcess(child.args, child.returncode, out.read(), err.read())
    return result, peak_of(child.pid)


PEAKS = {}


def peak_of(pid):
    return PEAKS.get(pid, 0)


def _wait4_popen():
    """Popen.wait through os.wait4, so a test can read each child's peak RSS (ru_maxrss)."""
    import os
    import subprocess

    original = subprocess.Popen._try_wait

    def try_wait(self, wait_flags):
        try:
            pid, status, usage = os.wait4(self.pid, wait_flags)
        except ChildProcessError:
            return original(self, wait_flags)
        if pid:
            PEAKS[pid] = usage.ru_maxrss / 1024  # KiB on Linux
        return pid, status

    subprocess.Popen._try_wait = try_wait


_wait4_popen()


def png_bomb(path, side=30000):
    """A ~100 KB 1-bit PNG that declares side x side pixels (900M at 30000): a decompression bomb."""
    import struct
    import zlib

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    packer, row = zlib.compressobj(9), b"\0" * (1 + (side + 7) // 8)
    pixels = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def small_image_folder(root, per_class=6):
    from tests.helpers import write_image_folder

    return write_image_folder(root, classes=("cat", "dog"), per_class=per_class, size=(12, 12))


def test_a_decompression_bomb_is_refused_in_folders_and_predict_with_bounded_memory(tmp_path):
    root = small_image_folder(tmp_path / "pics")
    (root / "dog" / "deep" / "er").mkdir(parents=True)
    bomb = png_bomb(root / "dog" / "deep" / "er" / "huge.png")
    assert bomb.stat().st_size < 200_000
    before = checksums(root)
    result, peak = measured("train", "cnn", "--data", root, "--epochs", 1, "-o", tmp_path / "r")
    one_line(result, "huge.png is not a readable image", "30000x30000 pixels, over the budget of 89,478,485 pixels")
    assert peak < 1500, peak  # the header is read, not the 900M pixels (decoding would take GBs)
    assert checksums(root) == before and not (tmp_path / "r").exists()
    result, _ = measured("data", "info", root)
    assert result.returncode == 0 and "over the budget" not in result.stderr
    bomb.unlink()
    trained, _ = measured("train", "cnn", "--data", root, "--epochs", 1, "--batch-size", 4, "-o", tmp_path / "ok")
    assert trained.returncode == 0, trained.stderr[-2000:]
    result, peak = measured("predict", tmp_path / "ok", png_bomb(tmp_path / "input.png"))
    one_line(result, "input.png is not a readable image", "over the budget")
    assert peak < 1500, peak


def test_a_truncated_image_deep_in_a_big_folder_is_found_before_training(tmp_path):
    """The whole folder is checked at listing time (header, pixel budget, end marker), not a
    sample: a file cut short past the first few hundred stops the run before the first step."""
    from tests.helpers import write_png

    root = small_image_folder(tmp_path / "pics", per_class=500)
    victim = root / "dog" / "zz" / "cut.png"
    victim.parent.mkdir()
    write_png(tmp_path / "whole.png", np.random.default_rng(0).integers(0, 255, (32, 32, 3)))
    whole = (tmp_path / "whole.png").read_bytes()
    victim.write_bytes(whole[: len(whole) // 2])  # a valid header, half the pixel data
    result, _ = measured("train", "cnn", "--data", root, "--epochs", 1, "-o", tmp_path / "r")
    one_line(result, "cut.png is not a readable image (truncated PNG (no end marker))", "skip_bad=true")
    assert not (tmp_path / "r").exists()
    result, _ = measured("train", "cnn", "--data", root, "--epochs", 1, "--set", "skip_bad=true",
                         "--set", "steps_per_epoch=2", "-o", tmp_path / "r2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 skipped: unreadable image" in result.stdout


def test_an_image_damaged_inside_is_named_mid_run_and_skip_bad_finds_it_at_the_start(tmp_path):
    """Header and end intact, pixel data damaged: the listing's cheap check passes it, tf.data's
    decoder fails mid-epoch. That failure names the file in one line (not "Graph execution
    error"), exit 2; skip_bad decodes every file at the start, so it is skipped and counted."""
    root = small_image_folder(tmp_path / "pics", per_class=12)
    victim = sorted((root / "cat").glob("*.png"))[3]
    raw = bytearray(victim.read_bytes())
    start = raw.find(b"IDAT") + 12
    raw[start : start + 16] = bytes(b ^ 0xFF for b in raw[start : start + 16])  # inside the compressed pixels
    victim.write_bytes(bytes(raw))
    result, _ = measured("train", "cnn", "--data", root, "--epochs", 2, "--batch-size", 4, "-o", tmp_path / "r")
    one_line(result, f"{victim.name} cannot be decoded", "skip_bad=true")
    result, _ = measured("train", "cnn", "--data", root, "--epochs", 1, "--batch-size", 4, "--set", "skip_bad=true",
                         "-o", tmp_path / "r2")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 skipped: unreadable image" in result.stdout


def test_a_keras_file_declaring_a_giant_layer_is_refused_before_it_is_built(tmp_path):
    import zipfile

    run = tmp_path / "run"
    result, _ = measured("train", "softmax", "--dataset", "digits", "--epochs", 1, "-o", run)
    assert result.returncode == 0, result.stderr[-2000:]
    model = run / "model.keras"
    with zipfile.ZipFile(model) as archive:
        parts = {name: archive.read(name) for name in archive.namelist()}
    config = json.loads(parts["config.json"])
    dense = next(layer for layer in config["config"]["layers"] if layer["class_name"] == "Dense")
    dense["config"]["units"] = 10**9  # 784e9 weights: terabytes if Keras built it
    parts["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(model, "w") as archive:
        for name, body in parts.items():
            archive.writestr(name, body)
    from tests.helpers import write_png

    write_png(tmp_path / "seven.png", np.zeros((28, 28), np.uint8))
    before = checksums(run)
    for args in (("evaluate", run), ("export", run, "-o", tmp_path / "export.keras"), ("predict", run, tmp_path / "seven.png")):
        result, peak = measured(*args)
        one_line(result, "model.keras declares about 785,000,000,000 weights", "over the budget of 268,435,456")
        assert peak < 1500, peak
    assert checksums(run) == before and not (tmp_path / "export.keras").exists()


def test_a_giant_declared_input_is_refused_and_real_models_are_under_budget(tmp_path):
    from dlcli.models import safe_model

    layers = [{"class_name": "InputLayer", "config": {"batch_shape": [None, 100000, 100000]}}]
    assert safe_model.largest_shape({"config": {"layers": layers}}) == 10**10
    dense = {"class_name": "Dense", "config": {"units": 1000}, "build_config": {"input_shape": [None, 784]}}
    assert safe_model.declared_parameters({"layers": [dense]}) == 785 * 1000
    lstm = {"class_name": "LSTM", "config": {"units": 64, "recurrent_initializer": {}}, "build_config": {"input_shape": [None, 80, 32]}}
    assert safe_model.declared_parameters(lstm) == 4 * 64 * (32 + 64 + 1)


def test_non_utf8_file_names_are_skipped_and_counted(tmp_path):
    import os

    root = small_image_folder(tmp_path / "pics")
    (root / "cat" / "0.png").rename(os.fsdecode(os.fsencode(str(root / "cat")) + b"/caf\xe9.png"))
    result, _ = measured("train", "cnn", "--data", root, "--epochs", 1, "--batch-size", 2, "-o", tmp_path / "r")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "1 skipped: file names that are not valid UTF-8 (rename them)" in result.stdout
    info, _ = measured("data", "info", root)
    assert info.returncode == 0 and "caf\\\\xe9.png" in info.stdout, info.stdout + info.stderr  # the repr of an escape
    texts = tmp_path / "texts"
    for label in ("ham", "spam"):
        (texts / label).mkdir(parents=True)
        for i in range(30):
            (texts / label / f"{i}.txt").write_text(f"a {label} message number {i} with words")
    (texts / "ham" / "0.txt").rename(os.fsdecode(os.fsencode(str(texts / "ham")) + b"/na\xefve.txt"))
    info, _ = measured("data", "info", texts)
    assert info.returncode == 0 and "file names that are not valid UTF-8" in info.stdout, info.stdout + info.stderr
    os.mkdir(os.fsencode(str(root)) + b"/ow\xe9")
    (root / "dog" / "1.png").rename(os.fsdecode(os.fsencode(str(root)) + b"/ow\xe9/1.png"))
    one_line(measured("train", "cnn", "--data", root, "-o", tmp_path / "r2")[0], "folder name", "ow\\xe9 is not valid UTF-8")


@pytest.mark.parametrize("kind", ["folder", "csv", "blank column"])
def test_text_corpora_with_no_words_are_one_line(tmp_path, kind):
    if kind == "folder":
        data = tmp_path / "texts"
        for label in ("a", "b"):
            (data / label).mkdir(parents=True)
            for i in range(40):
                (data / label / f"{i}.txt").write_text(["", "  \n ", "!!! ... ??", " , ; -- "][i % 4])
        fragment = "hold no words"
    elif kind == "csv":
        data = tmp_path / "p.csv"
        data.write_text("text,label\n" + "".join(f'"...!!! ,,",{"ab"[i % 2]}\n' for i in range(100)))
        fragment = "hold no words"
    else:
        data = tmp_path / "blank.csv"
        data.write_text("text,label\n" + "".join(f",{'ab'[i % 2]}\n" for i in range(100)))
        fragment = "no row has both a text (column 'text') and a label"
    result, _ = measured("train", "lstm", "--data", data, "--epochs", 1, "-o", tmp_path / "r")
    one_line(result, fragment)
    assert not (tmp_path / "r").exists()


def test_a_truncated_checkpoint_is_named_and_the_intact_older_one_offered(tmp_path):
    run = tmp_path / "run"
    result, _ = measured("train", "softmax", "--dataset", "digits", "--epochs", 2, "-o", run)
    assert result.returncode == 0, result.stderr[-2000:]
    latest = run / "checkpoints" / "ckpt-20.data-00000-of-00001"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # cut in half
    before = checksums(run)
    result, _ = measured("train", "softmax", "-o", run, "--resume", "--epochs", 3)
    one_line(result, "checkpoint ckpt-20 in", "is damaged (", "nothing was changed", 'The older ckpt-10 is intact', "--overwrite")
    assert checksums(run) == before
    state = run / "checkpoints" / "checkpoint"  # the advice works: point the state file at ckpt-10
    state.write_text(state.read_text().replace('model_checkpoint_path: "ckpt-20"', 'model_checkpoint_path: "ckpt-10"'))
    result, _ = measured("train", "softmax", "-o", run, "--resume", "--epochs", 3)
    assert result.returncode == 0 and "resuming after epoch 1" in result.stdout, result.stderr[-2000:]
    from dlcli.runs import rundir

    assert [row["epoch"] for row in rundir.read_history(run / "history.csv")] == [1, 2, 3]
