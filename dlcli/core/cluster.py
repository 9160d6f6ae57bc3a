"""The cluster this process is part of, as TF_CONFIG describes it (Kubeflow, Vertex AI and
`dlcli launch` write it); read without TensorFlow."""

import json
import os

from dlcli.core.errors import DlcliError


def tf_config():
    """The parsed TF_CONFIG environment variable, or {} when unset."""
    raw = os.environ.get("TF_CONFIG", "").strip()
    if not raw:
        return {}
    try:
        spec = json.loads(raw)
    except ValueError as e:
        raise DlcliError(f"TF_CONFIG is not valid JSON ({e}).") from None
    if not isinstance(spec, dict) or not isinstance(spec.get("cluster"), dict) or not isinstance(spec.get("task"), dict):
        raise DlcliError('TF_CONFIG must be {"cluster": {"worker": [...]}, "task": {"type": ..., "index": ...}}.')
    task = spec["task"]
    jobs = spec["cluster"]
    if not all(isinstance(hosts, list) and all(isinstance(h, str) for h in hosts) for hosts in jobs.values()):
        raise DlcliError('TF_CONFIG cluster jobs must be lists of "host:port" strings, e.g. {"worker": ["host0:2222", "host1:2222"]}.')
    if task.get("type") not in jobs:
        raise DlcliError(f"TF_CONFIG task type {task.get('type')!r} is not a job of the cluster ({', '.join(jobs)}).")
    index = task.get("index")
    if not isinstance(index, int) or not 0 <= index < len(jobs[task["type"]]):
        raise DlcliError(
            f"TF_CONFIG task index {index!r} is out of range: job {task['type']!r} has {len(jobs[task['type']])} task(s)."
        )
    if "chief" not in jobs and "worker" not in jobs:
        raise DlcliError("TF_CONFIG cluster has neither a 'chief' nor a 'worker' job.")
    if task["type"] not in ("chief", "worker"):
        # A parameter server or evaluator task would train alone and write nothing.
        raise DlcliError(
            f"TF_CONFIG task type {task['type']!r} is not supported: dlcli trains with MultiWorkerMirroredStrategy, "
            "whose tasks are 'worker' (and an optional 'chief'); parameter servers and evaluators are not used."
        )
    return spec


def is_chief():
    """Whether this process writes the run's artifacts: yes, unless TF_CONFIG makes it a worker
    other than the chief (the 'chief' task, or worker 0 when the cluster has no chief)."""
    spec = tf_config()
    if not spec:
        return True
    task = spec["task"]
    return task["type"] == "chief" or (task["type"] == "worker" and task["index"] == 0 and "chief" not in spec["cluster"])
