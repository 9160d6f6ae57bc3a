"""The CLI, through Typer's CliRunner and as a real subprocess: output, exit codes, bad input."""

import json
import subprocess
import sys

import pytest

from dlcli.runs.record import DataSpec, RunRecord
from dlcli.training import registry
from tests.helpers import assert_one_line_error, invoke, write_idx, write_idx_folder


def test_help_and_list_do_not_import_tensorflow():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from dlcli.cli.app import app\n"
        "for args in (['--help'], ['list'], ['list', '--json'], ['show', 'cnn'], ['train', '--help']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow was imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_help_as_a_subprocess(dlcli_subprocess):
    result = dlcli_subprocess("--help")
    assert result.returncode == 0
    for command in ("list", "show", "train", "evaluate"):
        assert command in result.stdout


def test_list_shows_every_recipe():
    result = invoke("list", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.stdout)
    assert [row["name"] for row in rows] == registry.recipe_names()
    assert all(row["summary"] and row["default_dataset"] for row in rows)
    table = invoke("list")
    assert all(name in table.stdout for name in registry.recipe_names())


@pytest.mark.parametrize("name", registry.recipe_names())
def test_show_every_recipe(name):
    result = invoke("show", name, "--json")
    assert result.exit_code == 0
    info = json.loads(result.stdout)
    assert info["datasets"] and info["modernises"] and "epochs" in info["config"]
    table = invoke("show", name)
    assert "what it modernises" in table.stdout


def test_show_model_summary_builds_the_model():
    result = invoke("show", "cnn", "--model", "--dataset", "digits")
    assert result.exit_code == 0, result.output
    assert "Total params" in result.stdout and "conv2d" in result.stdout.lower()


def test_unknown_command_and_option_are_one_line_usage_errors():
    assert_one_line_error(invoke("trian"), "No such command")
    assert_one_line_error(invoke("train", "cnn", "--epoch", "3"), "No such option")
    assert_one_line_error(invoke("train", "cnn", "--epochs", "many"), "--epochs")
    assert_one_line_error(invoke("train"), "Missing argument")


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["train", "cnm"], ["unknown recipe 'cnm'", "Did you mean 'cnn'?"]),
        (["show", "nope"], ["unknown recipe 'nope'", "Available: "]),
        (["train", "cnn", "--dataset", "imagenet"], ["unknown dataset 'imagenet'", "digits"]),
        (["train", "cnn", "--data", "/no/such/folder"], ["--data path does not exist: /no/such/folder"]),
        (["train", "cnn", "--epochs", "0"], ["epochs must be positive. Received: epochs=0"]),
        (["train", "cnn", "--batch-size", "-3"], ["batch_size must be positive (or 0 for the whole training split). Received: batch_size=-3"]),
        (["train", "cnn", "--learning-rate", "0"], ["learning_rate must be positive"]),
        (["train", "cnn", "--set", "arch=resnet"], ["arch must be one of source, tf1, lenet5"]),
        (["train", "cnn", "--set", "epochs=ten"], ["epochs must be int. Received: epochs='ten'"]),
        (["train", "cnn", "--set", "lr=0.1"], ["unknown config key 'lr'", "Valid keys:"]),
        (["train", "cnn", "--set", "arch"], ["--set expects key=value"]),
        (["train", "cnn", "--strategy", "warp"], ["'warp' is not one of", "mirrored"]),
        (["train", "cnn", "--cpu-devices", "0"], ["--cpu-devices must be a positive integer"]),
        (["train", "cnn", "--resume"], ["--resume needs --output"]),
        (["train", "cnn", "--config", "/no/such.toml"], ["config file not found"]),
        (["evaluate", "/no/such/run"], ["run folder not found"]),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, fragments):
    assert_one_line_error(invoke(*args), *fragments)


def test_bad_toml_names_the_problem(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("epochs = \n")
    assert_one_line_error(invoke("train", "cnn", "--config", bad), "invalid TOML", "line 1")
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("epochz = 3\n")
    assert_one_line_error(invoke("train", "cnn", "--config", unknown), "unknown config key 'epochz'", "'epochs'")


def test_evaluate_on_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    assert_one_line_error(invoke("evaluate", tmp_path), "is not a dlcli run folder", "config.json")


def test_bad_idx_files_are_one_line_errors(tmp_path):
    folder = write_idx_folder(tmp_path / "idx")
    write_idx(folder / "train-labels-idx1-ubyte.gz", [1, 2, 3], magic=2051)
    out = tmp_path / "run"
    assert_one_line_error(invoke("train", "cnn", "--data", folder, "-o", out), "train-labels-idx1-ubyte.gz", "magic number 2051")
    assert not out.exists()


def test_existing_run_is_never_overwritten_without_asking(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.keras").write_text("precious")
    assert_one_line_error(invoke("train", "cnn", "--dataset", "digits", "-o", run), "already holds files", "--overwrite")
    assert (run / "model.keras").read_text() == "precious"
    # a bad flag together with --overwrite fails before anything is touched
    assert_one_line_error(invoke("train", "cnn", "--dataset", "nope", "-o", run, "--overwrite"), "unknown dataset")
    assert (run / "model.keras").read_text() == "precious"


def test_resume_refuses_a_run_of_another_recipe(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    record = RunRecord(recipe="lstm", config={}, data=DataSpec(kind="text", source="reviews", input_shape=[400]))
    (run / "config.json").write_text(json.dumps(record.to_dict()))
    assert_one_line_error(invoke("train", "cnn", "-o", run, "--resume"), "run of recipe 'lstm', not 'cnn'")
    (run / "config.json").write_text(json.dumps({"recipe": "lstm", "config": {}}))  # not a run record
    assert_one_line_error(invoke("train", "cnn", "-o", run, "--resume"), "is not a dlcli run record: 'data' lacks a field")


def test_bad_input_as_a_subprocess_prints_one_line_and_exits_2(dlcli_subprocess):
    result = dlcli_subprocess("train", "cnm")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: unknown recipe 'cnm'. Did you mean 'cnn'? Available: " + ", ".join(registry.recipe_names()) + "."
    )
    assert result.stdout == ""


def test_bad_data_files_for_each_recipe_are_one_line_errors(tmp_path):
    from tests.helpers import write_image_folder

    table = tmp_path / "table.csv"
    table.write_text("rooms,name,price\n3,villa,100\n4,flat,120\n")
    assert_one_line_error(invoke("train", "regression", "--data", table, "--set", "target=cost"), "has no column 'cost'")
    assert_one_line_error(invoke("train", "regression", "--data", table, "--set", "target=price"), "has 2 row(s) with a target 'price'; at least 5")
    series = tmp_path / "series.csv"
    series.write_text("t,v\n" + "\n".join(f"{i},{i}" for i in range(20)))
    assert_one_line_error(invoke("train", "forecast", "--data", series, "--set", "column=v"), "too short for window=48")
    reviews = tmp_path / "reviews"
    (reviews / "train" / "pos").mkdir(parents=True)
    (reviews / "train" / "pos" / "1_9.txt").write_text("good")
    assert_one_line_error(invoke("train", "lstm", "--data", reviews), "not an aclImdb dataset", "train/neg")
    images = write_image_folder(tmp_path / "images")
    (images / "dog" / "wide.png").write_bytes(b"GIF89a but cut short")
    (images / "dog" / "notes.webp").write_text("not a picture")
    assert_one_line_error(invoke("train", "cnn", "--data", images), "notes.webp is not a readable image", "skip_bad=true")
