"""The docs stay true to the code: the CLI reference is what Typer generates from the app today,
and the README stays a short page that opens with the two set-up commands and links into docs/.
(`mkdocs build --strict`, in CI, checks the site's links and anchors.)"""

import importlib.util
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

README = REPO / "README.md"
CLI_REFERENCE = REPO / "docs" / "cli.md"
GENERATE = ["typer", "dlcli.cli.app", "utils", "docs", "--name", "dlcli", "--output"]
SET_UP = [
    "```bash",
    "python3 -m venv .venv && . .venv/bin/activate && pip install -e . && dlcli train cnn --dataset digits --epochs 20",
    'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[test]" && pytest',
    "```",
]


@pytest.mark.skipif(importlib.util.find_spec("typer.cli") is None, reason="the `typer` command (typer.cli) is not installed")
def test_the_cli_reference_is_what_typer_generates_from_the_app(tmp_path):
    generated = tmp_path / "cli.md"
    # `python -m typer` is the `typer` command, run by this interpreter on the dlcli under test.
    result = subprocess.run(
        [sys.executable, "-m", *GENERATE, str(generated)], capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert generated.read_text() == CLI_REFERENCE.read_text(), (
        "docs/cli.md is out of date with the CLI; regenerate it with: "
        f"{' '.join(GENERATE)} docs/cli.md"
    )


def test_the_readme_is_short_and_opens_with_the_two_set_up_commands():
    lines = README.read_text().splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move detail into docs/ (at most 200)"
    assert lines[0] == "# dlcli"
    assert lines[2:6] == SET_UP


def test_the_readme_links_into_docs_pages_that_exist():
    links = re.findall(r"\]\((docs/[^)#\s]+)(?:#[^)\s]*)?\)", README.read_text())
    assert links, "README.md links to no page in docs/"
    assert [link for link in links if not (REPO / link).is_file()] == []
