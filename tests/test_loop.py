"""The training loop: exact global batches, per-replica slicing, and the same training under
the default strategy and MirroredStrategy (two logical CPUs, set up in conftest)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from dlcli import data
from dlcli.core.errors import DlcliError
from dlcli.training import batches, loop, registry, steps

cnn = registry.load("cnn")


def test_batches_shuffle_by_seed_and_epoch_and_drop_the_remainder():
    index, w = batches.batches(10, 4, shuffle_key=(1, 0, 0))
    assert index.shape == (2, 4) and np.all(w == 1)
    again, _ = batches.batches(10, 4, shuffle_key=(1, 0, 0))
    other, _ = batches.batches(10, 4, shuffle_key=(1, 1, 0))
    np.testing.assert_array_equal(index, again)
    assert not np.array_equal(index, other)
    assert len(set(index.ravel())) == 8


def test_eval_batches_pad_with_zero_weight_so_every_example_counts_once():
    index, w = batches.batches(10, 4, pad=True)
    assert index.shape == (3, 4)
    assert w.sum() == 10 and list(w.ravel()[-2:]) == [0, 0]
    assert sorted(index.ravel()[w.ravel() == 1]) == list(range(10))


def test_an_epoch_of_more_steps_than_one_pass_takes_several_shuffled_passes():
    index, _ = batches.epoch_batches(10, 5, steps=5, seed=0, epoch=0)
    assert index.shape == (5, 5)
    assert sorted(index[:2].ravel()) == list(range(10)) and sorted(index[2:4].ravel()) == list(range(10))
    full, _ = batches.epoch_batches(10, 10, steps=3, seed=0, epoch=0)
    assert full.shape == (3, 10)


def two_replicas():
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"], cross_device_ops=tf.distribute.ReductionToOneDevice())


@pytest.mark.parametrize("make_strategy", [tf.distribute.get_strategy, two_replicas], ids=["default", "mirrored"])
def test_each_global_step_sees_exactly_its_global_batch(make_strategy):
    strategy = make_strategy()
    x = np.arange(24) * 10
    index, weight = batches.batches(24, 8, shuffle_key=(3, 0, 0))
    seen = []
    for per_replica in iter(batches.distribute(strategy, batches.host_tensors([x, x + 1]), (index, weight))):
        xs, ys, ws = (np.concatenate([p.numpy() for p in strategy.experimental_local_results(t)]) for t in per_replica)
        assert np.all(ys == xs + 1) and np.all(ws == 1)
        seen.append(xs)
    np.testing.assert_array_equal(np.stack(seen), x[index])


def test_resuming_mid_epoch_starts_at_the_right_batch():
    strategy = tf.distribute.get_strategy()
    x = np.arange(24) * 10
    batched = batches.batches(24, 4, shuffle_key=(0, 0, 0))
    rest = [b[0].numpy() for b in batches.distribute(strategy, batches.host_tensors([x, x]), batched, start_step=4)]
    np.testing.assert_array_equal(np.stack(rest), x[batched[0][4:]])


def tiny_splits(n=256, seed=0):
    """A separable 4-class problem on 8x8 images: bright quadrant = class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, n)
    x = rng.integers(0, 60, (n, 8, 8, 1))
    for i, c in enumerate(y):
        r, col = divmod(int(c), 2)
        x[i, r * 4 : r * 4 + 4, col * 4 : col * 4 + 4] += 190
    x = x.astype(np.uint8)
    train, test = (x[:192], y[:192]), (x[192:], y[192:])
    train, val = data.holdout(train, 0.25)
    return data.Splits(train=train, val=val, test=test, input_shape=(8, 8, 1), source="tiny", num_classes=4)


def train_tiny(strategy, tmp_path, **overrides):
    config = cnn.Config(**{"arch": "tf1", "epochs": 3, "batch_size": 16, "dropout": 0.0, "learning_rate": 3e-3, **overrides})
    return loop.fit(cnn, config, tiny_splits(), strategy, tmp_path)


def test_fit_learns_and_writes_the_run(tmp_path):
    final = train_tiny(tf.distribute.get_strategy(), tmp_path).metrics
    assert final["test"]["accuracy"] >= 0.9
    assert {p.name for p in tmp_path.iterdir()} >= {"model.keras", "metrics.json", "history.csv", "checkpoints"}
    history = (tmp_path / "history.csv").read_text().splitlines()
    assert history[0].startswith("epoch,loss,accuracy,val_loss,val_accuracy")
    assert len(history) == 1 + 3


def test_mirrored_training_matches_single_device_training(tmp_path):
    """The loss is averaged over the global batch, so two replicas take the same steps as one."""
    single = train_tiny(tf.distribute.get_strategy(), tmp_path / "single")
    mirrored = train_tiny(two_replicas(), tmp_path / "mirrored")
    single, single_model, mirrored, mirrored_model = single.metrics, single.model, mirrored.metrics, mirrored.model
    for a, b in zip(single_model.get_weights(), mirrored_model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert abs(single["test"]["accuracy"] - mirrored["test"]["accuracy"]) < 1e-6


def test_micro_batches_take_the_same_steps_as_whole_batches(tmp_path):
    """The parts' gradients, summed, are the whole batch's gradient (the loss is averaged over
    the global batch), so micro-batches train the same model, to rounding, with the same metrics."""
    whole = train_tiny(tf.distribute.get_strategy(), tmp_path / "whole")
    parts = train_tiny(tf.distribute.get_strategy(), tmp_path / "parts", micro_batches=4)
    for a, b in zip(whole.model.get_weights(), parts.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert parts.history[-1]["loss"] == pytest.approx(whole.history[-1]["loss"], rel=1e-4)
    assert parts.metrics["test"] == pytest.approx(whole.metrics["test"], rel=1e-4)
    # Under two replicas each replica cuts its own slice.
    mirrored = train_tiny(two_replicas(), tmp_path / "mirrored", micro_batches=2)
    for a, b in zip(whole.model.get_weights(), mirrored.model.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_micro_batches_sum_an_embeddings_sparse_gradients():
    """An Embedding's gradient is sparse (IndexedSlices): the parts' rows are put together, and
    the step equals the whole batch's."""
    import keras

    def one_step(micro_batches):
        keras.utils.set_random_seed(0)
        inputs = keras.Input((5,), dtype="int32")
        pooled = keras.layers.GlobalAveragePooling1D()(keras.layers.Embedding(20, 4)(inputs))
        model = keras.Model(inputs, keras.layers.Dense(2)(pooled))
        optimizer = keras.optimizers.Adam(0.1)
        optimizer.build(model.trainable_variables)
        per_example = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)
        train_step, _ = steps.replica_steps(model, per_example, [keras.metrics.Mean()], 8, optimizer, micro_batches=micro_batches)
        x = tf.constant(np.random.default_rng(1).integers(0, 20, (8, 5)), tf.int32)
        tf.function(train_step)(x, tf.constant([0, 1] * 4), tf.ones(8))
        return model.get_weights()

    for whole, parts in zip(one_step(1), one_step(4)):
        np.testing.assert_allclose(parts, whole, rtol=1e-5, atol=1e-6)


def test_micro_batches_must_divide_each_replica_batch(tmp_path):
    with pytest.raises(DlcliError, match=r"each replica's batch \(8\) must be a multiple of micro_batches. Received: micro_batches=3"):
        train_tiny(two_replicas(), tmp_path, micro_batches=3)
    assert not (tmp_path / "config.json").exists()


def test_batch_size_must_split_evenly_across_replicas(tmp_path):
    with pytest.raises(DlcliError, match="batch_size must be a multiple of the 2 replicas. Received: batch_size=15"):
        train_tiny(two_replicas(), tmp_path, batch_size=15)


def test_batch_larger_than_the_data_is_refused(tmp_path):
    with pytest.raises(DlcliError, match="larger than the 144 training examples"):
        train_tiny(tf.distribute.get_strategy(), tmp_path, batch_size=512)


def test_diverging_loss_stops_with_a_clear_message(tmp_path):
    with pytest.raises(DlcliError, match="the loss became (nan|inf) in epoch 1"):
        train_tiny(tf.distribute.get_strategy(), tmp_path, learning_rate=1e12, lr_schedule="constant")


def test_resume_continues_from_the_last_epoch(tmp_path):
    strategy = tf.distribute.get_strategy()
    train_tiny(strategy, tmp_path, epochs=2)
    events = []
    config = cnn.Config(arch="tf1", epochs=3, batch_size=16, dropout=0.0, learning_rate=3e-3)
    loop.fit(cnn, config, tiny_splits(), strategy, tmp_path, resume=True, report=lambda e, **f: events.append((e, f)))
    assert ("resume", {"epoch": 2, "step": 0, "steps": 9}) in events
    epochs = [int(line.split(",")[0]) for line in (tmp_path / "history.csv").read_text().splitlines()[1:]]
    assert epochs == [1, 2, 3]


def test_a_diverging_resume_keeps_the_last_good_checkpoint_resumable(tmp_path):
    strategy = tf.distribute.get_strategy()
    train_tiny(strategy, tmp_path, epochs=1, lr_schedule="constant")
    good = tf.train.latest_checkpoint(str(tmp_path / "checkpoints"))
    config = cnn.Config(arch="tf1", epochs=2, batch_size=16, dropout=0.0, learning_rate=3e-3, lr_schedule="constant")
    diverging = cnn.Config(**{**config.__dict__, "learning_rate": 1e12})
    with pytest.raises(DlcliError, match=r"the loss became (nan|inf) in epoch 2, steps \d+-\d+; .*Last good checkpoint: .*ckpt-9"):
        loop.fit(cnn, diverging, tiny_splits(), strategy, tmp_path, resume=True)
    assert tf.train.latest_checkpoint(str(tmp_path / "checkpoints")) == good
    final = loop.fit(cnn, config, tiny_splits(), strategy, tmp_path, resume=True).metrics
    assert math.isfinite(final["test"]["loss"])
