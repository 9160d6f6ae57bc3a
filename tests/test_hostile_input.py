"""Hostile and broken input: nothing crashes, nothing is lost, nothing untrusted runs."""

import errno
import io
import os
import tarfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.core.errors import WriteError
from dlcli.runs import rundir
from dlcli.training import registry

runner = CliRunner()
RECIPES = registry.recipe_names()
CASES = {"ran": 0, "succeeded": 0}

words = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=12)
numbers = st.one_of(st.integers(-5, 3).map(str), st.sampled_from(["0", "-1", "1e9", "nan", "inf", "0.5", "", "abc"]))
keys = st.one_of(st.sampled_from(["epochs", "batch_size", "learning_rate", "arch", "seed", "dropout", "units", "window",
                                  "validation_split", "precision", "steps_per_epoch", "lr_schedule", "data"]), words)
flag = st.one_of(
    st.tuples(st.sampled_from(["--epochs", "--batch-size", "--learning-rate", "--seed", "--cpu-devices", "--checkpoint-every"]), numbers),
    st.tuples(st.sampled_from(["--dataset"]), st.one_of(st.sampled_from(["digits", "synthetic", "mnist", "imdb_reviews"]), words)),
    st.tuples(st.sampled_from(["--strategy"]), st.one_of(st.sampled_from(["default", "mirrored", "multi-worker", "tpu"]), words)),
    st.tuples(st.sampled_from(["--precision"]), st.one_of(st.sampled_from(["float32", "mixed_bfloat16"]), words)),
    st.tuples(st.sampled_from(["--set"]), st.tuples(keys, numbers).map("=".join)),
    st.tuples(st.sampled_from(["--set"]), words),
    st.tuples(st.sampled_from(["--data", "--config"]), st.sampled_from(["@missing", "@file", "@folder"])),
)
other_flag = st.tuples(st.sampled_from(["--json", "--top-k", "--format", "--model", "--unsafe"]), st.one_of(numbers, words))
command = st.one_of(
    st.tuples(st.just("train"), st.one_of(st.sampled_from(RECIPES), words), st.lists(flag, max_size=3)),
    st.tuples(st.just("train"), st.sampled_from(RECIPES), st.just([])),
    st.tuples(st.sampled_from(["list", "data list"]), st.just(None), st.just([])),
    st.tuples(
        st.sampled_from(["show", "evaluate", "predict", "export", "plot", "data info", "data download"]),
        st.one_of(st.sampled_from(["@missing", "@file", "@folder", *RECIPES]), words),
        st.lists(other_flag, max_size=2),
    ),
)


@settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(command)
def test_any_command_line_succeeds_or_fails_in_one_line(tmp_path_factory, case):
    """Random commands, flags, values, recipe names, paths and --set pairs through the real CLI."""
    where = tmp_path_factory.mktemp("fuzz")
    (where / "file").write_text("epochs = [\n")  # not TOML, not data
    (where / "folder").mkdir()
    paths = {"@missing": str(where / "missing"), "@file": str(where / "file"), "@folder": str(where / "folder")}
    name, target, flags = case
    args = [*name.split(), *([] if target is None else [paths.get(target, target)])]
    if name == "train" and target in RECIPES:  # start from the recipe's offline data; fuzzed flags override it
        quick = registry.load(target).QUICK
        args += [arg for key, value in quick.items() if key != "epochs" for arg in ("--set", f"{key}={value}")]
    for option, value in flags:
        args += [option] if option in ("--json", "--model", "--unsafe") else [option, paths.get(value, value)]
    if name == "train":  # keep successful runs short
        args += ["--set", "steps_per_epoch=2", "--epochs", "1", "-o", str(where / "run")]
    before = set(os.listdir(os.getcwd()))
    result = runner.invoke(app, args)
    CASES["ran"] += 1
    CASES["succeeded"] += result.exit_code == 0
    assert result.exit_code in (0, 2), (args, result.exit_code, result.output[-2000:])
    assert "Traceback" not in result.output
    if result.exit_code == 2:
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
    assert set(os.listdir(os.getcwd())) <= before | {"predictions"}, f"{args} wrote outside its output folder"
    print(f"fuzz: {CASES['ran']} command lines, {CASES['succeeded']} succeeded, the rest refused in one line")


def tarball(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, kind, content in members:
            info = tarfile.TarInfo(name)
            if kind == "file":
                info.size = len(content)
                tar.addfile(info, io.BytesIO(content))
            elif kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, content
                tar.addfile(info)
            else:
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
                tar.addfile(info)
    return path


def test_crafted_tarballs_never_write_outside_anything(tmp_path, monkeypatch):
    from dlcli.data.sources import aclimdb

    outside = tmp_path / "outside.txt"
    reviews = [(f"aclImdb/{s}/{l}/0_{i}.txt", "file", b"good film" if l == "pos" else b"bad film")
               for s in ("train", "test") for l in ("pos", "neg") for i in (1, 2)]
    path = tarball(tmp_path / "evil.tar.gz", [
        *reviews,
        ("../outside.txt", "file", b"escaped"),
        (str(outside), "file", b"absolute"),
        ("aclImdb/train/pos/9_9.txt", "symlink", "/etc/passwd"),
        ("aclImdb/train/neg/9_1.txt", "device", None),
    ])
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    train_x, train_y = aclimdb.load(path, None).train
    assert len(train_x) == 4 and "root:" not in " ".join(train_x)  # the symlink and device were skipped
    assert sorted(p.name for p in tmp_path.iterdir()) == before and not outside.exists()


def test_a_failed_write_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "history.csv"
    rundir.write_history(target, [{"epoch": 1, "loss": 0.5}])

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(rundir.os, "replace", disk_full)
    with pytest.raises(WriteError, match="No space left on device; the previous history.csv is unchanged"):
        rundir.write_history(target, [{"epoch": 1, "loss": 0.5}, {"epoch": 2, "loss": 0.4}])
    assert target.read_text().splitlines() == ["epoch,loss", "1,0.5"]
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"], "a temporary file was left behind"


def test_permission_denied_is_one_clear_line_and_the_run_stays_resumable(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    quick = ["--dataset", "digits", "--strategy", "default", "-o", str(run_dir)]
    assert runner.invoke(app, ["train", "cnn", "--epochs", "1", *quick]).exit_code == 0
    history = (run_dir / "history.csv").read_text()

    mkstemp = rundir.tempfile.mkstemp

    def denied(*args, **kwargs):  # history.csv only: the folder passes the check before training
        if kwargs.get("prefix", "").startswith(".history.csv"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))
        return mkstemp(*args, **kwargs)

    monkeypatch.setattr(rundir.tempfile, "mkstemp", denied)
    result = runner.invoke(app, ["train", "cnn", "--epochs", "2", "--resume", *quick])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert "could not write" in result.stderr and "Permission denied" in result.stderr
    assert (run_dir / "history.csv").read_text() == history
    monkeypatch.undo()
    assert runner.invoke(app, ["train", "cnn", "--epochs", "2", "--resume", *quick]).exit_code == 0


def test_a_checkpoint_that_cannot_be_written_stops_with_the_last_good_one_named(tmp_path, monkeypatch):
    import tensorflow as tf

    from dlcli.training import loop

    cnn = registry.load("cnn")
    config = cnn.Config(dataset="digits", epochs=3, batch_size=64)
    splits = cnn.load_data(config)
    saves = {"n": 0}
    real_save = tf.train.CheckpointManager.save

    def flaky_save(self, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(self, *args, **kwargs)

    monkeypatch.setattr(tf.train.CheckpointManager, "save", flaky_save)
    with pytest.raises(WriteError, match=r"could not write checkpoint 40 .* the last good one is .*ckpt-20"):
        loop.fit(cnn, config, splits, tf.distribute.get_strategy(), tmp_path)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")).endswith("ckpt-20")
    monkeypatch.undo()
    loop.fit(cnn, config, splits, tf.distribute.get_strategy(), tmp_path, resume=True)
    assert [int(line.split(",")[0]) for line in (tmp_path / "history.csv").read_text().splitlines()[1:]] == [1, 2, 3]


def test_labels_out_of_range_are_refused(monkeypatch):
    from dlcli import data
    from dlcli.core.errors import DlcliError

    images = np.zeros((5, 28, 28, 1), np.uint8)
    bad = ((images, np.array([0, 1, 2, 3, 12])), (images, np.arange(5)), [str(i) for i in range(10)])
    from dlcli.data.sources import tfds

    monkeypatch.setattr(tfds, "load_images", lambda name, data_dir: bad)
    with pytest.raises(DlcliError, match=r"train labels of tensorflow-datasets mnist must lie in 0..9; found 0..12"):
        data.load_images(registry.load("cnn").Config(dataset="mnist"))
