"""`dlcli serve` as a real subprocess on a free loopback port, and small HTTP helpers (the
standard library's http.client: a real HTTP/1.1 client, nothing mocked)."""

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import REPO


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def b64(path_or_bytes):
    data = Path(path_or_bytes).read_bytes() if not isinstance(path_or_bytes, bytes) else path_or_bytes
    return {"b64": base64.b64encode(data).decode()}


class Server:
    """`python -m dlcli serve MODEL --host 127.0.0.1 --port P ARGS`, its stderr in `log`.
    `wait_ready` polls the health route and keeps the statuses it saw; `stop` sends SIGTERM."""

    def __init__(self, model, *args, log, env=None, port=None, health="/health", cwd=REPO):
        self.model, self.port = model, port or free_port()
        self.health = health
        self.log = Path(log)
        self.statuses = []
        command = [sys.executable, "-m", "dlcli", "serve", *([str(model)] if model else []), "--host", "127.0.0.1", *map(str, args)]
        if "--port" not in args and not (env or {}).get("AIP_HTTP_PORT"):
            command += ["--port", str(self.port)]
        with open(self.log, "wb") as stderr:
            self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, cwd=cwd, env={**os.environ, **(env or {})})

    def wait_ready(self, timeout=180):
        """Polls the health route until 200; returns the statuses seen (0: nothing listening yet)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"dlcli serve exited with {self.process.returncode}: {self.log.read_text()[-3000:]}")
            try:
                status, _ = self.request("GET", self.health, timeout=5)
            except OSError:
                status = 0
            if not self.statuses or self.statuses[-1] != status:
                self.statuses.append(status)
            if status == 200:
                return self.statuses
            time.sleep(0.1)
        raise AssertionError(f"dlcli serve not ready after {timeout} s: {self.log.read_text()[-3000:]}")

    def request(self, method, path, body=None, headers=None, timeout=60):
        """(status, parsed JSON or raw bytes) of one request on a new connection."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body)
                headers = {"Content-Type": "application/json", **(headers or {})}
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            data = response.read()
            try:
                return response.status, json.loads(data)
            except ValueError:
                return response.status, data
        finally:
            connection.close()

    def predict(self, path, body, expect=200):
        status, answer = self.request("POST", path, body)
        assert status == expect, (status, answer)
        return answer

    def rss_kb(self):
        """(VmRSS, VmHWM) of the server process in kB."""
        fields = dict(line.split(":", 1) for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines() if ":" in line)
        return int(fields["VmRSS"].split()[0]), int(fields["VmHWM"].split()[0])

    def stop(self, timeout=60):
        """SIGTERM, then the exit code (killed after `timeout` s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def without_input(rows):
    """`dlcli predict --json` rows as the server answers them: without the "input" key."""
    return [{key: value for key, value in row.items() if key != "input"} for row in rows]


def assert_same_predictions(served, predicted, tolerance=2e-4):
    """The server's rows equal predict's, numbers within `tolerance` (one model call of a
    different batch size may round the fourth decimal the other way)."""
    assert len(served) == len(predicted), (served, predicted)
    for got, want in zip(served, without_input(predicted)):
        assert set(got) == set(want), (got, want)
        for key, value in want.items():
            if isinstance(value, float):
                assert abs(got[key] - value) <= tolerance, (key, got, want)
            elif key == "top_k":
                assert [c["class"] for c in got[key]][:1] == [c["class"] for c in value][:1], (got, want)
                assert all(abs(a["probability"] - b["probability"]) <= tolerance for a, b in zip(got[key], value)), (got, want)
            else:
                assert got[key] == value, (key, got, want)
