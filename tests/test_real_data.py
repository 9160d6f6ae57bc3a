"""Long runs on the real datasets in ../shared/data (marker `slow`: run with `pytest -m slow`).

Every recipe must reach its published reference (benchmarks/references.py) with its defaults.
"""

import json

import pytest
from typer.testing import CliRunner

from benchmarks.references import REFERENCES, check
from dlcli.cli.app import app

pytestmark = pytest.mark.slow
runner = CliRunner()
_runs = {}


def train(recipe, args, tmp_path_factory):
    key = (recipe, tuple(args))
    if key not in _runs:
        out = tmp_path_factory.mktemp(recipe) / "run"
        result = runner.invoke(app, ["train", recipe, *args, "-o", str(out), "--json"])
        assert result.exit_code == 0, result.output[-3000:]
        _runs[key] = json.loads(result.stdout)
    return _runs[key]


@pytest.mark.parametrize("row", REFERENCES, ids=[f"{r[0]}: {r[1]}" for r in REFERENCES])
def test_recipe_reaches_its_reference(row, shared_data, tmp_path_factory):
    recipe, _, args, path, op, threshold, _ = row
    metrics = train(recipe, args, tmp_path_factory)
    value, bound, passed = check(metrics, path, op, threshold)
    assert passed, f"{recipe}: {path} = {value} is not {op} {bound}"


def test_cnn_on_real_mnist_reaches_0985_in_3_epochs(shared_data, tmp_path):
    result = runner.invoke(
        app, ["train", "cnn", "--data", str(shared_data / "mnist"), "--epochs", "3", "-o", str(tmp_path / "run"), "--json"]
    )
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)
    assert final["test_examples"] == 10_000
    assert final["test"]["accuracy"] >= 0.985


def test_speech_leave_one_speaker_out_reaches_its_bars(shared_data):
    from benchmarks.references import SPEAKERS, SPEAKERS_MEAN_ACCURACY, SPEAKERS_WORST_ACCURACY
    from benchmarks.speech_speakers import measure

    results = measure(SPEAKERS)  # class folders with the defaults, as the README's row was measured
    accuracies = [accuracy for accuracy, _ in results.values()]
    assert sum(accuracies) / len(accuracies) >= SPEAKERS_MEAN_ACCURACY, results
    assert min(accuracies) >= SPEAKERS_WORST_ACCURACY, results
