"""`dlcli tune`: the search space, a search stopped and continued, best.toml; and Vertex AI
tuning's --KEY=VALUE arguments with the cloudml-hypertune report."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from dlcli.core.errors import DlcliError
from dlcli.models import config as config_lib
from dlcli.tuning import hypertune
from recipes import cnn
from tests.conftest import REPO
from tests.helpers import assert_one_line_error, invoke

optuna = pytest.importorskip("optuna")

TINY = ["--dataset", "digits", "--epochs", "1", "--set", "steps_per_epoch=2"]
SPACE = ["--space", "learning_rate=log:1e-3..1e-2", "--space", "batch_size=16,32"]


def test_space_is_parsed_against_the_config():
    space = hypertune.parse_space(
        ["learning_rate=log:1e-4..1e-2", "batch_size=int:16..128", "dropout=0.1..0.5", "arch=source,lenet5", "augment=true,false"],
        cnn.Config, "cnn",
    )
    assert space["learning_rate"] == hypertune.Param("learning_rate", "float", 1e-4, 1e-2, log=True)
    assert space["batch_size"] == hypertune.Param("batch_size", "int", 16, 128)
    assert space["dropout"].kind == "float" and not space["dropout"].log
    assert space["arch"].choices == ("source", "lenet5")
    assert space["augment"].choices == (True, False)
    assert hypertune.parse_space(["batch_size=32,64"], cnn.Config, "cnn")["batch_size"].choices == (32, 64)


@pytest.mark.parametrize(
    "spec, fragments",
    [
        ("lerning_rate=1e-4..1e-2", ["unknown config key 'lerning_rate'", "Did you mean 'learning_rate'?"]),
        ("dropout=0.1..1.5", ["dropout must be in [0, 1)"]),
        ("learning_rate=log:0..1e-2", ["learning_rate must be positive"]),
        ("seed=log:0..10", ["a log: range needs LOW > 0"]),
        ("learning_rate=1e-2..1e-4", ["LOW < HIGH"]),
        ("learning_rate=int:1..5", ["int: needs an int field"]),
        ("arch=0..1", ["arch is one of source, tf1, lenet5", "list the choices"]),
        ("arch=source,resnet", ["arch must be one of source, tf1, lenet5"]),
        ("batch_size=32,sixty", ["batch_size must be int"]),
        ("learning_rate=0.01", ["is one value", "--set learning_rate=0.01"]),
        ("learning_rate", ["--space expects KEY=VALUES"]),
        ("learning_rate=exp:1..2", ["unknown prefix 'exp'"]),
        ("dataset=digits,mnist", ["chooses the data"]),
    ],
)
def test_bad_space_is_one_line_before_tensorflow(spec, fragments, tmp_path):
    assert_one_line_error(invoke("tune", "cnn", "--space", spec, "-o", tmp_path / "out"), *fragments)
    assert not (tmp_path / "out").exists()


def test_other_refusals(tmp_path):
    assert_one_line_error(invoke("tune", "cnn", "-o", tmp_path / "out"), "at least one --space")
    assert_one_line_error(invoke("tune", "cnn", *SPACE, "--set", "batch_size=8", "-o", tmp_path / "out"), "both searched")
    assert_one_line_error(invoke("tune", "cnn", *SPACE, "--space", "batch_size=8,16"), "given twice")
    assert_one_line_error(invoke("tune", "cnn", *SPACE, "--trials", "0"), "--trials must be a positive integer")
    assert_one_line_error(invoke("tune", "cnn", *SPACE, "--dataset", "imagenet", "-o", tmp_path / "out"), "unknown dataset 'imagenet'")
    (tmp_path / "old" / "trial-000").mkdir(parents=True)
    assert_one_line_error(invoke("tune", "cnn", *SPACE, *TINY, "-o", tmp_path / "old"), "no study.log")


def test_tune_validation_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from dlcli.cli.app import app\n"
        "for args in (['tune', '--help'], ['runs', '--help'], ['tune', 'cnn', '--space', 'dropout=0..2']):\n"
        "    CliRunner().invoke(app, args)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def _study(out):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    return optuna.load_study(study_name="dlcli-tune", storage=JournalStorage(JournalFileBackend(str(out / "study.log"))))


def _states(out):
    if not (out / "study.log").exists():
        return []
    try:
        return [t.state.name for t in _study(out).trials]
    except Exception:  # created but not yet holding the study: read again
        return []


def test_a_stopped_search_continues_to_exactly_trials(tmp_path):
    """SIGTERM once two trials are done; the same command again ends with exactly --trials
    trials, numbered 0..2, each in its own folder, each trained once; best.toml trains."""
    out = tmp_path / "tune"
    command = [sys.executable, "-m", "dlcli", "tune", "cnn", *TINY, *SPACE, "--trials", "3", "-o", str(out), "--json"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=log, text=True, cwd=REPO, env=env)
        deadline = time.monotonic() + 400
        while _states(out).count("COMPLETE") < 2 and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _states(out).count("COMPLETE") == 2, (_states(out), (tmp_path / "first.log").read_text()[-3000:])
        first.send_signal(signal.SIGTERM)
        first.communicate(timeout=300)
    stderr = (tmp_path / "first.log").read_text()
    assert first.returncode == 143, stderr[-3000:]
    assert "Run the same command again" in stderr or "run the same command again" in stderr
    assert _states(out).count("COMPLETE") == 2

    second = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=400)
    assert second.returncode == 0, second.stderr[-3000:]
    summary = json.loads(second.stdout)
    assert [t["number"] for t in summary["trials"]] == [0, 1, 2]
    assert all(t["state"] == "complete" and t["epochs"] == 1 for t in summary["trials"]), summary["trials"]
    assert sorted(p.name for p in out.glob("trial-*")) == ["trial-000", "trial-001", "trial-002"]
    best = min(summary["trials"], key=lambda t: t["value"])
    assert summary["best"]["trial"] == best["number"] and summary["best"]["value"] == best["value"]
    assert best["value"] == hypertune.objective(out / f"trial-{best['number']:03d}", "val_loss")

    # Complete: the same command only shows the table; another search in the folder is refused.
    again = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=120)
    assert again.returncode == 0 and json.loads(again.stdout)["trials"] == summary["trials"]
    assert_one_line_error(invoke("tune", "cnn", *TINY, "--space", "learning_rate=1e-3..1e-2", "-o", out), "holds another search", "space")
    assert_one_line_error(invoke("tune", "cnn", *SPACE, "--dataset", "digits", "--epochs", "2", "-o", out), "holds another search", "epochs=1 there, 2 here")

    # The trials are ordinary run folders: `dlcli runs` shows what differs between them.
    listed = invoke("runs", out, "--json", "--sort", "val_loss")
    assert listed.exit_code == 0, listed.output
    table = json.loads(listed.stdout)
    assert "learning_rate" in table["differing_keys"] and "epochs" not in table["differing_keys"]
    assert table["runs"][0]["run"] == f"trial-{best['number']:03d}"

    # best.toml is what `dlcli train --config` takes.
    final = invoke("train", "cnn", "--config", out / "best.toml", "-o", tmp_path / "final", "--json")
    assert final.exit_code == 0, final.output
    saved = json.loads((tmp_path / "final" / "config.json").read_text())["config"]
    for key, value in summary["best"]["params"].items():
        assert saved[key] == value
    assert saved["dataset"] == "digits" and saved["epochs"] == 1


def test_vertex_tuning_arguments_and_metric_report(tmp_path, monkeypatch):
    """A Vertex AI tuning trial: `--learning_rate=0.002` as a config key, the final val_loss
    reported through cloudml-hypertune where the service reads it."""
    pytest.importorskip("hypertune")
    metrics_file = tmp_path / "hypertune" / "output.metrics"
    monkeypatch.setenv("CLOUD_ML_TRIAL_ID", "7")
    monkeypatch.setenv("CLOUD_ML_HP_METRIC_FILE", str(metrics_file))
    monkeypatch.delenv("CLOUD_ML_HP_METRIC_TAG", raising=False)
    run = tmp_path / "run"
    result = invoke("train", "cnn", "--dataset", "digits", "--epochs", "1", "--learning_rate=0.002", "--batch_size", "32",
                    "--steps-per-epoch=2", "-o", run, "--json")
    assert result.exit_code == 0, result.output
    config = json.loads((run / "config.json").read_text())["config"]
    assert (config["learning_rate"], config["batch_size"], config["steps_per_epoch"]) == (0.002, 32, 2)
    reported = [json.loads(line) for line in metrics_file.read_text().splitlines()]
    assert len(reported) == 1 and reported[0]["trial"] == "7"
    assert float(reported[0]["val_loss"]) == pytest.approx(hypertune.objective(run, "val_loss"))


def test_vertex_style_arguments_are_refused_like_set():
    assert_one_line_error(invoke("train", "cnn", "--learning_rat=0.1"), "No such option: --learning_rat", "Did you mean 'learning_rate'?", "Valid keys:")
    assert_one_line_error(invoke("train", "cnn", "--dropout=2"), "dropout must be in [0, 1)")
    assert_one_line_error(invoke("train", "cnn", "--arch"), "--arch needs a value")
    assert_one_line_error(invoke("train", "cnn", "stray"), "unexpected argument 'stray'")
    with pytest.raises(DlcliError):
        hypertune.extra_sets(["--", "x"], cnn.Config, "cnn")
    assert hypertune.extra_sets(["--learning_rate=0.1", "--batch-size", "8"], cnn.Config, "cnn") == ["learning_rate=0.1", "batch_size=8"]


def test_best_toml_round_trips(tmp_path):
    from dlcli.models import config as config_lib

    values = {"learning_rate": 0.0012345678901234, "batch_size": 32, "arch": 'le"net', "augment": True, "dropout": 1e-05}
    hypertune.write_best_toml(tmp_path / "best.toml", values, "a comment\nover two lines")
    assert config_lib.read_toml(tmp_path / "best.toml") == values


def test_objective_is_read_at_the_epoch_the_run_kept(tmp_path):
    from dlcli.runs import rundir

    rundir.write_history(tmp_path / "history.csv", [{"epoch": e, "val_loss": v, "val_accuracy": 0.5} for e, v in ((1, 0.9), (2, 0.4), (3, 0.6))])
    assert hypertune.objective(tmp_path, "val_loss") == 0.6  # no metrics.json: the last epoch
    rundir.write_json(tmp_path / "metrics.json", {"best_epoch": 2, "model_epoch": 2})
    assert hypertune.objective(tmp_path, "val_loss") == 0.4  # early stopping kept epoch 2
    with pytest.raises(DlcliError, match="val_loss, val_accuracy"):
        hypertune.objective(tmp_path, "val_auc")
    assert (config_lib.auto_mode("val_accuracy"), config_lib.auto_mode("val_mae")) == ("max", "min")
