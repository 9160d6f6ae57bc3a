"""gs:// run folders and data through TensorFlow's own Cloud Storage client, against a local
emulator (tests/gcs_emulator.py: gcp-storage-emulator behind a TLS proxy; nothing leaves the
machine). Skipped when the emulator packages (the `test` extra) are not installed."""

import csv
import io
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

pytest.importorskip("gcp_storage_emulator", reason="gcp-storage-emulator (the test extra) is not installed")
pytest.importorskip("trustme", reason="trustme (the test extra) is not installed")

from tests.conftest import REPO  # noqa: E402
from tests.gcs_emulator import GcsEmulator  # noqa: E402
from tests.helpers import write_image_folder  # noqa: E402

QUICK = ["--dataset", "digits", "--set", "steps_per_epoch=4", "--set", "steps_per_execution=1", "--batch-size", "32", "--strategy", "default"]


@pytest.fixture(scope="module")
def gcs(tmp_path_factory):
    with GcsEmulator(tmp_path_factory.mktemp("gcs")) as emulator:
        yield emulator


def env_for(gcs, cache, **extra):
    return {**os.environ, **gcs.env, "DLCLI_CACHE": str(cache), "PYTHONPATH": str(REPO), **extra}


def dlcli(*args, env, timeout=300):
    return subprocess.run([sys.executable, "-m", "dlcli", *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO, env=env)


def objects(gcs, bucket):
    return gcs.objects(bucket)


def one_line_error(result, *fragments):
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "train /" not in result.stdout + result.stderr, "the data loaded before the refusal"


def test_train_to_gs_stopped_and_continued_on_a_new_machine_then_evaluate_and_predict(gcs, tmp_path, monkeypatch):
    gcs.create_bucket("runs")
    url = "gs://runs/cnn/first"
    # Epoch 2 lasts long enough (30 single-step calls) for the SIGTERM to land inside it.
    command = ["train", "cnn", *QUICK, "--set", "steps_per_epoch=30", "--epochs", "2", "-o", url, "--resume-auto"]
    machine_a, machine_b = tmp_path / "cache-a", tmp_path / "cache-b"

    # The first machine trains, and is stopped (SIGTERM) once epoch 1 is uploaded.
    first = subprocess.Popen([sys.executable, "-m", "dlcli", *command], cwd=REPO, env=env_for(gcs, machine_a),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while "cnn/first/history.csv" not in objects(gcs, "runs"):
        assert first.poll() is None, first.communicate()[1][-3000:]
        assert time.time() < deadline, "epoch 1 never reached the bucket"
        time.sleep(0.2)
    time.sleep(1)  # into epoch 2, most often
    first.send_signal(signal.SIGTERM)
    out, err = first.communicate(timeout=120)
    assert first.returncode == 143, err[-3000:]
    stored = objects(gcs, "runs")
    state = stored["cnn/first/checkpoints/checkpoint"].decode()
    latest = state.split('model_checkpoint_path: "')[1].split('"')[0]
    assert f"cnn/first/checkpoints/{latest}.index" in stored, "the state file points at a checkpoint the bucket lacks"
    assert "cnn/first/model.keras" not in stored
    # Whichever point the signal reached, the checkpoint it saved is in the bucket (a mid-epoch
    # one is uploaded by the command's last push, on its way out).
    stopped = re.search(r"stopped by SIGTERM (?:in epoch 2 at step (\d+)/30|after epoch 1)", err)
    assert stopped, err[-2000:]
    assert latest == f"ckpt-{30 + int(stopped.group(1) or 0)}", "the checkpoint saved on SIGTERM was not uploaded before the exit"
    assert f"-o {url} --resume" in err, "the hint names the local copy, not the gs:// run"

    # The restart lands on another machine (an empty cache): the same command continues from the bucket.
    second = dlcli(*command, env=env_for(gcs, machine_b))
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resume auto: continuing the run" in second.stderr + second.stdout, second.stderr[-2000:]
    assert "resuming " in second.stderr + second.stdout
    assert f"run folder {url}:" in second.stdout and f"{url}/model.keras" in second.stdout  # the URL, not the cache
    assert f"tensorboard --logdir {url}/logs" in second.stdout
    stored = objects(gcs, "runs")
    for name in ("config.json", "model.keras", "metrics.json", "history.csv", "checkpoints/checkpoint"):
        assert f"cnn/first/{name}" in stored, name
    assert any(name.startswith("cnn/first/logs/") for name in stored), "no TensorBoard events in the bucket"
    rows = list(csv.DictReader(io.StringIO(stored["cnn/first/history.csv"].decode())))
    assert [int(row["epoch"]) for row in rows] == [1, 2]
    assert not any(name.rsplit("/", 1)[-1].startswith(".") for name in stored), "a temporary file reached the bucket"

    import json

    remote_metrics = json.loads(stored["cnn/first/metrics.json"])
    assert remote_metrics["epochs"] == 2 and set(remote_metrics["test"]) >= {"loss", "accuracy"}

    # evaluate and predict read the run from the bucket (a third machine; in this process, to
    # spare two TensorFlow start-ups); evaluation.json goes back up.
    from typer.testing import CliRunner

    from dlcli.cli.app import app
    from tests.helpers import write_png

    for name, value in env_for(gcs, tmp_path / "cache-c").items():
        monkeypatch.setenv(name, value)
    evaluated = CliRunner().invoke(app, ["evaluate", url, "--json"])
    assert evaluated.exit_code == 0, evaluated.output[-2000:]
    assert json.loads(evaluated.stdout)["test"] == pytest.approx(remote_metrics["test"], rel=1e-4)
    assert "cnn/first/evaluation.json" in objects(gcs, "runs")
    image = tmp_path / "seven.png"
    write_png(image, np.full((28, 28), 200, np.uint8))
    predicted = CliRunner().invoke(app, ["predict", url, str(image), "--json"])
    assert predicted.exit_code == 0, predicted.output[-2000:]
    assert json.loads(predicted.stdout)[0]["class"] in [str(i) for i in range(10)]


def test_data_from_gs_is_copied_once_and_trained_on(gcs, tmp_path):
    gcs.create_bucket("data")
    folder = write_image_folder(tmp_path / "pets", per_class=6, size=(16, 16))
    for path in sorted(folder.rglob("*.png")):
        gcs.put("data", f"pets/{path.relative_to(folder).as_posix()}", path.read_bytes())
    # `objects` sanity: the emulator holds the 12 images TensorFlow will list.
    assert len(objects(gcs, "data")) == 12
    run = tmp_path / "run"
    args = ["train", "cnn", "--data", "gs://data/pets", "--epochs", "1", "--batch-size", "4", "--strategy", "default", "-o", run]
    trained = dlcli(*args, env=env_for(gcs, tmp_path / "cache"))
    assert trained.returncode == 0, trained.stderr[-3000:]
    import json

    record = json.loads((run / "config.json").read_text())
    assert record["config"]["data"] == "gs://data/pets"
    assert record["data"]["class_names"] == ["cat", "dog"]
    cached = list((tmp_path / "cache" / "data").rglob("*.png"))
    assert len(cached) == 12


def test_bad_gs_locations_are_one_line_before_the_data_loads(gcs, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from dlcli.cli.app import app
    from tests.helpers import assert_one_line_error

    for name, value in env_for(gcs, tmp_path / "cache").items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)

    def refused(args, *fragments):
        result = CliRunner().invoke(app, [str(a) for a in args])
        assert_one_line_error(result, *fragments)
        assert "train /" not in result.output, "the data loaded before the refusal"

    refused(["train", "cnn", *QUICK, "-o", "gs://no-such-bucket/run"], "bucket gs://no-such-bucket does not exist")
    refused(["train", "cnn", "--data", "gs://no-such-bucket/pets", "-o", tmp_path / "run"], "gs://no-such-bucket")
    gcs.create_bucket("empty")
    refused(["train", "cnn", "--data", "gs://empty/pets", "-o", tmp_path / "run"], "--data path does not exist: gs://empty/pets")
    refused(["evaluate", "gs://empty/run"], "run folder not found: gs://empty/run")
    refused(["export", "gs://empty/run", "-o", "gs://empty/export"], "--output gs:/")
    # No credentials: TensorFlow finds none (no GOOGLE_APPLICATION_CREDENTIALS, no gcloud login,
    # not on GCE), sends an empty token, and Cloud Storage answers 401. A fresh process: the
    # client in this one keeps the token it has.
    anonymous = {k: v for k, v in env_for(gcs, tmp_path / "cache").items() if k not in ("GOOGLE_AUTH_TOKEN_FOR_TESTING", "GOOGLE_APPLICATION_CREDENTIALS")}
    anonymous.update(HOME=str(tmp_path), CLOUDSDK_CONFIG=str(tmp_path / "gcloud"))
    one_line_error(dlcli("train", "cnn", *QUICK, "-o", "gs://empty/run", env=anonymous), "gs://empty/run", "credentials")
    assert not (tmp_path / "run").exists() and not list((tmp_path / "cache").rglob("config.json"))
    assert not (tmp_path / "gs:").exists(), "a gs:// path became a local folder"


def test_mirror_uploads_state_files_last_and_pulls_only_what_changed(gcs, tmp_path, monkeypatch):
    from dlcli.core.lazy import tf
    from dlcli.runs import remote

    for name, value in env_for(gcs, tmp_path / "cache").items():
        monkeypatch.setenv(name, value)
    gcs.create_bucket("mirror")
    local = tmp_path / "staged"
    (local / "checkpoints").mkdir(parents=True)
    for name in ("checkpoints/ckpt-1.index", "checkpoints/ckpt-1.data-00000-of-00001", "config.json", "history.csv"):
        (local / name).write_text(name)
    (local / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    (local / ".config.json.123.tmp").write_text("half")  # an atomic write in progress: never uploaded
    calls = []
    copy, remove = tf.io.gfile.copy, tf.io.gfile.remove
    monkeypatch.setattr(tf.io.gfile, "copy", lambda src, dst, overwrite=False: (calls.append(("up", dst)), copy(src, dst, overwrite))[1])
    monkeypatch.setattr(tf.io.gfile, "remove", lambda path: (calls.append(("rm", path)), remove(path))[1])

    mirror = remote.Mirror("gs://mirror/run", local)
    mirror.push()
    assert calls[-1] == ("up", "gs://mirror/run/checkpoints/checkpoint") and len(calls) == 5
    assert ".config.json.123.tmp" not in str(calls)

    # The next checkpoint replaces the first: its files, then the state file, then the old files go.
    calls.clear()
    for name in ("checkpoints/ckpt-1.index", "checkpoints/ckpt-1.data-00000-of-00001"):
        (local / name).unlink()
    for name in ("checkpoints/ckpt-2.index", "checkpoints/ckpt-2.data-00000-of-00001"):
        (local / name).write_text(name)
    (local / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-2"\n')
    mirror.push()
    assert [kind for kind, _ in calls] == ["up", "up", "up", "rm", "rm"]
    assert calls[2] == ("up", "gs://mirror/run/checkpoints/checkpoint")
    assert sorted(gcs.objects("mirror")) == sorted(f"run/{name}" for name in (
        "checkpoints/ckpt-2.index", "checkpoints/ckpt-2.data-00000-of-00001", "checkpoints/checkpoint", "config.json", "history.csv"))

    # A new machine's copy equals the bucket; a second pull downloads nothing; a stale local file goes.
    copy_b = tmp_path / "machine-b"
    assert remote.download("gs://mirror/run", copy_b) == 5
    assert (copy_b / "checkpoints" / "checkpoint").read_text() == 'model_checkpoint_path: "ckpt-2"\n'
    (copy_b / "checkpoints" / "ckpt-0.index").write_text("stale")
    assert remote.download("gs://mirror/run", copy_b) == 0
    assert not (copy_b / "checkpoints" / "ckpt-0.index").exists()
