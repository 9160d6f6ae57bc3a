"""Faster formulations of the cnn's step that keep its model mathematically the same.

The profile in issue 18 puts 27% of a cnn step in conv1 (one input channel) and the ops on its
26x26x32 output (ReLU gradient, max-pool forward and backward), for 5% of the FLOPs. Each
formulation below computes the same function of the same weights (checked here: outputs and
gradients equal to float tolerance); their forward + backward step on a batch of 128 MNIST
images is timed in one process, the formulations interleaved round by round `--rounds` times:
  keras        the recipe's layers: Conv2D(relu) > MaxPool > Conv2D(relu) > MaxPool > Dense...
  pool-relu    max-pool before ReLU (they commute: ReLU is monotonic), so ReLU and its gradient
               touch a quarter of the values
  patches      conv1 as a matrix multiply: 3x3 patches (9 channels) x a (9, 32) kernel
  patches+pool-relu  both
  blocks       conv1 > ReLU > max-pool as one convolution over 2x2 blocks of the input
               (space_to_depth: 14x14x4 in, 13x13x(4x32) out), the pool a max over channel groups
               (1.14x on this step, 2026-12-03; 1.00x in dlcli's loop, so not in the recipe)
  argmax       conv1 > ReLU > max-pool with a gradient of its own: the pool's winners (argmax
               over each window's 4 pixels) route the gradient, and conv1's weight gradient
               is one matmul of the 3x3 patches with it, instead of MaxPoolGrad, ReluGrad and
               a one-channel Conv2DBackpropFilter on the 26x26x32 tensors (0.72x, 2026-12-05)
and the recipe's Keras model itself (its step as the others, for scale). Thread settings are not
varied: issue 18 measured inter-op threads 1 (3574 vs 5958 examples/s) and oneDNN off as slower.

    python benchmarks/cnn_formulations.py [--rounds 10] [--steps 20]
"""

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

MNIST = Path(__file__).resolve().parents[2] / "shared" / "data" / "mnist"


def formulations(tf):
    """{name: forward(x, weights) -> logits}, x uint8 (batch, 28, 28, 1); weights the Keras
    model's [k1, b1, k2, b2, w3, b3, w4, b4]."""
    import numpy as np

    def conv1(x, k1, b1, patches):
        x = tf.cast(x, tf.float32) / 255
        if patches:
            p = tf.image.extract_patches(x, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "VALID")  # (b, 26, 26, 9)
            return tf.einsum("bhwp,pf->bhwf", p, tf.reshape(k1, (9, -1))) + b1
        return tf.nn.bias_add(tf.nn.conv2d(x, k1, 1, "VALID"), b1)

    # blocks[by, bx, py, px, a, b, dy, dx] = 1 where output pixel (a, b) of a 2x2 pooling window
    # reads pixel (py, px) of 2x2 input block (by, bx) through conv1's tap (dy, dx).
    blocks = np.zeros((2, 2, 2, 2, 2, 2, 3, 3), np.float32)
    for by, bx, py, px, a, b in np.ndindex(2, 2, 2, 2, 2, 2):
        if 0 <= 2 * by + py - a < 3 and 0 <= 2 * bx + px - b < 3:
            blocks[by, bx, py, px, a, b, 2 * by + py - a, 2 * bx + px - b] = 1

    def conv1_pool_in_blocks(x, k1, b1):
        """conv1 > ReLU > max-pool as one convolution on space_to_depth(2) of the input (14x14x4,
        a 2x2 kernel built from k1): its 13x13x128 output holds each pooling window's 4 pixels as
        4 channel groups, so the pool is a max over them; bias and ReLU commute with the max."""
        kernel = tf.reshape(tf.constant(blocks.reshape(-1, 9)) @ tf.reshape(k1, (9, 32)), (2, 2, 4, 4 * 32))  # (by, bx, py*2+px, (a*2+b)*32+f)
        x = tf.nn.conv2d(tf.nn.space_to_depth(tf.cast(x, tf.float32) / 255, 2), kernel, 1, "VALID")
        return tf.nn.relu(tf.reduce_max(tf.reshape(x, (-1, 13, 13, 4, 32)), axis=3) + b1)

    @tf.custom_gradient
    def pooled_patches_matmul(q, k1, b1):
        """q: the 3x3 patches grouped by pooling window, (windows * 4, 9); returns ReLU(max + b1)."""
        z = tf.reshape(q @ tf.reshape(k1, (9, 32)), (-1, 4, 32))
        winner = tf.argmax(z, axis=1, output_type=tf.int32)  # the first maximum, as MaxPoolGrad picks
        out = tf.nn.relu(tf.reduce_max(z, axis=1) + b1)

        def grad(d_out):
            d_max = tf.where(out > 0, d_out, 0.0)
            d_z = tf.where(tf.equal(winner[:, None, :], tf.range(4)[None, :, None]), d_max[:, None, :], 0.0)
            d_k1 = tf.matmul(q, tf.reshape(d_z, (-1, 32)), transpose_a=True)
            return None, tf.reshape(d_k1, (3, 3, 1, 32)), tf.reduce_sum(d_max, 0)

        return out, grad

    def conv1_pool_argmax(x, k1, b1):
        p = tf.image.extract_patches(tf.cast(x, tf.float32) / 255, [1, 3, 3, 1], [1, 1, 1, 1], [1, 1, 1, 1], "VALID")
        q = tf.reshape(tf.transpose(tf.reshape(p, (-1, 13, 2, 13, 2, 9)), (0, 1, 3, 2, 4, 5)), (-1, 9))
        return tf.reshape(pooled_patches_matmul(q, k1, b1), (-1, 13, 13, 32))

    def block(h, pool_first):
        if pool_first:
            return tf.nn.relu(tf.nn.max_pool2d(h, 2, 2, "VALID"))
        return tf.nn.max_pool2d(tf.nn.relu(h), 2, 2, "VALID")

    def make(patches, pool_first, conv1_block=None):
        def forward(x, w):
            k1, b1, k2, b2, w3, b3, w4, b4 = w
            h = conv1_block(x, k1, b1) if conv1_block else block(conv1(x, k1, b1, patches), pool_first)
            h = block(tf.nn.bias_add(tf.nn.conv2d(h, k2, 1, "VALID"), b2), pool_first)
            h = tf.nn.relu(tf.reshape(h, (tf.shape(h)[0], -1)) @ w3 + b3)
            return h @ w4 + b4

        return forward

    return {
        "keras": make(False, False), "pool-relu": make(False, True),
        "patches": make(True, False), "patches+pool-relu": make(True, True), "blocks": make(False, False, conv1_pool_in_blocks),
        "argmax": make(False, False, conv1_pool_argmax),
    }


def keras_step(tf, model):
    """The recipe's own Keras model: forward + gradients, as dlcli's step computes them."""
    loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)

    @tf.function
    def step(x, y):
        with tf.GradientTape() as tape:
            value = loss(y, model(x, training=False))
        return tape.gradient(value, model.trainable_variables)

    return step


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    options = parser.parse_args()
    import numpy as np

    from dlcli import data
    from dlcli.core.lazy import keras, tf
    from recipes import cnn

    config = cnn.Config(data=MNIST if MNIST.is_dir() else None, dataset="mnist" if MNIST.is_dir() else "digits", dropout=0.0)
    splits = data.load_images(config)
    keras.utils.set_random_seed(0)
    model = cnn.build_model(config, splits)
    weights = [tf.Variable(w) for w in model.get_weights()]
    x, y = (tf.constant(a[:128]) for a in splits.train)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    steps = {}
    reference = None
    for name, forward in formulations(tf).items():
        @tf.function
        def step(x, y, forward=forward):
            with tf.GradientTape() as tape:
                value = loss(y, forward(x, weights))
            return [value, *tape.gradient(value, weights)]

        out = [t.numpy() for t in step(x, y)]
        if reference is None:  # the Keras model on the same weights gives the same loss
            expected = float(loss(y, model(x, training=False)))
            assert abs(out[0] - expected) < 1e-5 * max(1, abs(expected)), (out[0], expected)
            reference = out
        worst = max(float(np.max(np.abs(a - b)) / (np.max(np.abs(b)) + 1e-12)) for a, b in zip(out, reference))
        print(f"{name:>18}: loss {out[0]:.6f}, largest relative difference from keras in loss and gradients {worst:.1e}", flush=True)
        if worst > 1e-4:
            raise SystemExit(f"{name} is not the same function (difference {worst:.1e})")
        steps[name] = step
    steps["keras model"] = keras_step(tf, model)
    for step in steps.values():
        step(x, y)  # trace
    times = {name: [] for name in steps}
    for _ in range(options.rounds):
        for name, step in steps.items():
            started = time.perf_counter()
            for _ in range(options.steps):
                outputs = step(x, y)
            float(outputs[0].numpy().ravel()[0])
            times[name].append((time.perf_counter() - started) / options.steps)
    base = "keras"
    print(f"\n== summary (forward + backward, batch 128, {tf.config.threading.get_intra_op_parallelism_threads() or 'default'} "
          f"intra-op threads; medians of {options.rounds} interleaved rounds of {options.steps} steps) ==")
    for name, t in times.items():
        ratios = [b / a for a, b in zip(t, times[base])]
        print(f"{name:>18}: {statistics.median(t) * 1e3:6.2f} ms per step; speed vs raw-op keras formulation "
              f"{statistics.median(ratios):.2f}x (per-round {min(ratios):.2f}-{max(ratios):.2f})")
    print(json.dumps({name: statistics.median(t) for name, t in times.items()}))


if __name__ == "__main__":
    main()
