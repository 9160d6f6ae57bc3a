"""`dlcli serve` as a real subprocess on a free loopback port, over HTTP: every input kind of each
recipe family (images, text, tables, audio) answered as `dlcli predict --json` answers the same
inputs; TensorFlow Serving's and Vertex AI's routes (the model from gs://, through the emulator);
health before and after the load; /metrics; SIGTERM with requests in flight; one-line refusals."""

import csv
import io
import json
import re
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from dlcli.core.errors import DlcliError
from tests.conftest import REPO
from tests.helpers import assert_one_line_error, invoke, tone, write_wav
from tests.serve_helpers import Server, assert_same_predictions, b64, free_port

pytest.importorskip("uvicorn", reason='dlcli serve needs the serve extra: pip install -e ".[serve]"')

TOPICS = {"sport": "goal match team score coach", "food": "soup bread spicy dinner bake", "music": "guitar album concert song band"}
PLACES = ["NEAR BAY", "INLAND", "ISLAND"]


def predicted(run, *inputs):
    """`dlcli predict RUN INPUTS --json`, in this process."""
    result = invoke("predict", run, *inputs, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def train(*args):
    result = invoke("train", *args, "--strategy", "default", "--json")
    assert result.exit_code == 0, result.output[-3000:]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """One small run per family, trained once: cnn (images), lstm (a text CSV of 3 topics),
    regression (a CSV with a category column and blank cells), speech (class folders of WAVs)."""
    root = tmp_path_factory.mktemp("serve-runs")
    train("cnn", "--dataset", "digits", "--epochs", "1", "-o", root / "cnn")
    rng = np.random.default_rng(0)
    with open(root / "texts.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["text", "topic"])
        for i in range(90):
            topic = list(TOPICS)[i % 3]
            writer.writerow([" ".join(rng.choice(TOPICS[topic].split(), 4)) + " today", topic])
    train("lstm", "--data", root / "texts.csv", "--epochs", "2", "--set", "units=8", "--set", "embedding_dim=8",
          "--set", "sequence_length=12", "-o", root / "lstm")
    lines = ["rooms,age,place,price"]
    for i in range(80):
        rooms, age, place = rng.integers(1, 8), rng.integers(1, 50), rng.integers(0, 3)
        cells = [str(rooms), "" if i % 9 == 0 else str(age), "" if i % 13 == 0 else PLACES[place], f"{50 * rooms - age + 100 * place:.1f}"]
        lines.append(",".join(cells))
    (root / "houses.csv").write_text("\n".join(lines) + "\n")
    train("regression", "--data", root / "houses.csv", "--set", "target=price", "--set", "solver=adam", "--epochs", "2", "-o", root / "regression")
    for name, pitch in {"low": 300, "high": 1800}.items():
        for i in range(10):
            write_wav(root / "words" / name / f"{i}.wav", tone(pitch, 0.2 + 0.02 * (i % 3), seed=i))
    train("speech", "--data", root / "words", "--epochs", "1", "--batch-size", "8", "--set", "clip_seconds=0.3",
          "--set", "num_mel_bins=16", "--set", "validation_split=0", "-o", root / "speech")
    return root


@pytest.fixture(scope="module")
def servers(runs, tmp_path_factory):
    """A server per run, started together: the cnn one with two worker processes, the others one."""
    logs = tmp_path_factory.mktemp("serve-logs")
    started = {
        "cnn": Server(runs / "cnn", "--workers", "2", log=logs / "cnn.log"),
        "lstm": Server(runs / "lstm", "--top-k", "2", log=logs / "lstm.log"),
        "regression": Server(runs / "regression", "--name", "houses", log=logs / "regression.log"),
        "speech": Server(runs / "speech", log=logs / "speech.log"),
    }
    try:
        for server in started.values():
            server.wait_ready()
        yield started
    finally:
        codes = {name: server.stop() for name, server in started.items()}
        assert codes == dict.fromkeys(started, 0), codes


def test_help_list_and_serve_help_import_neither_tensorflow_nor_the_server_stack():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from dlcli.cli.app import app\n"
        "for args in (['--help'], ['list'], ['serve', '--help']):\n"
        "    result = CliRunner().invoke(app, args)\n"
        "    assert result.exit_code == 0, (args, result.output)\n"
        "loaded = [m for m in ('tensorflow', 'keras', 'starlette', 'uvicorn', 'prometheus_client') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=REPO)


def test_without_the_serve_extra_it_is_one_line_naming_the_extra(monkeypatch):
    from dlcli.cli.commands import serve

    real = serve.importlib.util.find_spec
    monkeypatch.setattr(serve.importlib.util, "find_spec", lambda name: None if name == "uvicorn" else real(name))
    assert_one_line_error(invoke("serve", "runs/x"), 'pip install -e ".[serve]"', "uvicorn")


def test_images_of_every_format_and_size_as_predict_reads_them(servers, runs, tmp_path):
    rng = np.random.default_rng(1)
    grey = (rng.random((28, 28)) * 255).astype(np.uint8)
    colour = (rng.random((300, 200, 3)) * 255).astype(np.uint8)
    files = []
    for name, image in [("grey.png", Image.fromarray(grey)), ("big.jpg", Image.fromarray(colour)), ("p.gif", Image.fromarray(colour).convert("P")),
                        ("rgba.png", Image.fromarray(colour).convert("RGBA")), ("x.bmp", Image.fromarray(colour[:50])),
                        ("x.webp", Image.fromarray(colour[:64, :64])), ("x.tif", Image.fromarray(grey)),
                        ("i16.png", Image.fromarray(grey.astype(np.uint16) * 257))]:
        image.save(tmp_path / name)
        files.append(tmp_path / name)
    want = predicted(runs / "cnn", *files)
    server = servers["cnn"]
    got = server.predict("/v1/models/cnn:predict", {"instances": [b64(f) for f in files]})["predictions"]
    assert_same_predictions(got, want)
    # TensorFlow Serving's named binary input, and the pixels themselves (a 28x28 grey PNG is lossless).
    # Compared with predict on as many files: a batch of another size may round the 4th decimal otherwise.
    got = server.predict("/v1/models/cnn/versions/1:predict", {"instances": [{"image_bytes": b64(files[0])}, grey.tolist(), grey[..., None].tolist()]})
    assert_same_predictions(got["predictions"], predicted(runs / "cnn", *[files[0]] * 3))
    got = server.predict("/v1/models/cnn:predict", {"inputs": [b64(files[1])]})  # columnar: "outputs"
    assert_same_predictions(got["outputs"], predicted(runs / "cnn", files[1]))
    got = server.predict("/predict", {"instances": [b64(files[0])], "parameters": {"top_k": 5}})["predictions"]
    assert len(got[0]["top_k"]) == 5 and got[0]["class"] == want[0]["class"]


def test_texts_and_text_files_as_predict_reads_them(servers, runs, tmp_path):
    texts = ["goal match team", "spicy soup for dinner", "a guitar concert", "ünïcode band sóng"]
    (tmp_path / "review.txt").write_text("bread and soup\r\nat dinner\nguitar", encoding="utf-8")
    want = predicted(runs / "lstm", *texts, tmp_path / "review.txt")
    assert {row["class"] for row in want} <= set(TOPICS)
    got = servers["lstm"].predict("/v1/models/lstm:predict", {"instances": [*texts, b64(tmp_path / "review.txt")]})["predictions"]
    assert_same_predictions(got, want)
    assert all(len(row["top_k"]) == 2 for row in got)  # the server's --top-k
    status, answer = servers["lstm"].request("POST", "/v1/models/lstm:predict", {"instances": [[1, 2, 3]]})
    assert status == 400 and "instance 0" in answer["error"] and "JSON string" in answer["error"]


def test_table_rows_with_blanks_and_categories_as_predict_reads_the_csv(servers, runs, tmp_path):
    rows = [
        {"rooms": 3, "age": 20, "place": "INLAND"},
        {"rooms": "5", "age": None, "place": "ISLAND"},  # a blank age, numbers as text
        {"rooms": 2.5, "age": "", "place": ""},  # blanks imputed with the training means
        {"rooms": 4, "age": 7, "place": "UNSEEN"},  # a category training never saw: all zeros
    ]
    csv_rows = ["rooms,age,place", "3,20,INLAND", "5,,ISLAND", "2.5,,", "4,7,UNSEEN"]
    (tmp_path / "rows.csv").write_text("\n".join(csv_rows) + "\n")
    want = predicted(runs / "regression", tmp_path / "rows.csv")
    server = servers["regression"]
    got = server.predict("/v1/models/houses:predict", {"instances": rows})["predictions"]
    assert_same_predictions(got, want)
    assert set(got[0]) == {"price"}
    columns = {name: [row[name] for row in rows] for name in ("rooms", "age", "place")}  # TF Serving's columnar form
    assert_same_predictions(server.predict("/v1/models/houses:predict", {"inputs": columns})["outputs"], want)
    (tmp_path / "one.csv").write_text("\n".join(csv_rows[:2]) + "\n")
    assert_same_predictions(server.predict("/predict", {"instances": [[3, 20, "INLAND"]]})["predictions"], predicted(runs / "regression", tmp_path / "one.csv"))
    status, answer = server.request("POST", "/predict", {"instances": [{"rooms": 3, "age": 20, "plaice": "INLAND"}]})
    assert status == 400 and "'place'" in answer["error"] and "'plaice'" in answer["error"]
    status, answer = server.request("POST", "/v1/models/regression:predict", {"instances": rows})
    assert status == 404 and "Servable not found" in answer["error"] and "'houses'" in answer["error"]


def test_numeric_table_rows_are_read_as_the_same_csv_row():
    """A table of numbers only (the other table kind) reads a JSON row as predict reads that CSV row."""
    from dlcli.runs.record import DataSpec, RunRecord
    from recipes import regression

    record = RunRecord(recipe="regression", config={}, data=DataSpec(kind="table", source="", input_shape=[2], feature_names=["a", "b"]))
    assert regression.read_instance(record, {"a": 1, "b": "2.5"}).tolist() == [1.0, 2.5]
    for row, message in [({"a": 1, "b": None}, "no complete numeric rows"), ({"a": 1, "b": "x"}, "not a number"), ({"a": 1}, "lacks 'b'"),
                         ({"a": 1, "b": float("1e400")}, "holds a JSON number")]:
        with pytest.raises(DlcliError, match=message):
            regression.read_instance(record, row)


def test_wav_clips_of_any_width_rate_and_channels_as_predict_reads_them(servers, runs, tmp_path):
    clips = [
        write_wav(tmp_path / "a.wav", tone(300, 0.25)),
        write_wav(tmp_path / "b.wav", tone(1800, 0.5, rate=16000), rate=16000, width=3),  # longer: cropped
        write_wav(tmp_path / "c.wav", tone(1800, 0.1, rate=22050), rate=22050, channels=2, width=1),
        write_wav(tmp_path / "d.wav", tone(300, 0.3, rate=44100), rate=44100, width=4),
    ]
    want = predicted(runs / "speech", *clips)
    server = servers["speech"]
    assert_same_predictions(server.predict("/v1/models/speech:predict", {"instances": [b64(c) for c in clips]})["predictions"], want)
    from dlcli.data import audio

    waveform = audio.read_clip(clips[0], 8000, 2400)  # the raw waveform the model reads
    assert_same_predictions(server.predict("/predict", {"instances": [waveform.tolist()]})["predictions"], predicted(runs / "speech", clips[0]))
    status, answer = server.request("POST", "/predict", {"instances": [b64(b"RIFF....WAVEfmt nonsense")]})
    assert status == 400 and answer["error"].startswith("instance 0: this file is not a PCM WAV file")


def test_status_metadata_and_the_tf_serving_errors(servers):
    server = servers["cnn"]
    assert server.request("GET", "/v1/models/cnn") == (200, {"model_version_status": [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]})
    status, metadata = server.request("GET", "/v1/models/cnn/metadata")
    assert status == 200 and metadata["model_spec"] == {"name": "cnn", "signature_name": "", "version": "1"}
    signature = metadata["metadata"]["signature_def"]["signature_def"]["serving_default"]
    assert signature["inputs"]["instances"]["dtype"] == "DT_UINT8"
    assert [d["size"] for d in signature["inputs"]["instances"]["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]
    assert set(signature["outputs"]) == {"class", "probability", "top_k"}
    assert metadata["dlcli"]["class_names"] == [str(i) for i in range(10)]
    for method, path, status in [("GET", "/v1/models/nope", 404), ("POST", "/v1/models/nope:predict", 404), ("GET", "/v1/models/cnn:predict", 405),
                                 ("GET", "/v1/models/cnn/versions/2", 404), ("POST", "/v1/models/cnn/metadata", 405), ("GET", "/nowhere", 404),
                                 ("GET", "/predict", 405)]:
        got, answer = server.request(method, path)
        assert got == status and isinstance(answer, dict) and answer["error"], (method, path, got, answer)


def test_metrics_count_requests_errors_latency_and_batches_over_both_workers(servers):
    server = servers["cnn"]
    before = metrics(server)
    body = {"instances": [np.zeros((28, 28)).tolist()] * 3}
    for _ in range(10):  # new connections: the kernel spreads them over the two workers
        server.predict("/v1/models/cnn:predict", body)
    for _ in range(4):
        server.request("POST", "/v1/models/cnn:predict", b"{not json", {"Content-Type": "application/json"})
    after = metrics(server)
    delta = lambda name: after.get(name, 0) - before.get(name, 0)
    assert delta('dlcli_serve_requests_total{code="200",route="predict"}') == 10
    assert delta('dlcli_serve_errors_total{code="400",route="predict"}') == 4
    assert delta('dlcli_serve_request_seconds_count{route="predict"}') == 14
    assert delta("dlcli_serve_examples_total") == 30 and delta("dlcli_serve_batch_size_count") >= 1
    assert after["dlcli_serve_model_loaded"] == 2  # both workers
    log = server.log.read_text()
    assert len(re.findall(r'"POST /v1/models/cnn:predict HTTP/1.1" 400 ', log)) >= 4  # one access line per request
    pids = set(re.findall(r"dlcli serve \[(\d+)\]: model loaded", log))
    assert len(pids) == 2, log[-2000:]


def metrics(server):
    status, text = server.request("GET", "/metrics")
    assert status == 200
    return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in text.decode().splitlines() if line and not line.startswith("#")}


def test_vertex_ai_contract_from_gs_then_sigterm_drains_the_requests_in_flight(runs, tmp_path):
    """AIP_STORAGE_URI (gs://, the emulator), AIP_HTTP_PORT, AIP_HEALTH_ROUTE (503 while loading,
    200 after), AIP_PREDICT_ROUTE, the 1.5 MB limit; then SIGTERM while requests wait for their
    batch: every one answered, exit 0."""
    pytest.importorskip("gcp_storage_emulator", reason="gcp-storage-emulator (the test extra) serves gs:// here")
    from tests.gcs_emulator import GcsEmulator

    (tmp_path / "gcs").mkdir()
    with GcsEmulator(tmp_path / "gcs") as gcs:
        gcs.create_bucket("models")
        for name in ("config.json", "model.keras"):
            gcs.put("models", f"digits/{name}", (runs / "cnn" / name).read_bytes())
        port = free_port()
        env = {**gcs.env, "DLCLI_CACHE": str(tmp_path / "cache"), "AIP_STORAGE_URI": "gs://models/digits", "AIP_HTTP_PORT": str(port),
               "AIP_HEALTH_ROUTE": "/v1/endpoints/1/deployedModels/2", "AIP_PREDICT_ROUTE": "/v1/endpoints/1/deployedModels/2:predict"}
        server = Server(None, "--batch-timeout-ms", "400", log=tmp_path / "vertex.log", env=env, port=port, health=env["AIP_HEALTH_ROUTE"])
        with server:
            statuses = server.wait_ready()
            assert 503 in statuses and statuses.index(503) < statuses.index(200), statuses  # health: 503 while loading
            image = io.BytesIO()
            Image.fromarray(np.full((28, 28), 255, np.uint8)).save(image, "PNG")
            body = {"instances": [b64(image.getvalue())], "parameters": {"top_k": 2}}
            answer = server.predict(env["AIP_PREDICT_ROUTE"], body)
            assert len(answer["predictions"]) == 1 and len(answer["predictions"][0]["top_k"]) == 2
            status, answer = server.request("POST", env["AIP_PREDICT_ROUTE"], {"instances": ["x" * 1_600_000]})
            assert status == 413 and answer["error"] == "Request payload size exceeds the limit: 1572864 bytes."

            results = []

            def client():
                results.append(server.request("POST", env["AIP_PREDICT_ROUTE"], body))

            threads = [threading.Thread(target=client) for _ in range(12)]
            for thread in threads:
                thread.start()
            time.sleep(0.15)  # they are read and wait for their batch (400 ms)
            started = time.monotonic()
            code = server.stop()
            for thread in threads:
                thread.join(30)
        assert code == 0, server.log.read_text()[-3000:]
        assert [status for status, _ in results] == [200] * 12, results
        assert time.monotonic() - started < 20
        assert "SIGTERM: finishing the requests in flight" in server.log.read_text()


def test_models_that_cannot_be_served_are_one_line_and_exit_2(runs, tmp_path, dlcli_subprocess):
    result = dlcli_subprocess("serve", tmp_path / "nothing", "--port", free_port(), timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [f"error: not found: {tmp_path / 'nothing'}"]
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_bytes((runs / "cnn" / "config.json").read_bytes())
    (broken / "model.keras").write_bytes((runs / "cnn" / "model.keras").read_bytes()[:5000])  # truncated: no zip directory
    result = dlcli_subprocess("serve", broken, "--port", free_port(), timeout=120)
    assert result.returncode == 2 and result.stderr.strip().splitlines()[-1].startswith("error: cannot load"), result.stderr
    assert "serving" not in result.stderr  # refused before the port was opened
    # A model Keras cannot build (an unknown layer class): found when it loads, after the port opened.
    import zipfile

    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "config.json").write_bytes((runs / "cnn" / "config.json").read_bytes())
    with zipfile.ZipFile(runs / "cnn" / "model.keras") as source, zipfile.ZipFile(unknown / "model.keras", "w") as target:
        for item in source.infolist():
            data = source.read(item)
            target.writestr(item, data.replace(b'"Conv2D"', b'"NoSuchLayer"') if item.filename == "config.json" else data)
    result = dlcli_subprocess("serve", unknown, "--port", free_port(), timeout=180)
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert result.returncode == 2 and len(lines) == 1 and "the model did not load" in lines[0], result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    result = dlcli_subprocess("serve", runs / "cnn", "--max-batch", "0", timeout=120)
    assert result.returncode == 2 and "--max-batch must be from 1 to 4096. Received: 0" in result.stderr
