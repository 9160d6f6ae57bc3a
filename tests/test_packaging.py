"""The package, its container image and its shell completion stay consistent with pyproject."""

import json
import os
import re
import subprocess
import sys
import zipfile

import pytest

from dlcli import registry
from tests.conftest import REPO

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DOCKERFILE = (REPO / "Dockerfile").read_text()


def instructions(keyword):
    return [line.split(None, 1)[1] for line in DOCKERFILE.splitlines() if line.startswith(keyword + " ")]


def requirement(name):
    return next(d for d in PYPROJECT["project"]["dependencies"] if re.match(rf"{name}\b", d))


def test_the_image_builds_on_a_tensorflow_release_that_pyproject_accepts():
    (base_arg,) = [a for a in instructions("ARG") if a.startswith("BASE=")]
    match = re.fullmatch(r"BASE=tensorflow/tensorflow:(\d+)\.(\d+)\.(\d+)", base_arg)
    assert match, base_arg
    version = tuple(int(v) for v in match.groups())
    low, high = re.findall(r"(\d+)\.(\d+)", requirement("tensorflow"))
    assert (int(low[0]), int(low[1])) <= version[:2] < (int(high[0]), int(high[1]))
    gpu = f"tensorflow/tensorflow:{'.'.join(match.groups())}-gpu"
    assert gpu in DOCKERFILE and gpu in (REPO / "README.md").read_text()


def test_the_image_runs_dlcli_as_a_user_with_volumes_for_runs_and_data():
    assert instructions("ENTRYPOINT") == ['["dlcli"]']
    users = instructions("USER")
    assert users and users[-1] not in ("root", "0")
    volumes = json.loads(instructions("VOLUME")[0])
    assert set(volumes) == {"/runs", "/data"}
    assert re.search(r"TFDS_DATA_DIR=/data\b", DOCKERFILE)


def test_the_image_installs_every_package_pyproject_ships():
    copied = {line.split()[0] for line in instructions("COPY")}
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied and {"pyproject.toml"} <= copied
    assert "pip install ." in DOCKERFILE


def test_the_wheel_holds_every_recipe_and_the_console_script(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO), "-w", str(tmp_path)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("dlcli-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert all(f"recipes/{name}.py" in names for name in registry.recipe_names())
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "dlcli = dlcli.cli:main" in entry_points


@pytest.mark.parametrize(
    "words, expected",
    [("dlcli tr", {"train"}), ("dlcli train c", {"cnn"}), ("dlcli show re", {"regression"}), ("dlcli train cnn --dataset dig", {"digits"})],
)
def test_shell_completion_of_commands_recipes_and_datasets(words, expected):
    env = {**os.environ, "_DLCLI_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    result = subprocess.run([sys.executable, "-m", "dlcli"], env=env, capture_output=True, text=True, timeout=60)
    assert set(result.stdout.split()) >= expected, result.stdout + result.stderr
