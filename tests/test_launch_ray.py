"""`dlcli launch --ray`'s command line and checks, without a Ray cluster (the real cluster, with
workers killed, is tests/test_cluster_engines.py)."""

import sys
import types
from pathlib import Path

import pytest

from dlcli.launchers import ray as ray_launcher
from tests.helpers import assert_one_line_error, invoke

TRAIN = ["--", "train", "cnn", "--dataset", "digits", "-o"]


@pytest.fixture
def launched(monkeypatch):
    """What `dlcli launch --ray ...` hands to the Ray launcher, instead of starting it."""
    calls = []
    monkeypatch.setattr(ray_launcher, "launch", lambda *args, **kw: calls.append(args))
    return calls


@pytest.mark.parametrize(
    "options, address, workers, cpus, gpus, failures",
    [
        (["--ray"], "auto", 2, 1, 0, 3),  # no ADDRESS: auto (RAY_ADDRESS or the local cluster)
        (["--ray", "--workers", "4"], "auto", 4, 1, 0, 3),
        (["--ray", "10.0.0.5:6379", "--workers", "3", "--cpus-per-worker", "2", "--gpus-per-worker", "1", "--max-failures", "0"], "10.0.0.5:6379", 3, 2, 1, 0),
        (["--workers", "2", "--ray"], "auto", 2, 1, 0, 3),
    ],
)
def test_ray_options_reach_the_launcher(launched, tmp_path, options, address, workers, cpus, gpus, failures):
    result = invoke("launch", *options, *TRAIN, tmp_path / "run", "--ray")  # a --ray after -- belongs to the train command
    assert result.exit_code == 0, result.output
    (command, got_address, got_workers, got_cpus, got_gpus, got_failures), = launched
    assert (got_address, got_workers, got_cpus, got_gpus, got_failures) == (address, workers, cpus, gpus, failures)
    assert command == ["train", "cnn", "--dataset", "digits", "-o", str(tmp_path / "run"), "--ray"]


def test_ray_only_options_without_ray_are_one_line(tmp_path):
    assert_one_line_error(invoke("launch", "--max-failures", "2", *TRAIN, tmp_path / "run"), "--max-failures: for Ray workers only")
    assert_one_line_error(invoke("launch", "--ray", "--cpus-per-worker", "0", *TRAIN, tmp_path / "run"), "--cpus-per-worker must be positive")
    assert_one_line_error(invoke("launch", "--ray", "--evaluator", *TRAIN, tmp_path / "run"), "--evaluator runs with local workers only")


def test_without_ray_installed_ray_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    assert_one_line_error(invoke("launch", "--ray", *TRAIN, tmp_path / "run"), "--ray needs Ray Train, an optional extra", 'pip install -e ".[ray]"')
    assert not (tmp_path / "run").exists()


def test_the_run_folder_is_made_absolute_for_the_ray_workers(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    assert ray_launcher.with_absolute_output(["train", "cnn", "-o", "runs/a"]) == ["train", "cnn", "-o", str(tmp_path / "runs/a")]
    assert ray_launcher.with_absolute_output(["train", "cnn", "--output=b"]) == ["train", "cnn", f"--output={tmp_path / 'b'}"]
    assert ray_launcher.with_absolute_output(["train", "cnn", "-o", "gs://bucket/run"]) == ["train", "cnn", "-o", "gs://bucket/run"]


def test_a_run_folder_some_ray_node_does_not_see_is_one_line(monkeypatch, tmp_path):
    """Each alive node is asked (a task pinned to it) whether it sees a probe file the launcher
    wrote beside the run folder; here the second node's answer is no."""
    from ray.util import scheduling_strategies  # noqa: F401  (the launcher imports it)

    a, b, c = ("%056x" % n for n in (1, 2, 3))  # Ray's node ids: 28 bytes in hex
    nodes = [{"NodeID": a, "Alive": True, "Resources": {"CPU": 1}, "NodeManagerAddress": "10.0.0.1"},
             {"NodeID": b, "Alive": True, "Resources": {"CPU": 1}, "NodeManagerAddress": "10.0.0.2"},
             {"NodeID": c, "Alive": False, "Resources": {"CPU": 1}, "NodeManagerAddress": "10.0.0.3"}]
    probes = []

    class Task:
        def __init__(self, node=None):
            self.node = node

        def options(self, scheduling_strategy):
            return Task(scheduling_strategy.node_id)

        def remote(self, path):
            probes.append(path)
            return Path(path).exists() and self.node == a

    fake = types.SimpleNamespace(remote=lambda **kw: lambda f: Task(), nodes=lambda: nodes, get=lambda answers: answers)
    run_dir = tmp_path / "runs" / "cnn"
    with pytest.raises(ray_launcher.DlcliError, match=r"the run folder .* is not seen by the Ray node\(s\) at 10.0.0.2: --output must be storage every node sees"):
        ray_launcher.check_shared(fake, run_dir)
    assert len(probes) == 2 and not Path(probes[0]).exists()  # the probe is gone again
    nodes[1]["NodeID"] = a
    ray_launcher.check_shared(fake, run_dir)
    ray_launcher.check_shared(fake, "gs://bucket/run")  # gs://: every node reaches it
