"""Counting a model's training FLOPs from its layer shapes, and measuring the machine's matmul peak.

Only the multiply-adds of convolutions and dense layers count (2 FLOPs each): they are the
work a step cannot avoid, and where all but a few percent of the cnn's arithmetic lies. A
training step computes each of them three times (forward, the gradient with respect to the
weights, the gradient with respect to the layer's input), except the input gradient of the
first weighted layer, which nothing needs (its input is data). Bias adds, activations,
pooling and the optimizer update are left out, so the figure is a lower bound of the work
and "fraction of the limit" an honest (if anything, low) figure.
"""

import time


def layer_macs(layer):
    """Multiply-accumulates of one forward pass of `layer`, per example (0 for other layers)."""
    from dlcli.core.lazy import keras

    if isinstance(layer, keras.layers.Conv2D) and not isinstance(layer, keras.layers.DepthwiseConv2D):
        kernel = layer.kernel.shape  # (kh, kw, in, out)
        _, h, w, _ = layer.output.shape
        return h * w * kernel[0] * kernel[1] * kernel[2] * kernel[3] // layer.groups
    if isinstance(layer, keras.layers.Conv1D):
        kernel = layer.kernel.shape  # (k, in, out)
        _, length, _ = layer.output.shape
        return length * kernel[0] * kernel[1] * kernel[2] // layer.groups
    if isinstance(layer, keras.layers.Dense):
        positions = 1
        for size in layer.input.shape[1:-1]:  # a Dense on a sequence runs once per position
            positions *= size
        return positions * layer.kernel.shape[0] * layer.kernel.shape[1]
    return 0


def training_flops(model):
    """(total, rows): training FLOPs per example of a functional Keras model, and per layer
    (name, forward MACs, training FLOPs), counting the passes the module docstring describes."""
    rows, first = [], True
    for layer in model.layers:
        macs = layer_macs(layer)
        if not macs:
            continue
        passes = 2 if first else 3  # forward + weight gradient (+ input gradient after the first)
        rows.append((layer.name, macs, 2 * macs * passes))
        first = False
    return sum(row[2] for row in rows), rows


def matmul_peak(size=2048, repeats=10, trials=3, devices=(None,)):
    """The machine's float32 matmul rate in FLOP/s: the median of `trials` timings of
    `repeats` chained (size x size) matmuls, with the process's thread settings. With several
    `devices` (logical CPUs, one per core), one chain runs on each at the same time and the
    rate is their sum: the peak of a step that runs one replica per core."""
    import statistics

    from dlcli.core.lazy import tf

    a = tf.random.normal((size, size), seed=1)
    b = tf.random.normal((size, size), seed=2) / size ** 0.5  # keeps the chain's values bounded

    @tf.function
    def chains(x):
        ends = []
        for device in devices:
            with tf.device(device):
                y = x
                for _ in range(repeats):
                    y = tf.linalg.matmul(y, b)
                ends.append(tf.reduce_sum(y))
        return tf.add_n(ends)

    chains(a).numpy()  # trace and warm up
    rates = []
    for _ in range(trials):
        started = time.perf_counter()
        chains(a).numpy()
        rates.append(2 * size**3 * repeats * len(devices) / (time.perf_counter() - started))
    return statistics.median(rates)
