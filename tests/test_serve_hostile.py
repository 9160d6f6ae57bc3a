"""Hostile clients against the real `dlcli serve` subprocess: 200 bad requests of 15 kinds, over
http.client and raw sockets (for what no polite client sends). Every one is answered with a 4xx
JSON error, or its connection is closed (slowloris, bodies past the limit, broken HTTP); none
leaks a traceback; the server still answers correct predictions afterwards, its memory stays
bounded, and SIGTERM still ends it with exit 0."""

import base64
import json
import socket
import struct
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from tests.helpers import invoke
from tests.serve_helpers import Server

pytest.importorskip("uvicorn", reason='dlcli serve needs the serve extra: pip install -e ".[serve]"')

READ_TIMEOUT = 2  # the server's --read-timeout: slow clients are cut after it
MAX_BATCH = 16
PREDICT = "/v1/models/cnn:predict"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("hostile")
    result = invoke("train", "cnn", "--dataset", "digits", "--epochs", "1", "--strategy", "default", "-o", root / "cnn")
    assert result.exit_code == 0, result.output[-2000:]
    with Server(root / "cnn", "--read-timeout", READ_TIMEOUT, "--max-batch", MAX_BATCH, log=root / "server.log") as running:
        running.wait_ready()
        yield running
        assert running.stop() == 0, running.log.read_text()[-3000:]
    assert "Traceback" not in running.log.read_text()


# ## Talking to the server as no polite client does


def exchange(port, data, chunks=None, pause=0.0, timeout=15):
    """Sends `data` (then `chunks`, `pause` s apart) on a raw connection; returns (status, body)
    of the answer, or ("closed", b"") when the server closed without one."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            for chunk in chunks or []:
                time.sleep(pause)
                sock.sendall(chunk)
        except OSError:  # the server stopped reading (and closed): what it said may still be there
            pass
        received = b""
        try:
            while True:
                part = sock.recv(65536)
                if not part:
                    break
                received += part
                head, _, body = received.partition(b"\r\n\r\n")
                length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length:")]
                if length and len(body) >= length[0]:
                    break
        except OSError:
            pass
    if not received.startswith(b"HTTP/1.1 "):
        return "closed", b""
    head, _, body = received.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def post(port, body, path=PREDICT, content_type="application/json", method="POST", extra=b""):
    body = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = (f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n").encode()
    return exchange(port, request + extra + b"\r\n" + body)


def assert_json_4xx(answer, what):
    status, body = answer
    assert isinstance(status, int) and 400 <= status < 500, (what, status, body[:300])
    message = json.loads(body)["error"]
    assert isinstance(message, str) and message and "Traceback" not in message, (what, body[:300])
    return status


def assert_4xx_or_closed(answer, what):
    if answer[0] != "closed":
        assert_json_4xx(answer, what)


# ## The bad requests: (kind, [request functions])


def png(width, height, rows=1, data=b"\x00"):
    """A PNG whose header declares width x height, with `rows` rows of pixel data (at most 100,000
    pixels a row: a bomb's declared width is not built)."""
    def chunk(kind, payload):
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    raw = zlib.compress((b"\x00" + data * min(width, 100_000)) * rows)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)) + chunk(b"IDAT", raw) + chunk(b"IEND", b"")


def b64(data):
    return {"b64": base64.b64encode(data).decode()}


def pixel_bombs():
    gif = b"GIF89a" + struct.pack("<HH", 65535, 65535) + b"\x00\x00\x00" + b"\x3b"
    jpeg = b"\xff\xd8" + b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 65000, 65000, 1) + b"\x01\x11\x00" + b"\xff\xd9"
    bmp = b"BM" + b"\x00" * 16 + struct.pack("<ii", 200000, 200000) + b"\x00" * 30
    bombs = [png(60000, 60000), png(100000, 1000), png(30000, 30000, rows=2), png(2**31 - 1, 2**31 - 1), gif, jpeg, bmp,
             png(9000, 9000, rows=1)]  # the last within the budget: a truncated image, refused by the decoder
    return [b64(bomb) for bomb in bombs] + [{"image_bytes": b64(png(50000, 50000))}] * 3 + [b64(gif)] * 2 + [b64(jpeg), b64(bmp)]


def cases(port, good):
    body = json.dumps({"instances": [good]})
    deep = "[" * 50_000 + "]" * 50_000
    return {
        "truncated JSON": [lambda cut=cut: post(port, body[:cut].encode()) for cut in np.linspace(1, len(body) - 1, 15).astype(int)],
        "10 MB bodies": [lambda: post(port, b"{" + b" " * 10_000_000 + b"}")] * 5 + [lambda: chunked(port, 10_000_000)] * 5,
        "pixel bombs": [lambda bomb=bomb: post(port, {"instances": [bomb]}) for bomb in pixel_bombs()],
        "NaN and Infinity": [lambda text=text: post(port, text.encode()) for text in [
            '{"instances": [NaN]}', '{"instances": [Infinity]}', '{"instances": [-Infinity]}', '{"instances": [[NaN]]}',
            '{"instances": [1e400]}', '{"instances": [[1e999, 2]]}', '{"parameters": {"top_k": NaN}, "instances": [1]}',
        ] + [json.dumps({"instances": [np.zeros((28, 28)).tolist()]}).replace("0.0", "NaN", k + 1) for k in range(4)]
          + [json.dumps({"instances": [np.zeros((28, 28)).tolist()]}).replace("0.0", "Infinity", 1)] * 4],
        "arrays of the wrong rank or shape": [lambda value=value: post(port, {"instances": [value]}) for value in [
            0, [0], [[0]], np.zeros((28, 28, 3)).tolist(), np.zeros((27, 28)).tolist(), np.zeros((1, 28, 28, 1)).tolist(),
            [[0] * 28] * 27 + [[0] * 27], np.zeros((28, 28, 1, 1)).tolist(), [[[[[[0]]]]]], [[0, [0]]], np.zeros(784).tolist(),
            np.full((28, 28), 256).tolist(), np.full((28, 28), -1).tolist(), np.full((28, 28), 0.5).tolist(),
        ]] + [lambda: post(port, ('{"instances": [' + deep + "]}").encode())],
        "wrong content type": [lambda ct=ct: post(port, body.encode(), content_type=ct) for ct in [
            "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "application/xml", "image/png",
            "application/octet-stream", "text/html; charset=utf-8", "application/jsonp", "*/*", "json"]],
        "slowloris headers": [lambda: slow(port, b"POST " + PREDICT.encode() + b" HTTP/1.1\r\nHost: x\r\n", [b"X-a: b\r\n"] * 12)] * 10,
        "slowloris bodies": [lambda: slow(port, f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5000\r\n\r\n".encode(),
                                          [b"{ " * 8] * 12)] * 10,
        "unknown routes": [lambda method=method, path=path: post(port, b"{}", path=path, method=method) for method, path in [
            ("GET", "/"), ("POST", "/"), ("GET", "/v2/models/cnn"), ("GET", "/v1/models"), ("GET", "/v1/models/"), ("GET", "/health/"),
            ("POST", "/v1/models/cnn:explain"), ("GET", "/../../etc/passwd"), ("GET", "/%00"), ("DELETE", "/v1/models/cnn"),
            ("PUT", PREDICT), ("POST", "/metrics"), ("GET", "/v1/models/cnn/versions/x:predict"), ("OPTIONS", "/predict"), ("GET", "/predict"),
        ]],
        "unknown model names": [lambda path=path: post(port, body.encode(), path=path) for path in [
            "/v1/models/dnn:predict", "/v1/models/CNN:predict", "/v1/models/cnn2:predict", "/v1/models/cnn/versions/2:predict",
            "/v1/models/%2e%2e:predict", "/v1/models/cnn%00:predict", "/v1/models/" + "x" * 5000 + ":predict", "/v1/models/c nn:predict",
            "/v1/models/cnn/versions/1/versions/1:predict", "/v1/models/\u00e9:predict".encode("utf-8").decode("latin-1"),
        ]],
        "too many instances or none": [lambda n=n: post(port, {"instances": [good] * n}) for n in (MAX_BATCH + 1, 64, 1000, 0)]
                                      + [lambda value=value: post(port, value) for value in [{"instances": {}}, {"instances": "x"}, {"inputs": []},
                                                                                            {"instances": [good], "inputs": [good]}, {}, []]],
        "undecodable images": [lambda value=value: post(port, {"instances": [value]}) for value in [
            b64(b"not an image"), {"b64": "!!!not base64!!!"}, {"b64": "QUJD="}, {"b64": 42}, {"b64": "", "x": 1}, b64(png(28, 28)[:40]),
            b64(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100), b64(b"\xff\xd8\xff" + b"\x00" * 100), b64(b"GIF89a"), b64(b"BM"), b64(b"RIFF\x00\x00\x00\x00WEBP"),
            b64(b"II*\x00" + b"\x00" * 20), b64(np.random.default_rng(0).bytes(3000)), "a string, not base64", b64(b"")]],
        "wrong types": [lambda value=value: post(port, value) for value in [
            {"instances": [None]}, {"instances": [True]}, {"instances": [{"a": 1, "b": 2}]}, {"instances": [[["x"] * 28] * 28]},
            {"instances": [[["0"] * 28] * 28]}, {"instances": [good], "parameters": {"top_k": "3"}},
            {"instances": [good], "parameters": {"top_k": 0}}, {"instances": [good], "parameters": {"k": 3}}, {"instances": [good], "parameters": []},
            {"instances": [good], "signature_name": "other"}, {"instances": [good], "extra": 1}, "just a string", 42,
        ]] + [lambda: post(port, "\u00e9".encode("latin-1")), lambda: post(port, b"\xff\xfe{}")],
        "malformed HTTP": [lambda data=data: exchange(port, data) for data in [
            b"GARBAGE\r\n\r\n", b"POST /predict HTTP/1.1\r\nContent-Length: abc\r\n\r\n{}",
            b"POST /predict HTTP/1.1\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n{}",
            b"POST /predict HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", b"GET / HTTP/1.1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n",
            b"GET /" + b"a" * 100_000 + b" HTTP/1.1\r\n\r\n", b"GET / HTTP/1.1\r\nBad Header\r\n\r\n", b"\x00\x01\x02\x03\r\n\r\n",
            b"GET / HTTP/9.9\r\n\r\n", b"POST /predict HTTP/1.1\r\nContent-Length: -5\r\n\r\n"]],
    }


def chunked(port, size):
    request = f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    piece = b" " * 65536
    chunks = [b"%x\r\n%s\r\n" % (len(piece), piece)] * (size // len(piece)) + [b"0\r\n\r\n"]
    return exchange(port, request, chunks)


def slow(port, start, trickle):
    """Sends `start`, then a piece every 0.5 s; returns the answer and how long the server took to end it."""
    started = time.monotonic()
    answer = exchange(port, start, trickle, pause=0.5, timeout=READ_TIMEOUT + 10)
    return answer, time.monotonic() - started


def test_200_bad_requests_of_15_kinds_then_correct_predictions_and_bounded_memory(server):
    good = np.full((28, 28), 255, np.uint8)
    good[4:24, 12:16] = 0
    good = good.tolist()
    want = server.predict(PREDICT, {"instances": [good]})
    rss_before, peak_before = server.rss_kb()
    kinds = cases(server.port, good)
    assert len(kinds) == 14
    flood = [request for requests in kinds.values() for request in requests[:2]][:25]  # the 15th kind: all at once
    assert sum(len(requests) for requests in kinds.values()) + len(flood) == 200

    def check(kind, request):
        if kind.startswith("slowloris"):
            answer, seconds = request()
            assert seconds < READ_TIMEOUT + 4, (kind, seconds)  # cut by the server, not by the client giving up
            if kind == "slowloris headers":
                assert answer == ("closed", b""), answer
            else:
                assert answer[0] == "closed" or assert_json_4xx(answer, kind) == 408, answer
        elif kind in ("10 MB bodies", "malformed HTTP"):
            assert_4xx_or_closed(request(), kind)
        else:
            assert_json_4xx(request(), kind)

    with ThreadPoolExecutor(10) as pool:  # the slow clients in parallel, the others one by one
        slow_ones = [pool.submit(check, kind, request) for kind, requests in kinds.items() if kind.startswith("slowloris") for request in requests]
        for kind, requests in kinds.items():
            if not kind.startswith("slowloris"):
                for request in requests:
                    check(kind, request)
        for future in slow_ones:
            future.result()
    kind_of = {id(request): kind for kind, requests in kinds.items() for request in requests}
    with ThreadPoolExecutor(len(flood)) as pool:
        for future in [pool.submit(check, kind_of[id(request)], request) for request in flood]:
            future.result()

    assert server.predict(PREDICT, {"instances": [good]}) == want  # still serving, the same answer
    status, answer = server.request("GET", "/v1/models/cnn")
    assert status == 200 and answer["model_version_status"][0]["state"] == "AVAILABLE"
    rss_after, peak_after = server.rss_kb()
    # 10 MB bodies were never held; a pixel bomb never decoded: what the server holds grew little
    assert rss_after - rss_before < 300_000, (rss_before, rss_after)
    assert peak_after - peak_before < 600_000, (peak_before, peak_after)
    status, text = server.request("GET", "/metrics")
    errors = sum(float(line.rsplit(" ", 1)[1]) for line in text.decode().splitlines() if line.startswith("dlcli_serve_errors_total"))
    assert errors >= 140, errors


def test_a_flood_of_good_requests_past_the_admission_limit_is_answered_or_refused_with_429(server):
    """More concurrent requests than the server admits: each gets its prediction or a 429."""
    image = np.zeros((28, 28)).tolist()
    with ThreadPoolExecutor(80) as pool:
        answers = list(pool.map(lambda _: server.request("POST", PREDICT, {"instances": [image] * MAX_BATCH}), range(160)))
    assert {status for status, _ in answers} <= {200, 429}, {status for status, _ in answers}
    assert sum(status == 200 for status, _ in answers) >= 64
    assert all(len(answer["predictions"]) == MAX_BATCH for status, answer in answers if status == 200)


def test_an_image_that_passes_its_header_check_but_does_not_decode_fails_alone_in_a_shared_batch(server):
    """A batch's images are decoded together in one call; one that breaks that call (its header
    and end marker are fine, its pixel data is not) is found by decoding each request, then each
    image, alone: its request gets a 400 naming the instance, every other request its own answer."""
    rng = np.random.default_rng(1)
    files = []
    for _ in range(8):
        pixels = rng.integers(0, 256, (28, 28), np.uint8)
        files.append(png_of(pixels))
    want = [server.predict(PREDICT, {"instances": [b64(data)]})["predictions"][0] for data in files]
    broken = png(9000, 9000, rows=1)  # within the pixel budget, complete as far as the header check reads
    requests = [{"instances": [b64(data)]} for data in files] + [{"instances": [b64(files[0]), b64(files[1]), b64(broken)]}] * 4
    with ThreadPoolExecutor(len(requests)) as pool:
        answers = list(pool.map(lambda body: post(server.port, body), requests * 3))
    for body, (status, answer) in zip(requests * 3, answers):
        if len(body["instances"]) == 1:
            assert status == 200, answer[:300]
            got, expected = json.loads(answer)["predictions"][0], want[files.index(base64.b64decode(body["instances"][0]["b64"]))]
            assert got["class"] == expected["class"] and got["probability"] == pytest.approx(expected["probability"], abs=1e-3)  # batch size moves the 4th decimal
        else:
            assert status == 400 and json.loads(answer)["error"].startswith("instance 2: this file is not an image"), answer[:300]


def png_of(pixels):
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "PNG")
    return out.getvalue()


def test_one_request_a_call_decodes_images_as_it_reads_them_with_the_same_answers(server, tmp_path):
    """--max-batch 1 has no batch to decode images with: they are decoded as requests are read,
    to the same predictions, and a broken one is refused in the same words."""
    pixels = np.random.default_rng(2).integers(0, 256, (28, 28), np.uint8)
    good, broken = {"instances": [b64(png_of(pixels))]}, {"instances": [b64(png(9000, 9000, rows=1))]}
    want = server.predict(PREDICT, good)
    with Server(server.model, "--max-batch", 1, log=tmp_path / "one.log") as one:
        one.wait_ready()
        assert one.predict(PREDICT, good) == want
        status, answer = post(one.port, broken)
        assert status == 400 and json.loads(answer)["error"].startswith("instance 0: this file is not an image"), answer[:300]
        assert one.stop() == 0
