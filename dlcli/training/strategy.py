"""Choosing the tf.distribute strategy: what `--strategy` names mean, and what `auto` picks."""

import os

from dlcli.core.cluster import tf_config, training_cluster
from dlcli.core.errors import DlcliError
from dlcli.core.lazy import tf

STRATEGIES = ("auto", "default", "one-device", "mirrored", "multi-worker", "tpu")


def split_cpu(n):
    """Splits the CPU into `n` logical devices, so mirrored training can be tried without GPUs.

    Must run before TensorFlow initialises its devices.
    """
    if n is None or n <= 1:
        return
    cpu = tf.config.list_physical_devices("CPU")[0]
    current = tf.config.get_logical_device_configuration(cpu)
    if current is not None and len(current) == n:
        return
    try:
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    except RuntimeError:
        raise DlcliError(f"--cpu-devices {n}: TensorFlow's devices are already initialised in this process.") from None


def auto_choice(tpu):
    """What `--strategy auto` picks: TPU, then multi-worker, then several GPUs or CPUs, then one GPU."""
    if tpu or os.environ.get("TPU_NAME"):
        return "tpu"
    spec = tf_config()
    if spec and sum(len(hosts) for hosts in training_cluster(spec).values()) > 1:
        return "multi-worker"
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) > 1 or (not gpus and len(tf.config.list_logical_devices("CPU")) > 1):
        return "mirrored"
    return "one-device" if gpus else "default"


def make_strategy(name, tpu=None):
    """Returns (strategy, resolved name) for a --strategy name."""
    if name not in STRATEGIES:
        raise DlcliError(f"unknown strategy '{name}'. Choose one of: {', '.join(STRATEGIES)}.")
    if name == "auto":
        name = auto_choice(tpu)
    if name == "default":
        return tf.distribute.get_strategy(), name
    if name == "one-device":
        gpus = tf.config.list_logical_devices("GPU")
        return tf.distribute.OneDeviceStrategy(gpus[0].name if gpus else "/cpu:0"), name
    if name == "mirrored":
        gpus = tf.config.list_logical_devices("GPU")
        if gpus:
            return tf.distribute.MirroredStrategy(), name
        # Without GPUs, mirror over the logical CPUs (--cpu-devices); NCCL is GPU-only.
        cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
        return tf.distribute.MirroredStrategy(cpus, cross_device_ops=tf.distribute.ReductionToOneDevice()), name
    if name == "multi-worker":
        spec = tf_config()
        if not spec:
            raise DlcliError(
                "--strategy multi-worker needs TF_CONFIG, Vertex AI's CLUSTER_SPEC or a Slurm step of several tasks "
                "describing the cluster (or use `dlcli launch`)."
            )
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=cluster_resolver(spec)), name
    return _tpu_strategy(tpu), name


def cluster_resolver(spec):
    """The training tasks of `spec` (core.cluster's TF_CONFIG-shaped dict) for
    MultiWorkerMirroredStrategy: the chief and workers only, so that an evaluator task (and
    TFJob's `master`, read as the chief) need no support from TensorFlow's own TF_CONFIG reader."""
    jobs = training_cluster(spec)
    task = spec["task"]
    return tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(jobs), task_type=task["type"], task_id=task["index"], rpc_layer="grpc"
    )


def _tpu_strategy(tpu):
    target = tpu or os.environ.get("TPU_NAME") or "local"  # "local": the TPU VM this runs on
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=target)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as e:  # ValueError, URLError, NotFoundError...: all mean "no TPU here"
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise DlcliError(f"no TPU found for --tpu {target} ({first}). Run on a Cloud TPU VM, or pick another --strategy.") from None
    return tf.distribute.TPUStrategy(resolver)


def cpu_cores():
    """The cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def micro_batches(config, recipe, name, cpu_devices=None, tpu=None):
    """How many micro-batches each replica's batch is cut into (`config.micro_batches`; 0 = auto).

    Auto is one per core for a recipe that sets `CPU_MICRO_BATCHES = True`, trained on the CPU
    alone with one replica (strategy auto, default or one-device; no --cpu-devices, GPU, TPU or
    cluster) and a batch the cores divide: TensorFlow then runs each op on one thread and the
    micro-batches side by side, so each core works through its own part of the batch. On 2 cores
    that ran the cnn 1.13x faster (median of paired repeats) than every op split over both
    (benchmarks/limit.py), for the same updates. Else 1. Sets TensorFlow's threads, so it must run
    before TensorFlow starts its runtime; where that has happened (a second run in one process),
    auto is 1.
    """
    if config.micro_batches:
        return config.micro_batches
    cores = cpu_cores()
    alone = (
        name in ("auto", "default", "one-device") and not cpu_devices and not tpu and not os.environ.get("TPU_NAME")
        and not tf_config() and not tf.config.list_physical_devices("GPU")  # physical: does not start the runtime
    )
    if not recipe_flag(recipe, "CPU_MICRO_BATCHES", config) or cores < 2 or not alone or not config.batch_size or config.batch_size % cores:
        return 1
    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(cores)
    except RuntimeError:  # the runtime has started: the threads are what they are
        return 1
    return cores


def recipe_flag(recipe, name, config):
    """A recipe's `BF16_CPU` or `CPU_MICRO_BATCHES`: True, or a function of the config where only
    some of its models were measured faster (cnn: its MNIST networks, not the photo network)."""
    value = getattr(recipe, name, False)
    return bool(value(config) if callable(value) else value)


BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # what oneDNN needs to run bf16 natively on x86


def cpu_bf16_flags(cpuinfo="/proc/cpuinfo"):
    """The bf16 instruction sets the CPU reports (empty when none, or no /proc/cpuinfo)."""
    try:
        text = open(cpuinfo).read()
    except OSError:
        return []
    reported = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            reported.update(line.split(":", 1)[1].split())
    return [flag for flag in BF16_FLAGS if flag in reported]


def resolve_precision(config, recipe, strategy):
    """(Keras dtype policy, the line that says why, or None) for the config's `precision`.

    `auto` is mixed_bfloat16 for a recipe that sets `BF16_CPU = True` (where bf16 was measured
    faster: benchmarks/bf16_cpu.py) when it trains on CPUs that report AVX512_BF16 or AMX-BF16,
    so that oneDNN runs bf16 natively; float32 everywhere else (GPUs and TPUs take
    mixed_float16 or mixed_bfloat16 when asked: their choice depends on the chip).
    """
    if config.precision != "auto":
        return config.precision, None
    if not recipe_flag(recipe, "BF16_CPU", config) or tf.config.list_logical_devices("GPU") or isinstance(strategy, tf.distribute.TPUStrategy):
        return "float32", None
    flags = cpu_bf16_flags()
    if not flags:
        return "float32", None
    return "mixed_bfloat16", (
        f"precision mixed_bfloat16: this CPU runs bf16 natively ({', '.join(flags)}); --precision float32 turns it off"
    )


def describe(strategy, name):
    """The facts about a strategy a run records and prints."""
    try:
        replica_devices = list(strategy.extended.worker_devices)
    except RuntimeError:  # the default strategy has no device list: it places ops as TF does
        replica_devices = []
    return {
        "name": name,
        "class": type(strategy).__name__,
        "replicas": strategy.num_replicas_in_sync,
        "replica_devices": replica_devices,
        "visible_devices": [d.name for d in tf.config.list_logical_devices()],
        # Threads per op and ops at once (0: TensorFlow's default, one per core each).
        "op_threads": [tf.config.threading.get_intra_op_parallelism_threads(), tf.config.threading.get_inter_op_parallelism_threads()],
        # Whether TensorFlow ran oneDNN's CPU kernels (dlcli/__init__.py sets "1" on x86):
        # they change rounding, so a run compared with another should know. The variable as
        # set, and TensorFlow's own answer: it ignores values other than 0/1/true/false.
        "TF_ENABLE_ONEDNN_OPTS": os.environ.get("TF_ENABLE_ONEDNN_OPTS"),
        "onednn": onednn_enabled(),
    }


def onednn_enabled():
    """Whether this TensorFlow runs oneDNN's CPU kernels, or None where it cannot say."""
    try:  # private, but the only place TensorFlow answers it (its own tests use it)
        from tensorflow.python.util import _pywrap_util_port

        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return None
