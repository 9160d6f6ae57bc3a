"""Quick checks of the issue-18 benchmark helpers: FLOP counting, the machine facts, the
all-reduce model, and that the cnn's alternative formulations compute the recipe's function."""

import math
from types import SimpleNamespace

import numpy as np
import pytest

from benchmarks import allreduce_table, flops, gpu_keras_jax, limit, sides


def cnn_model(**overrides):
    from recipes import cnn

    return cnn.build_model(cnn.Config(**overrides), SimpleNamespace(input_shape=(28, 28, 1), num_classes=10))


def test_cnn_training_flops_match_the_count_by_hand():
    total, rows = flops.training_flops(cnn_model())
    # Forward MACs: conv1 26*26*32*9, conv2 11*11*64*(3*3*32), dense 1600*64, logits 64*10.
    macs = [26 * 26 * 32 * 9, 11 * 11 * 64 * 288, 1600 * 64, 64 * 10]
    assert [row[1] for row in rows] == macs
    # 2 FLOPs per MAC; forward + weight gradient for conv1 (its input gradient is never needed), + input gradient after.
    assert total == 2 * (2 * macs[0] + 3 * sum(macs[1:])) == 14_778_624  # issue 18: 14.8 MFLOP per image


def test_dense_on_a_sequence_counts_every_position():
    from dlcli.core.lazy import keras

    inputs = keras.Input((5, 4))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Conv1D(3, 2)(inputs)))
    total, rows = flops.training_flops(model)
    assert [row[1] for row in rows] == [4 * 2 * 4 * 3, 4 * 3 * 2]
    assert total == 2 * (2 * 96 + 3 * 24)


def test_matmul_peak_is_a_positive_rate():
    rate = flops.matmul_peak(size=64, repeats=2, trials=1)
    assert math.isfinite(rate) and rate > 1e6
    # One chain per device at once (limit.py's replica-per-core layout), the FLOPs of both counted.
    assert math.isfinite(flops.matmul_peak(size=64, repeats=2, trials=1, devices=("/cpu:0", "/cpu:0")))


def test_limit_layouts_are_checked():
    assert limit.layouts_of("default, replica-per-core") == ["default", "replica-per-core"]
    for bad in ("defualt", "", ","):
        with pytest.raises(SystemExit, match="--layouts: unknown layout"):
            limit.layouts_of(bad)
    compile(limit.RUN, "RUN", "exec")


def test_ring_all_reduce_time():
    megabyte = 1e6
    # 2 workers: each sends half twice = the whole buffer once, in 2 hops.
    assert allreduce_table.ring_seconds(megabyte, 2, 10, 0) == pytest.approx(megabyte * 8 / 10e9)
    assert allreduce_table.ring_seconds(0, 8, 10, 1e-3) == pytest.approx(14e-3)
    # Bandwidth term tends to 2x the buffer as workers grow.
    assert allreduce_table.ring_seconds(megabyte, 256, 100, 0) < 2 * megabyte * 8 / 100e9


def test_snippets_are_valid_python():
    for name in ("DLCLI", "KERAS_TFDATA", "KERAS_TFDATA_ONEDNN", "TORCH_CNN", "TORCH_LSTM", "KERAS_IO_TRANSFORMER"):
        compile(getattr(sides, name), name, "exec")
    assert sides.torch_missing() is None or "not installed" in sides.torch_missing()
    from benchmarks import micro_batches_cpu

    compile(micro_batches_cpu.AUTO_ON + sides.DLCLI, "AUTO_ON + DLCLI", "exec")
    for name in ("KERAS_JAX", "TORCH_CUDA"):  # the GPU sides for a machine without TensorFlow
        compile(getattr(gpu_keras_jax, name), name, "exec")


def test_ratio_line_is_the_median_of_paired_ratios():
    assert sides.ratio_line({"a": [2, 3, 9], "b": [1, 1, 3]}, "a", "b") == (3, 2, 3)


def test_cnn_formulations_compute_the_recipe_model():
    from benchmarks import cnn_formulations
    from dlcli.core.lazy import keras, tf

    keras.utils.set_random_seed(0)
    model = cnn_model(dropout=0.0)
    weights = [tf.constant(w) for w in model.get_weights()]
    x = tf.constant(np.random.default_rng(0).integers(0, 256, (4, 28, 28, 1)).astype(np.uint8))
    expected = model(x, training=False).numpy()
    for name, forward in cnn_formulations.formulations(tf).items():
        np.testing.assert_allclose(forward(x, weights).numpy(), expected, rtol=1e-4, atol=1e-5, err_msg=name)


def test_settings_line_pairs_speed_and_accuracy():
    figures = {"on": [300, 200], "off": [100, 100]}
    results = {"on": [{"test": {"accuracy": 0.9}}, {"test": {"accuracy": 0.8}}], "off": [{"test": {"accuracy": 0.7}}] * 2}
    line = sides.settings_line("cnn", figures, results, "on", "off")
    assert line == "        cnn: on 250 vs off 100 examples/s = 2.50x (per-repeat 2.00-3.00); short-run test accuracy 0.8500 vs 0.7000"


def test_alternate_gives_each_side_its_own_arguments_and_counts_repeats():
    echo = 'import json, sys; print(json.dumps({"speeds": [0.0, float(sys.argv[1])]}))'
    lines = []
    figures, results = sides.alternate({"a": echo, "b": echo}, {"a": (2,), "b": (5,)}, 2, log=lambda line, **_: lines.append(line))
    assert figures == {"a": [2.0, 2.0], "b": [5.0, 5.0]}
    assert [line.split()[:3] for line in lines] == [["repeat", "1", "a:"], ["repeat", "1", "b:"], ["repeat", "2", "a:"], ["repeat", "2", "b:"]]


def test_serve_benchmark_client_speaks_keep_alive_http_and_counts_bad_answers():
    """benchmarks/serve.py's load client against a stand-in server on loopback: every answer read
    on kept-alive connections, a non-200 or non-prediction answer counted as an error."""
    import asyncio
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from benchmarks import serve

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as dlcli serve

        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            good = b"good" in body
            answer = b'{"predictions": []}' if good else b'{"error": "bad"}'
            self.send_response(200 if good else 400)
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        port = server.server_address[1]
        latencies, errors = asyncio.run(serve.load(port, "/v1/models/x:predict", [b'{"good": 1}'], 3, 0.5, 0.1))
        assert len(latencies) > 3 and not errors
        latencies, errors = asyncio.run(serve.load(port, "/v1/models/x:predict", [b'{"good": 1}', b'{"bad": 1}'], 2, 0.5, 0.1))
        assert latencies and errors and all(e.startswith("400") for e in errors)
    finally:
        server.shutdown()
        server.server_close()
