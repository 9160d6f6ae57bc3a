"""Exported models from elsewhere are code, and export never replaces what dlcli did not write.
Driven through the real `dlcli` binary, as a user (or an attacker's file) would meet it."""

import hashlib
import json
import shutil

import numpy as np
import pytest
import tensorflow as tf
from typer.testing import CliRunner

from dlcli.cli.app import app
from tests.helpers import write_png


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny digits run and its signed SavedModel export, under a private DLCLI_HOME."""
    root = tmp_path_factory.mktemp("trust")
    home = root / "home"
    env = {"DLCLI_HOME": str(home)}
    runner = CliRunner(env=env)
    result = runner.invoke(app, ["train", "cnn", "--dataset", "digits", "--epochs", "1", "--strategy", "default", "-o", str(root / "run")])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["export", str(root / "run"), "--format", "savedmodel"])
    assert result.exit_code == 0, result.output
    write_png(root / "digit.png", np.zeros((28, 28, 1)))
    return root, env


def one_line(result):
    assert result.returncode == 2, (result.returncode, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def checksums(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_own_export_runs_and_a_foreign_savedmodel_is_refused_unless_unsafe(trained, dlcli_subprocess, tmp_path):
    root, env = trained
    ours = root / "run" / "export" / "savedmodel"
    assert dlcli_subprocess("predict", ours, root / "digit.png", "--json", env=env).returncode == 0

    # Someone else's SavedModel whose serving function writes a file, dressed with our sidecar.
    marker = tmp_path / "pwned.txt"

    class Evil(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 28, 28, 1], tf.uint8)])
        def serve(self, x):
            tf.io.write_file(str(marker), "ran")
            return tf.zeros([tf.shape(x)[0], 10])

    evil = tmp_path / "evil"
    tf.saved_model.save(Evil(), str(evil))
    shutil.copy(ours / "dlcli.json", evil / "dlcli.json")
    line = one_line(dlcli_subprocess("predict", evil, root / "digit.png", env=env))
    assert "did not export with dlcli" in line and "--unsafe" in line and not marker.exists()
    assert dlcli_subprocess("predict", evil, root / "digit.png", "--unsafe", env=env).returncode == 0
    assert marker.read_text() == "ran"  # what --unsafe allowed was code, as the message said

    # Our own export, changed after export, or checked under another user's key: refused too.
    changed = tmp_path / "changed"
    shutil.copytree(ours, changed)
    (changed / "saved_model.pb").write_bytes((changed / "saved_model.pb").read_bytes() + b"\0")
    assert "did not export" in one_line(dlcli_subprocess("predict", changed, root / "digit.png", env=env))
    other_user = {"DLCLI_HOME": str(tmp_path / "other-home")}
    assert "did not export" in one_line(dlcli_subprocess("predict", ours, root / "digit.png", env=other_user))


def test_export_overwrite_replaces_only_dlcli_exports(trained, dlcli_subprocess, tmp_path):
    root, env = trained
    mine = tmp_path / "my-folder"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    run_before = checksums(root / "run")
    for target in (mine, root / "run", root / "run" / "checkpoints"):
        line = one_line(dlcli_subprocess("export", root / "run", "--format", "savedmodel", "-o", target, "--overwrite", env=env))
        assert "did not export" in line or "would replace the run folder" in line, line
    assert (mine / "thesis.txt").read_text() == "years of work" and sorted(p.name for p in mine.iterdir()) == ["thesis.txt"]
    assert checksums(root / "run") == run_before
    # A previous dlcli export is replaced, in either format.
    for fmt in ("savedmodel", "tflite", "savedmodel"):
        result = dlcli_subprocess("export", root / "run", "--format", fmt, "-o", tmp_path / "shipped", "--overwrite", env=env)
        assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "shipped" / "dlcli.json").read_text())["export"]["format"] == "savedmodel"
