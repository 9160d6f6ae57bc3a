"""The cluster this process is part of, read without TensorFlow from what the engine that
started it gives: TF_CONFIG (Kubeflow's TFJob, Vertex AI, Ray Train, `dlcli launch`), else
Vertex AI's CLUSTER_SPEC, else Slurm's SLURM_* variables of a step of several tasks.

Whatever the source, the answer has TF_CONFIG's shape, `{"cluster": {job: ["host:port", ...]},
"task": {"type": job, "index": i}}`, with TFJob's legacy `master` read as `chief`. Its tasks are
`chief` and `worker` (they train, with MultiWorkerMirroredStrategy) and an optional `evaluator`
(it follows the run folder and evaluates each checkpoint); a parameter server is refused.
"""

import json
import os
import re

from dlcli.core.errors import DlcliError

TRAINING_JOBS = ("chief", "worker")
# Vertex AI's worker pools, in the order of the job's workerPoolSpecs[]: the primary replica,
# the workers, parameter servers (or Reduction Server), evaluators.
VERTEX_POOLS = {"workerpool0": "chief", "workerpool1": "worker", "workerpool2": "ps", "workerpool3": "evaluator"}
SUPPORTED = "dlcli trains with MultiWorkerMirroredStrategy, whose tasks are 'chief' (or TFJob's 'master') and 'worker', plus an optional 'evaluator'"

# Slurm: each (job, step) gets its own block of ports on a node, so that two jobs sharing a node
# do not collide; the block's start is derived from the job and step ids, below the ephemeral
# range (32768+). DLCLI_SLURM_PORT_BASE sets it instead.
SLURM_PORT_FIRST = 10000
SLURM_PORT_SPAN = 16  # tasks of one step on one node
SLURM_PORT_SLOTS = 1400


def tf_config():
    """The cluster as a TF_CONFIG-shaped dict (see the module docstring), or {} when this process
    is not part of one. Raises DlcliError, in one line, for a description that cannot be used."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if raw:
        return _checked(_parsed(raw, "TF_CONFIG"), "TF_CONFIG")
    raw = os.environ.get("CLUSTER_SPEC", "").strip()
    if raw:
        return _checked(vertex_cluster_spec(_parsed(raw, "CLUSTER_SPEC")), "CLUSTER_SPEC")
    spec = slurm_cluster(os.environ)
    return _checked(spec, "SLURM_*") if spec else {}


def source():
    """Which variable describes the cluster: 'TF_CONFIG', 'CLUSTER_SPEC', 'SLURM_*' or None."""
    if os.environ.get("TF_CONFIG", "").strip():
        return "TF_CONFIG"
    if os.environ.get("CLUSTER_SPEC", "").strip():
        return "CLUSTER_SPEC"
    return "SLURM_*" if slurm_cluster(os.environ) else None


def task_type():
    """This process's task: 'chief', 'worker' or 'evaluator'; None outside a cluster."""
    spec = tf_config()
    return spec["task"]["type"] if spec else None


def training_cluster(spec):
    """The jobs that train ({'chief': [...], 'worker': [...]}, those present): what
    MultiWorkerMirroredStrategy connects; the evaluator takes no part in its collectives."""
    return {job: hosts for job, hosts in spec["cluster"].items() if job in TRAINING_JOBS and hosts}


def is_chief():
    """Whether this process writes the run's artifacts: yes, unless the cluster makes it a worker
    other than the chief (the 'chief' task, or worker 0 when the cluster has no chief), or the
    evaluator (which writes its evaluations only)."""
    spec = tf_config()
    if not spec:
        return True
    task = spec["task"]
    return task["type"] == "chief" or (task["type"] == "worker" and task["index"] == 0 and "chief" not in spec["cluster"])


def _parsed(raw, variable):
    try:
        spec = json.loads(raw)
    except ValueError as e:
        raise DlcliError(f"{variable} is not valid JSON ({e}).") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict) or not isinstance(spec.get("task"), dict):
        raise DlcliError(f'{variable} must be {{"cluster": {{"worker": [...]}}, "task": {{"type": ..., "index": ...}}}}.')
    return spec


def vertex_cluster_spec(spec):
    """Vertex AI's CLUSTER_SPEC (`{"cluster": {"workerpool0": [...], ...}, "task": {"type":
    "workerpool0", "index": 0}}`) with its pools named as TF_CONFIG names them."""
    pools = spec["cluster"]
    unknown = sorted(set(pools) - set(VERTEX_POOLS))
    if unknown:
        raise DlcliError(f"CLUSTER_SPEC has worker pools {unknown}; Vertex AI names them {', '.join(VERTEX_POOLS)}.")
    kind = spec["task"].get("type")
    if kind not in VERTEX_POOLS:
        raise DlcliError(f"CLUSTER_SPEC task type {kind!r} is not a worker pool ({', '.join(VERTEX_POOLS)}).")
    cluster = {VERTEX_POOLS[pool]: hosts for pool, hosts in pools.items() if hosts}
    return {"cluster": cluster, "task": {"type": VERTEX_POOLS[kind], "index": spec["task"].get("index")}}


def _checked(spec, variable):
    """`spec` checked, with `master` as `chief`; raises DlcliError in one line."""
    jobs = dict(spec["cluster"])
    task = dict(spec["task"])
    if not all(isinstance(hosts, list) and all(isinstance(h, str) for h in hosts) for hosts in jobs.values()):
        raise DlcliError(f'{variable} cluster jobs must be lists of "host:port" strings, e.g. {{"worker": ["host0:2222", "host1:2222"]}}.')
    if "master" in jobs:  # TFJob's legacy name for the chief
        if "chief" in jobs:
            raise DlcliError(f"{variable} names both a 'master' and a 'chief' job; they are the same task, keep one.")
        jobs["chief"] = jobs.pop("master")
        if task.get("type") == "master":
            task["type"] = "chief"
    if task.get("type") not in jobs:
        raise DlcliError(f"{variable} task type {task.get('type')!r} is not a job of the cluster ({', '.join(jobs)}).")
    index = task.get("index")
    if isinstance(index, str) and index.isdigit():
        index = task["index"] = int(index)
    if not isinstance(index, int) or not 0 <= index < len(jobs[task["type"]]):
        raise DlcliError(
            f"{variable} task index {index!r} is out of range: job {task['type']!r} has {len(jobs[task['type']])} task(s)."
        )
    if not any(jobs.get(job) for job in TRAINING_JOBS):
        raise DlcliError(f"{variable} cluster has neither a 'chief' nor a 'worker' job.")
    if len(jobs.get("chief", [])) > 1:
        raise DlcliError(f"{variable} cluster has {len(jobs['chief'])} chiefs; a cluster has one (Vertex AI's workerpool0 replicaCount must be 1).")
    if task["type"] not in (*TRAINING_JOBS, "evaluator"):
        raise DlcliError(f"{variable} task type {task['type']!r} is not supported: {SUPPORTED}; parameter servers are not used.")
    return {"cluster": jobs, "task": {"type": task["type"], "index": index}}


# ## Slurm


def slurm_cluster(env):
    """The cluster of a Slurm job step of several tasks (srun, or srun inside sbatch), built from
    SLURM_PROCID, SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST, SLURM_STEP_TASKS_PER_NODE and
    SLURM_DISTRIBUTION; {} outside a step or for a step of one task. TensorFlow's own
    SlurmClusterResolver is not used: it runs nvidia-smi, and fails on CPU-only nodes."""
    tasks = env.get("SLURM_STEP_NUM_TASKS")
    if not tasks or not env.get("SLURM_PROCID"):
        return {}  # not inside an srun step (an sbatch script itself is one process)
    try:
        n, rank = int(tasks), int(env["SLURM_PROCID"])
    except ValueError:
        raise DlcliError(f"SLURM_STEP_NUM_TASKS={tasks!r} and SLURM_PROCID={env['SLURM_PROCID']!r} must be integers.") from None
    if n < 2:
        return {}
    nodes = expand_nodelist(env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or "")
    counts = expand_tasks_per_node(env.get("SLURM_STEP_TASKS_PER_NODE") or env.get("SLURM_TASKS_PER_NODE") or "")
    if len(nodes) != len(counts) or sum(counts) != n:
        raise DlcliError(
            f"Slurm's variables disagree: {n} tasks, nodes {nodes}, tasks per node {counts} "
            "(SLURM_STEP_NUM_TASKS, SLURM_STEP_NODELIST, SLURM_STEP_TASKS_PER_NODE)."
        )
    placement = task_nodes(counts, env.get("SLURM_DISTRIBUTION", ""), env.get("SLURM_DIST_PLANESIZE"))
    own = env.get("SLURMD_NODENAME")
    if own and own in nodes and nodes[placement[rank]] != own:
        raise DlcliError(
            f"Slurm task {rank} runs on {own}, not on {nodes[placement[rank]]} as the distribution "
            f"{env.get('SLURM_DISTRIBUTION') or 'block'} places it; run with srun's --distribution block or cyclic."
        )
    base = slurm_port_base(env)
    hosts, seen = [], {}
    for node in placement:
        local = seen.get(node, 0)
        seen[node] = local + 1
        hosts.append(f"{nodes[node]}:{base + local}")
    return {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": rank}}


def slurm_port_base(env):
    """The first port of this step's tasks on each node: DLCLI_SLURM_PORT_BASE, else derived from
    SLURM_JOB_ID and SLURM_STEP_ID so that two jobs running on one node use different ports."""
    given = env.get("DLCLI_SLURM_PORT_BASE")
    if given:
        if not given.isdigit() or not 1024 <= int(given) <= 65535 - SLURM_PORT_SPAN:
            raise DlcliError(f"DLCLI_SLURM_PORT_BASE must be a port number, 1024-{65535 - SLURM_PORT_SPAN}. Received: {given!r}")
        return int(given)
    job, step = (env.get(name, "0") for name in ("SLURM_JOB_ID", "SLURM_STEP_ID"))
    job, step = (int(v) if v.isdigit() else 0 for v in (job, step))
    return SLURM_PORT_FIRST + ((job * 4 + step) % SLURM_PORT_SLOTS) * SLURM_PORT_SPAN


def expand_nodelist(text):
    """Slurm's compressed host list as host names: `gpu[01-03,7],login1` -> gpu01, gpu02, gpu03,
    gpu7, login1 (zero padding kept; several bracket groups in one name multiply out)."""
    names, depth, start = [], 0, 0
    for i, ch in enumerate(text + ","):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            if text[start:i].strip():
                names.extend(_expand_name(text[start:i].strip(), text))
            start = i + 1
    if depth or not names:
        raise DlcliError(f"cannot read Slurm's node list {text!r}; expected e.g. node[01-03,7],login1.")
    return names


def _expand_name(name, whole):
    match = re.search(r"\[([^\]]*)\]", name)
    if not match:
        return [name]
    head, tail = name[: match.start()], name[match.end():]
    out = []
    for part in match.group(1).split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise DlcliError(f"cannot read Slurm's node list {whole!r}: {part!r} is not a number or a range.")
        width = len(low)
        for number in range(int(low), int(high or low) + 1):
            out.extend(head + str(number).zfill(width) + rest for rest in _expand_name(tail, whole))
    return out


def expand_tasks_per_node(text):
    """Slurm's tasks per node: `2(x3),1` -> [2, 2, 2, 1]."""
    counts = []
    for part in filter(None, text.split(",")):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if not match:
            raise DlcliError(f"cannot read Slurm's tasks per node {text!r}; expected e.g. 2(x3),1.")
        counts += [int(match.group(1))] * int(match.group(2) or 1)
    if not counts:
        raise DlcliError("Slurm's tasks per node (SLURM_STEP_TASKS_PER_NODE) is empty.")
    return counts


def task_nodes(counts, distribution="", plane_size=None):
    """The node index of each task, in task order, as Slurm's distribution over nodes places
    them: block (consecutive tasks fill a node; Slurm's default), cyclic (one task per node in
    turn) or plane=N (N at a time in turn). `counts` are the tasks per node."""
    kind = (distribution or "block").split(":")[0].split(",")[0].strip()
    if kind.startswith("plane"):
        size = kind.partition("=")[2] or plane_size or ""
        if not size.isdigit() or int(size) < 1:
            raise DlcliError(f"SLURM_DISTRIBUTION {distribution!r}: the plane size is missing (SLURM_DIST_PLANESIZE).")
        chunk = int(size)
    elif kind in ("block", "*", ""):
        return [node for node, count in enumerate(counts) for _ in range(count)]
    elif kind == "cyclic":
        chunk = 1
    else:
        raise DlcliError(
            f"SLURM_DISTRIBUTION {distribution!r} does not say which node each task is on; "
            "run with srun's --distribution block, cyclic or plane=N."
        )
    left, placement = list(counts), []
    while any(left):
        for node, count in enumerate(left):
            take = min(chunk, count)
            placement += [node] * take
            left[node] -= take
    return placement
