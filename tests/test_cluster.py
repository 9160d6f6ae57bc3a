"""What cluster engines give, read as one cluster: TF_CONFIG as TFJob and Vertex AI write it
(chief, TFJob's legacy `master`, an `evaluator`; `ps` refused), Vertex AI's CLUSTER_SPEC, and
Slurm's SLURM_* variables (compressed node lists, tasks per node, block/cyclic/plane)."""

import json

import pytest
from typer.testing import CliRunner

from dlcli.cli.app import app
from dlcli.cli.commands import train
from dlcli.core import cluster
from dlcli.core.errors import DlcliError
from dlcli.runs import rundir
from dlcli.training import strategy

PLATFORM = ("TF_CONFIG", "CLUSTER_SPEC", "DLCLI_SLURM_PORT_BASE")


@pytest.fixture(autouse=True)
def no_cluster(monkeypatch):
    import os

    for name in [*PLATFORM, *(n for n in os.environ if n.startswith(("SLURM", "AIP_")))]:
        monkeypatch.delenv(name, raising=False)


def set_tf_config(monkeypatch, cluster_jobs, kind, index=0, variable="TF_CONFIG"):
    monkeypatch.setenv(variable, json.dumps({"cluster": cluster_jobs, "task": {"type": kind, "index": index}}))


TFJOB = {"master": ["job-master-0:2222"], "worker": ["job-worker-0:2222", "job-worker-1:2222"], "evaluator": ["job-evaluator-0:2222"]}


@pytest.mark.parametrize(
    "kind, index, task_type, chief",
    [("master", 0, "chief", True), ("worker", 0, "worker", False), ("worker", 1, "worker", False), ("evaluator", 0, "evaluator", False)],
)
def test_tfjob_master_is_the_chief_and_the_evaluator_is_a_task(monkeypatch, kind, index, task_type, chief):
    set_tf_config(monkeypatch, TFJOB, kind, index)
    spec = cluster.tf_config()
    assert spec["cluster"]["chief"] == ["job-master-0:2222"] and "master" not in spec["cluster"]
    assert spec["task"] == {"type": task_type, "index": index}
    assert cluster.task_type() == task_type and cluster.is_chief() is chief
    assert cluster.training_cluster(spec) == {"chief": TFJOB["master"], "worker": TFJOB["worker"]}
    assert strategy.auto_choice(tpu=None) == "multi-worker"


def test_the_strategy_connects_the_chief_and_workers_only(monkeypatch):
    set_tf_config(monkeypatch, TFJOB, "worker", 1)
    resolver = strategy.cluster_resolver(cluster.tf_config())
    assert resolver.cluster_spec().as_dict() == {"chief": TFJOB["master"], "worker": TFJOB["worker"]}
    assert (resolver.task_type, resolver.task_id, resolver.rpc_layer) == ("worker", 1, "grpc")


@pytest.mark.parametrize(
    "jobs, kind, message",
    [
        ({"chief": ["h:0"], "worker": ["h:1"], "ps": ["h:2"]}, "ps", "TF_CONFIG task type 'ps' is not supported: dlcli trains with MultiWorkerMirroredStrategy"),
        ({"master": ["h:0"], "chief": ["h:1"]}, "chief", "names both a 'master' and a 'chief' job"),
        ({"chief": ["h:0", "h:1"]}, "chief", "has 2 chiefs"),
    ],
)
def test_what_dlcli_cannot_run_is_one_line_exit_2(monkeypatch, jobs, kind, message):
    set_tf_config(monkeypatch, jobs, kind)
    with pytest.raises(DlcliError, match=message.replace("(", r"\(")):
        cluster.tf_config()
    result = CliRunner().invoke(app, ["train", "cnn", "--dataset", "digits"])
    assert result.exit_code == 2 and result.stderr.count("\n") == 1 and message in result.stderr


VERTEX = {
    "cluster": {
        "workerpool0": ["cmle-training-workerpool0-1a2b3c-0:2222"],
        "workerpool1": ["cmle-training-workerpool1-1a2b3c-0:2222", "cmle-training-workerpool1-1a2b3c-1:2222"],
        "workerpool3": ["cmle-training-workerpool3-1a2b3c-0:2222"],
    },
    "environment": "cloud",
    "task": {"type": "workerpool1", "index": 1, "trial": ""},
    "job": '{"python_module":"","package_uris":[],"job_args":[]}',
}


def test_vertex_cluster_spec_is_read_where_tf_config_is_absent(monkeypatch):
    monkeypatch.setenv("CLUSTER_SPEC", json.dumps(VERTEX))
    spec = cluster.tf_config()
    assert spec == {
        "cluster": {"chief": VERTEX["cluster"]["workerpool0"], "worker": VERTEX["cluster"]["workerpool1"], "evaluator": VERTEX["cluster"]["workerpool3"]},
        "task": {"type": "worker", "index": 1},
    }
    assert cluster.source() == "CLUSTER_SPEC" and not cluster.is_chief() and train.restarting_platform()
    monkeypatch.setenv("CLUSTER_SPEC", json.dumps({**VERTEX, "task": {"type": "workerpool3", "index": 0}}))
    assert cluster.task_type() == "evaluator"
    monkeypatch.setenv("CLUSTER_SPEC", json.dumps({**VERTEX, "task": {"type": "workerpool0", "index": 0}}))
    assert cluster.is_chief()
    # Vertex AI writes TF_CONFIG too; where both are set, TF_CONFIG is what TensorFlow reads.
    set_tf_config(monkeypatch, {"worker": ["a:1", "b:1"]}, "worker", 1)
    assert cluster.source() == "TF_CONFIG" and cluster.tf_config()["cluster"] == {"worker": ["a:1", "b:1"]}


def test_a_cluster_spec_with_a_parameter_server_task_or_an_unknown_pool_is_one_line(monkeypatch):
    monkeypatch.setenv("CLUSTER_SPEC", json.dumps({**VERTEX, "cluster": {**VERTEX["cluster"], "workerpool2": ["ps:1"]}, "task": {"type": "workerpool2", "index": 0}}))
    with pytest.raises(DlcliError, match="CLUSTER_SPEC task type 'ps' is not supported"):
        cluster.tf_config()
    monkeypatch.setenv("CLUSTER_SPEC", json.dumps({**VERTEX, "cluster": {"pool9": ["h:1"]}}))
    with pytest.raises(DlcliError, match=r"CLUSTER_SPEC has worker pools \['pool9'\]"):
        cluster.tf_config()


# ## Slurm


@pytest.mark.parametrize(
    "text, hosts",
    [
        ("vm", ["vm"]),
        ("node[01-03,7]", ["node01", "node02", "node03", "node7"]),
        ("gpu[1-2],login1,cpu-[008-010]", ["gpu1", "gpu2", "login1", "cpu-008", "cpu-009", "cpu-010"]),
        ("rack[1-2]-n[1-2]", ["rack1-n1", "rack1-n2", "rack2-n1", "rack2-n2"]),
    ],
)
def test_slurm_node_lists_expand(text, hosts):
    assert cluster.expand_nodelist(text) == hosts


@pytest.mark.parametrize("text", ["node[1-", "node[a-b]", ""])
def test_an_unreadable_node_list_is_one_line(text):
    with pytest.raises(DlcliError, match="node list"):
        cluster.expand_nodelist(text)


def test_slurm_tasks_per_node_expand():
    assert cluster.expand_tasks_per_node("2(x3),1") == [2, 2, 2, 1]
    assert cluster.expand_tasks_per_node("4") == [4]
    with pytest.raises(DlcliError, match="tasks per node"):
        cluster.expand_tasks_per_node("2(3)")


@pytest.mark.parametrize(
    "distribution, placement",
    [
        ("block", [0, 0, 0, 1, 1, 2]),
        ("", [0, 0, 0, 1, 1, 2]),  # srun's default
        ("block:cyclic", [0, 0, 0, 1, 1, 2]),  # the second part places tasks on a node's sockets
        ("cyclic", [0, 1, 2, 0, 1, 0]),
        ("cyclic:block", [0, 1, 2, 0, 1, 0]),
        ("plane=2", [0, 0, 1, 1, 2, 0]),
    ],
)
def test_slurm_distributions_place_tasks_as_slurm_does(distribution, placement):
    assert cluster.task_nodes([3, 2, 1], distribution) == placement


def test_an_arbitrary_distribution_is_one_line():
    with pytest.raises(DlcliError, match="--distribution block, cyclic or plane=N"):
        cluster.task_nodes([1, 1], "arbitrary")


def slurm_env(procid, **extra):
    env = {
        "SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_PROCID": str(procid), "SLURM_STEP_NUM_TASKS": "5",
        "SLURM_STEP_NODELIST": "node[01-02],gpu7", "SLURM_STEP_TASKS_PER_NODE": "2(x2),1",
    }
    return {**env, **extra}


def test_a_slurm_step_is_a_tf_config_with_a_port_block_per_job_and_step():
    base = cluster.slurm_port_base(slurm_env(0))
    assert base == 10000 + ((4242 * 4) % 1400) * 16 and base + 16 <= 32768  # below the ephemeral ports
    block = cluster.slurm_cluster(slurm_env(3))
    assert block == {
        "cluster": {"worker": [f"node01:{base}", f"node01:{base + 1}", f"node02:{base}", f"node02:{base + 1}", f"gpu7:{base}"]},
        "task": {"type": "worker", "index": 3},
    }
    cyclic = cluster.slurm_cluster(slurm_env(1, SLURM_DISTRIBUTION="cyclic"))["cluster"]["worker"]
    assert cyclic == [f"node01:{base}", f"node02:{base}", f"gpu7:{base}", f"node01:{base + 1}", f"node02:{base + 1}"]
    # Another job, or another step of the same job, on the same nodes: other ports.
    assert cluster.slurm_port_base(slurm_env(0, SLURM_JOB_ID="4243")) != base
    assert cluster.slurm_port_base(slurm_env(0, SLURM_STEP_ID="1")) != base
    assert cluster.slurm_cluster(slurm_env(0, DLCLI_SLURM_PORT_BASE="23000"))["cluster"]["worker"][:2] == ["node01:23000", "node01:23001"]


def test_slurm_outside_a_step_of_several_tasks_is_no_cluster():
    assert cluster.slurm_cluster({"SLURM_JOB_ID": "1", "SLURM_NTASKS": "2", "SLURM_PROCID": "0"}) == {}  # the sbatch script itself
    assert cluster.slurm_cluster({**slurm_env(0), "SLURM_STEP_NUM_TASKS": "1", "SLURM_STEP_TASKS_PER_NODE": "1"}) == {}


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"SLURM_STEP_TASKS_PER_NODE": "2,2"}, "Slurm's variables disagree"),
        ({"SLURMD_NODENAME": "node02"}, "Slurm task 0 runs on node02, not on node01"),
        ({"DLCLI_SLURM_PORT_BASE": "80"}, "DLCLI_SLURM_PORT_BASE must be a port number"),
    ],
)
def test_slurm_variables_that_do_not_fit_are_one_line(extra, message):
    with pytest.raises(DlcliError, match=message):
        cluster.slurm_cluster(slurm_env(0, **extra))


def test_under_srun_auto_trains_multi_worker_resumes_by_itself_and_names_the_run_after_the_job(monkeypatch):
    for name, value in slurm_env(4).items():
        monkeypatch.setenv(name, value)
    assert cluster.source() == "SLURM_*" and cluster.tf_config()["task"] == {"type": "worker", "index": 4}
    assert strategy.auto_choice(tpu=None) == "multi-worker" and not cluster.is_chief()
    assert train.restarting_platform()  # a requeued job runs the same command: it continues
    assert rundir.default_run_dir("cnn") == rundir.runs_root() / "cnn-slurm4242"
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert cluster.is_chief()
