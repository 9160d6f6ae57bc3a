"""The package, its container image and its shell completion stay consistent with pyproject."""

import json
import os
import re
import subprocess
import sys
import zipfile

import pytest

from dlcli.training import registry
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


def test_the_image_runs_dlcli_with_volumes_for_runs_and_data_and_run_folders_in_runs():
    assert instructions("ENTRYPOINT") == ['["dlcli"]']
    # It starts as root only for dlcli to take on the owner of the mounted /runs
    # (dlcli/runs/container.py); the fallback user exists.
    assert not instructions("USER") and "useradd --create-home --uid 1000 dlcli" in DOCKERFILE
    volumes = json.loads(instructions("VOLUME")[0])
    assert set(volumes) == {"/runs", "/data"}
    assert re.search(r"TFDS_DATA_DIR=/data\b", DOCKERFILE)
    assert re.search(r"DLCLI_RUNS=/runs\b", DOCKERFILE) and "DLCLI_CONTAINER=1" in DOCKERFILE
    assert instructions("WORKDIR")[-1] == "/runs"
    # TF_CPP_MIN_LOG_LEVEL set in the image would hide TensorFlow's lines even with DLCLI_DEBUG=1.
    assert "TF_CPP_MIN_LOG_LEVEL" not in DOCKERFILE


def test_the_build_context_leaves_out_what_the_image_does_not_need():
    ignored = (REPO / ".dockerignore").read_text().split()
    assert {".git", ".venv", "runs", "data"} <= set(ignored)
    copied = {line.split()[0] for line in instructions("COPY")}
    assert not copied & set(ignored), "the Dockerfile copies something .dockerignore leaves out"


def test_the_license_is_an_spdx_string_with_a_setuptools_that_reads_it():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    (backend,) = PYPROJECT["build-system"]["requires"]
    assert int(re.fullmatch(r"setuptools>=(\d+)", backend).group(1)) >= 77  # PEP 639 strings


def test_the_default_run_folder_honours_dlcli_runs(monkeypatch, tmp_path):
    from dlcli.runs import rundir

    monkeypatch.setenv("DLCLI_RUNS", str(tmp_path))
    monkeypatch.delenv("AIP_MODEL_DIR", raising=False)
    path = rundir.resolve_run_dir(None, "cnn")
    assert path.parent == tmp_path and path.name.startswith("cnn-")
    monkeypatch.delenv("DLCLI_RUNS")
    assert rundir.resolve_run_dir(None, "cnn").parent.as_posix() == "runs"


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="switching users needs root")
def test_in_the_container_dlcli_takes_on_the_owner_of_the_mounted_runs_folder(tmp_path):
    """What the image's root start does: a mounted folder owned by uid 4321 makes dlcli uid 4321,
    with a writable HOME; one owned by root keeps root. (Run in a child: it changes users.)"""
    runs = tmp_path / "runs"
    runs.mkdir()
    os.chown(runs, 4321, 4322)
    code = (
        "import os, sys\n"
        "from dlcli.runs import container\n"
        f"container.VOLUMES = ({str(runs)!r},)\n"
        "container.mount_points = lambda: set(container.VOLUMES)\n"
        "container.adopt_volume_owner()\n"
        "print(os.getuid(), os.getgid(), os.access(os.environ['HOME'], os.W_OK))\n"
    )
    def run(env):
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}, cwd=REPO, timeout=60)

    result = run({"DLCLI_CONTAINER": "1"})
    assert result.stdout.split() == ["4321", "4322", "True"], result.stderr
    assert run({"DLCLI_CONTAINER": ""}).stdout.split()[:2] == ["0", "0"]  # outside the image: nothing changes
    os.chown(runs, 0, 0)
    assert run({"DLCLI_CONTAINER": "1"}).stdout.split()[:2] == ["0", "0"]  # root's folder is written as root


def test_the_image_installs_every_package_pyproject_ships():
    copied = {line.split()[0] for line in instructions("COPY")}
    packages = {p.rstrip("*") for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages <= copied and {"pyproject.toml"} <= copied
    # `pip install .` or with extras, `pip install ".[${EXTRAS}]"`: the project itself, from the copied tree.
    assert any(re.fullmatch(r'pip install "?\.(\[[^]]*\])?"?', line) for line in instructions("RUN")), instructions("RUN")


def test_the_image_installs_the_extras_dlcli_serve_and_tune_need_and_ci_installs_serve():
    """`docker run ... dlcli serve /runs/NAME` (Vertex AI's custom container) works on the default image."""
    (extras,) = [a.split("=", 1)[1] for a in instructions("ARG") if a.startswith("EXTRAS=")]
    defined = PYPROJECT["project"]["optional-dependencies"]
    assert {"tune", "serve"} <= set(extras.split(",")) <= set(defined), extras
    assert "dlcli[serve]" in defined["test"]
    assert {re.match(r"[\w-]+", d).group(0) for d in defined["serve"]} >= {"starlette", "uvicorn", "httptools", "prometheus-client"}


def test_the_wheel_holds_every_recipe_and_the_console_script(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(REPO), "-w", str(tmp_path)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("dlcli-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert all(f"recipes/{name}.py" in names for name in registry.recipe_names())
    entry_points = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "dlcli = dlcli.cli.app:main" in entry_points


@pytest.mark.parametrize(
    "words, expected",
    [("dlcli tr", {"train"}), ("dlcli train c", {"cnn"}), ("dlcli show re", {"regression"}), ("dlcli train cnn --dataset dig", {"digits"})],
)
def test_shell_completion_of_commands_recipes_and_datasets(words, expected):
    env = {**os.environ, "_DLCLI_COMPLETE": "complete_bash", "COMP_WORDS": words, "COMP_CWORD": str(len(words.split()) - 1)}
    result = subprocess.run([sys.executable, "-m", "dlcli"], env=env, capture_output=True, text=True, timeout=60)
    assert set(result.stdout.split()) >= expected, result.stdout + result.stderr
