"""Bad input, round 2, through the real `dlcli` binary: exactly one stderr line, exit code 2,
nothing pre-existing changed. Config ranges, TF_CONFIG roles, CSV cells, file names, resume
without a checkpoint, two runs into one folder, and every documented config choice."""

import hashlib
import json
import typing

import numpy as np
import pytest

from dlcli import config as config_lib
from dlcli import registry


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
    config = config_lib.resolve(recipe.Config, name, toml_values={**recipe.QUICK, key: value})
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
    from dlcli.sources import aclimdb

    assert len(aclimdb.load(reviews, None).train[0]) == 2
