"""Long runs on the real datasets in ../shared/data (marker `slow`: run with `pytest -m slow`)."""

import json

import pytest
from typer.testing import CliRunner

from dlcli.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()


def test_cnn_on_real_mnist_reaches_0985_in_3_epochs(shared_data, tmp_path):
    result = runner.invoke(
        app, ["train", "cnn", "--data", str(shared_data / "mnist"), "--epochs", "3", "-o", str(tmp_path / "run"), "--json"]
    )
    assert result.exit_code == 0, result.output
    final = json.loads(result.stdout)
    assert final["test_examples"] == 10_000
    assert final["test"]["accuracy"] >= 0.985
