"""Shared fixtures. The test process splits its CPU into two logical devices before TensorFlow
starts, so the loop is tested under MirroredStrategy as well as the default strategy."""

import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def pytest_configure(config):
    from dlcli.training import strategy

    strategy.split_cpu(2)


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data, the real datasets; tests that need them skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real datasets not found at {SHARED_DATA} (the ../shared folder beside the checkout)")
    return SHARED_DATA


@pytest.fixture
def dlcli_subprocess():
    """Runs the real `dlcli` entry point as a subprocess; returns the CompletedProcess."""
    import subprocess

    def run(*args, timeout=600, env=None):
        return subprocess.run(
            [sys.executable, "-m", "dlcli", *map(str, args)],
            capture_output=True, text=True, timeout=timeout, cwd=REPO,
            env={**os.environ, **(env or {})},
        )

    return run
