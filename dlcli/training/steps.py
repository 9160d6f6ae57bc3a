"""The step functions: one train and one eval step per replica, each averaging its loss over the
GLOBAL batch (`tf.nn.compute_average_loss`), so the gradients summed across replicas equal the
single-device ones; several steps per tf.function call, so Python overhead stays small.
"""

from dlcli.core.lazy import keras, tf
from dlcli.data import count
from dlcli.training.batches import batches, distribute, examples


def replica_steps(model, loss_fn, metrics, global_batch, optimizer=None, jit=False, micro_batches=1):
    """One train step and one eval step, each on one replica's slice of a global batch.

    With `micro_batches` > 1 the slice is cut into that many equal parts: their gradients are
    summed into one optimizer update (the loss is averaged over the global batch, so the sum is
    the whole slice's gradient), and TensorFlow may run the parts side by side.
    """

    def parts(x, y, w):
        return zip(*(tf.split(t, micro_batches) for t in (x, y, w)))

    def train_step(x, y, w):
        grads = None
        for part in parts(x, y, w):
            part_grads = gradients(*part)
            grads = part_grads if grads is None else [summed(a, b) for a, b in zip(grads, part_grads)]
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    def gradients(x, y, w):
        with tf.GradientTape() as tape:
            pred = model(x, training=True)
            per_example = loss_fn(y, pred)
            loss = tf.nn.compute_average_loss(per_example, sample_weight=w, global_batch_size=global_batch)
            if model.losses:  # once per step: each micro-batch adds its share
                loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses)) / micro_batches
            # Under mixed_float16 the optimizer is a LossScaleOptimizer: scale up, it scales back.
            scaled = optimizer.scale_loss(loss)
        update(y, pred, per_example, w)
        return tape.gradient(scaled, model.trainable_variables)

    def eval_step(x, y, w):
        for x, y, w in parts(x, y, w):
            pred = model(x, training=False)
            update(y, pred, loss_fn(y, pred), w)

    def update(y, pred, per_example, w):
        metrics[0].update_state(per_example, sample_weight=w)
        for metric in metrics[1:]:
            metric.update_state(y, pred, sample_weight=w)

    if jit:  # XLA compiles each replica's step; the loop around it stays a plain tf.function
        return tuple(tf.function(f, jit_compile=True) for f in (train_step, eval_step))
    return train_step, eval_step


def summed(a, b):
    """a + b for two gradients of one variable. An embedding's gradient is sparse (IndexedSlices,
    the rows the batch looked up), and stays sparse: the two parts' rows are put together."""
    if isinstance(a, tf.IndexedSlices) and isinstance(b, tf.IndexedSlices):
        return tf.IndexedSlices(tf.concat([a.values, b.values], 0), tf.concat([a.indices, b.indices], 0), a.dense_shape)
    if a is None or b is None:  # a variable the loss does not reach
        return a if b is None else b
    return tf.convert_to_tensor(a) + tf.convert_to_tensor(b)


def step_functions(strategy, model, loss_fn, metrics, global_batch, optimizer=None, jit=False, micro_batches=1):
    """tf.functions that run `steps` train or eval steps on a distributed iterator."""
    train_step, eval_step = replica_steps(model, loss_fn, metrics, global_batch, optimizer, jit, micro_batches)

    @tf.function
    def train_steps(iterator, steps):
        for _ in tf.range(steps):
            strategy.run(train_step, args=next(iterator))

    @tf.function
    def eval_steps(iterator, steps):
        for _ in tf.range(steps):
            strategy.run(eval_step, args=next(iterator))

    return train_steps, eval_steps


def results(metrics, prefix=""):
    out = {prefix + m.name: float(m.result()) for m in metrics}
    for m in metrics:
        m.reset_state()
    return out


def evaluate(strategy, eval_steps, metrics, split, batch_size):
    """Metrics over every example of `split` (arrays or `Files`), in padded global batches."""
    batched = batches(count(split), batch_size, pad=True)
    for m in metrics:
        m.reset_state()
    eval_steps(iter(distribute(strategy, examples(split), batched)), tf.constant(len(batched[0])))
    return results(metrics)


def loss_and_metrics(recipe, config):
    """The recipe's per-example loss and its metrics, led by the mean loss."""
    return recipe.loss(config), [keras.metrics.Mean(name="loss"), *recipe.metrics(config)]


def make_optimizer(recipe, config, total_steps):
    if config.lr_schedule == "cosine":
        learning_rate = keras.optimizers.schedules.CosineDecay(config.learning_rate, decay_steps=total_steps)
    else:
        learning_rate = config.learning_rate
    if hasattr(recipe, "optimizer"):
        optimizer = recipe.optimizer(config, learning_rate)
    else:
        optimizer = keras.optimizers.Adam(learning_rate)
    if config.precision == "mixed_float16":  # float16 gradients underflow without loss scaling
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    return optimizer
