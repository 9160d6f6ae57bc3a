"""Exact global batches of example indices, sliced per replica.

The batches hold example indices, not examples, cut from a seeded shuffle of the epoch: any
number of replicas sees the same batches, and a resumed run continues with the batches it would
have seen. tf.data gathers (arrays) or decodes (files) batch by batch.
"""

import dataclasses
import os

import numpy as np

from dlcli.core.lazy import tf
from dlcli.data import Files

MAX_EPOCH_EXAMPLES = 1 << 27  # 134M indices: about 1.6 GB of index and weight arrays


def batches(n, batch_size, *, shuffle_key=None, pad=False):
    """Cuts n examples into global batches: returns (index, weight), each (steps, batch).

    The batches hold example indices, not examples: array data is copied to tensors once per
    run (`examples`) and file data stays on disk; tf.data gathers or decodes batch by batch,
    so an epoch costs no copy of the dataset (which cost cnn 4% of its epoch time on 2 cores).
    With a shuffle key (seed, epoch, pass), the examples are shuffled by it, so an epoch's
    batches are the same whatever the replica count and however often the run was resumed.
    Training drops the last partial batch; evaluation (`pad=True`) pads it with weight-0
    copies of example 0, so every example counts once and every batch has one static shape
    (as TPUs and XLA need).
    """
    order = np.random.default_rng(shuffle_key).permutation(n) if shuffle_key is not None else np.arange(n)
    weights = np.ones(n, np.float32)
    if pad:
        extra = -n % batch_size
        order = np.concatenate([order, np.zeros(extra, order.dtype)])
        weights = np.concatenate([weights, np.zeros(extra, np.float32)])
    steps = len(order) // batch_size
    return [a[: steps * batch_size].reshape(steps, batch_size) for a in (order, weights)]


def epoch_batches(n, batch_size, steps, seed, epoch):
    """The `steps` global batches of one epoch: as many shuffled passes over the data as needed."""
    passes = [batches(n, batch_size, shuffle_key=(seed, epoch, p)) for p in range(-(-steps // (n // batch_size)))]
    return [np.concatenate(parts)[:steps] for parts in zip(*passes)]


def host_tensors(arrays):
    """Arrays as tensors in host memory, where tf.data gathers batches from them."""
    with tf.device("CPU:0"):
        return [tf.convert_to_tensor(a) for a in arrays]


def examples(split):
    """What tf.data draws batches from: host tensors for arrays, the file list for `Files`."""
    return split if isinstance(split, Files) else host_tensors(split)


def preprocessed(splits):
    """The splits with `splits.preprocess` (lstm's TextVectorization) applied to every input
    once, before training: inside tf.data it ran again every epoch and cost lstm 13% of its
    steps/s on 2 CPU cores (benchmarks/input_pipeline.py). Preprocessing must be deterministic."""
    if splits.preprocess is None:
        return splits

    def apply(arrays):
        x, y = arrays
        if not len(x):
            return arrays
        dataset = tf.data.Dataset.from_tensor_slices(x).batch(1024).map(splits.preprocess, num_parallel_calls=tf.data.AUTOTUNE)
        return np.concatenate(list(dataset.as_numpy_iterator())), y

    return dataclasses.replace(splits, train=apply(splits.train), val=apply(splits.val), test=apply(splits.test), preprocess=None)


def replica_pipeline(source, index, weight):
    """tf.data of (x, y, weight) batches for one input pipeline, from its slices of the global
    batches (`index`, `weight`: steps x per-replica batch)."""
    if isinstance(source, Files):
        # One example at a time through `decode`, in parallel but in order, then re-batched:
        # the batches are exactly the index batches, as with arrays.
        paths, targets = tf.constant(source.paths), tf.constant(source.targets)
        dataset = tf.data.Dataset.from_tensor_slices((index.reshape(-1), weight.reshape(-1)))
        def decode(i, w):
            x = source.decode(tf.gather(paths, i))
            return x, (x if source.inputs_as_targets else tf.gather(targets, i)), w

        dataset = dataset.map(
            decode,
            num_parallel_calls=os.cpu_count() or 1, deterministic=True,
        )
        return dataset.batch(index.shape[1], drop_remainder=True)
    dataset = tf.data.Dataset.from_tensor_slices((index, weight))
    return dataset.map(lambda i, w: (*(tf.gather(t, i) for t in source), w))


def distribute(strategy, source, batched, start_step=0):
    """A distributed dataset that hands each replica its slice of every global batch.

    `source` is what `examples` gives, `batched` the (index, weight) global batches. Each input
    pipeline (one per worker) takes the slices of its own replicas, so a global step sees
    exactly the same examples on one device or on many, and a worker reads only its own files.
    """
    replicas = strategy.num_replicas_in_sync

    def dataset_fn(context):
        local = replicas // context.num_input_pipelines
        first = context.input_pipeline_id * local
        parts = []
        for array in batched:
            steps, batch = array.shape
            per_replica = array[start_step:].reshape(steps - start_step, replicas, batch // replicas)
            parts.append(per_replica[:, first : first + local].reshape(-1, batch // replicas))
        # A fixed buffer and no autotuning: with AUTOTUNE, deleting each epoch's spent iterator
        # waited 1.5-10 s on the tuning thread (up to 15% of a cnn epoch on 2 CPU cores).
        options = tf.data.Options()
        options.autotune.enabled = False
        return replica_pipeline(source, *parts).prefetch(2).with_options(options)

    return strategy.distribute_datasets_from_function(dataset_fn)
