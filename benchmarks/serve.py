"""`dlcli serve` under load: requests/s and p50/p99 latency at concurrency 1, 8 and 64, with
dynamic batching against one model call per request.

Two sides, the same server and model, alternating in fresh server processes `--repeats` times:
  batched       --max-batch 64 --batch-timeout-ms 2 (the defaults)
  per-request   --max-batch 1: every request is its own model call
Models: cnn (MNIST-sized digits, each request one base64 PNG) and lstm (the recipe's own model:
128 units over 400 words, each request one review of 40-200 words). The client is a real HTTP/1.1
client in another process (`--client`: asyncio, one keep-alive connection per concurrent user,
each sending its next request when the answer arrives); it checks every answer (200 with
"predictions") and counts the others as errors. Each concurrency runs `--seconds` after one second
of warm-up. Both processes share the machine's cores, as a load test on one machine does.

Prints one line per measurement, then per model the median over repeats: the batched side's
requests/s over the per-request side's at concurrency 64, and p99 / p50 at concurrency 8.

    python benchmarks/serve.py [--repeats 2] [--seconds 10] [--models cnn,lstm] [--cnn RUN] [--lstm RUN]
    python benchmarks/serve.py --load 60 --concurrency 32 --models cnn   # the bounded load test
"""

import argparse
import asyncio
import base64
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
SIDES = {"batched": ["--max-batch", "64", "--batch-timeout-ms", "2"], "per-request": ["--max-batch", "1"]}
CONCURRENCY = (1, 8, 64)
TRAIN = {
    "cnn": ["train", "cnn", "--dataset", "digits", "--epochs", "1"],
    "lstm": ["train", "lstm", "--dataset", "synthetic", "--epochs", "1"],
}


# ## The client: its own process, asyncio, keep-alive connections


async def user(port, path, bodies, start, stop, latencies, errors, offset):
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n".encode()
    i = offset
    try:
        while time.perf_counter() < stop:
            body = bodies[i % len(bodies)]
            i += 1
            sent = time.perf_counter()
            writer.write(head + b"Content-Length: %d\r\n\r\n" % len(body) + body)
            status = int((await reader.readline()).split()[1])
            length = 0
            while (line := await reader.readline()) not in (b"\r\n", b""):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            answer = await reader.readexactly(length)
            if sent >= start:
                if status == 200 and answer.startswith(b'{"predictions"'):
                    latencies.append(time.perf_counter() - sent)
                else:
                    errors.append(f"{status} {answer[:200]!r}")
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError) as e:
        errors.append(f"connection: {type(e).__name__} {e}")
    finally:
        writer.close()


async def load(port, path, bodies, concurrency, seconds, warmup):
    latencies, errors = [], []
    start = time.perf_counter() + warmup
    stop = start + seconds
    await asyncio.gather(*(user(port, path, bodies, start, stop, latencies, errors, i) for i in range(concurrency)))
    return latencies, errors


def client(port, path, bodies_file, concurrency, seconds, warmup=1.0):
    """Runs in its own process (`--client`): prints the measurement as one JSON line."""
    bodies = [line.encode() for line in Path(bodies_file).read_text().splitlines()]
    latencies, errors = asyncio.run(load(port, path, bodies, concurrency, seconds, warmup))
    latencies.sort()
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")
    print(json.dumps({"requests_per_s": len(latencies) / seconds, "p50_ms": pick(0.50), "p99_ms": pick(0.99), "requests": len(latencies),
                      "errors": len(errors), "first_errors": errors[:3]}))


def measure(port, path, bodies_file, concurrency, seconds):
    result = subprocess.run([sys.executable, __file__, "--client", str(port), path, str(bodies_file), str(concurrency), str(seconds)],
                            capture_output=True, text=True, timeout=seconds + 120, env=ENV)
    if result.returncode != 0:
        raise SystemExit(result.stderr[-3000:])
    return json.loads(result.stdout.splitlines()[-1])


# ## The inputs: PNG digits and reviews, as clients send them


def bodies(model, folder):
    """A file of request bodies, one JSON line each, cycled through by the client."""
    import numpy as np
    from PIL import Image

    lines = []
    rng = np.random.default_rng(0)
    if model == "cnn":
        from sklearn.datasets import load_digits

        digits = load_digits().images[:200]
        for image in digits:
            png = io.BytesIO()
            Image.fromarray((image * 255 / 16).astype(np.uint8)).resize((28, 28)).save(png, "PNG")
            lines.append(json.dumps({"instances": [{"b64": base64.b64encode(png.getvalue()).decode()}]}))
    else:
        from dlcli.data.text import synthetic_reviews

        reviews, _ = synthetic_reviews(200, seed=5)
        for review in reviews:
            words = (review + " ") * int(rng.integers(3, 10))
            lines.append(json.dumps({"instances": [" ".join(words.split()[: int(rng.integers(40, 200))])]}))
    path = Path(folder) / f"{model}-bodies.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


# ## The server, one fresh process per side and repeat


def free_port():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, run, args, log):
        self.port = free_port()
        self.process = subprocess.Popen([sys.executable, "-m", "dlcli", "serve", str(run), "--host", "127.0.0.1", "--port", str(self.port), *args],
                                        cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=open(log, "wb"))
        import http.client

        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise SystemExit(f"dlcli serve exited with {self.process.returncode}: {Path(log).read_text()[-2000:]}")
            try:
                connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                connection.request("GET", "/health")
                if connection.getresponse().status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise SystemExit("dlcli serve did not get ready in 300 s")

    def stop(self):
        self.process.terminate()
        return self.process.wait(60)


def rss_mib(pid):
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def machine_line():
    from benchmarks.onednn_cpu import cpu_line

    return f"CPU: {cpu_line()}; {os.cpu_count()} cores; load average at the start {' '.join(open('/proc/loadavg').read().split()[:3])}"


def runs_for(models, given, folder):
    runs = {}
    for model in models:
        if given.get(model):
            runs[model] = Path(given[model])
            continue
        runs[model] = Path(folder) / model
        print(f"training a {model} run: dlcli {' '.join(TRAIN[model])}", flush=True)
        subprocess.run([sys.executable, "-m", "dlcli", *TRAIN[model], "-o", str(runs[model])], cwd=REPO, env=ENV, check=True,
                       capture_output=True)
    return runs


def compare(options, runs, folder):
    figures = {}  # (model, side, concurrency) -> [measurements]
    for model, run in runs.items():
        body_file = bodies(model, folder)
        for repeat in range(options.repeats):
            order = list(SIDES) if repeat % 2 == 0 else list(SIDES)[::-1]  # alternate which side goes first
            for side in order:
                server = Server(run, SIDES[side], Path(folder) / f"{model}-{side}-{repeat}.log")
                try:
                    for concurrency in CONCURRENCY:
                        m = measure(server.port, f"/v1/models/{model}:predict", body_file, concurrency, options.seconds)
                        figures.setdefault((model, side, concurrency), []).append(m)
                        print(f"{model:>4} repeat {repeat + 1} {side:>11} c={concurrency:<2}: {m['requests_per_s']:7.1f} req/s  "
                              f"p50 {m['p50_ms']:7.1f} ms  p99 {m['p99_ms']:7.1f} ms  errors {m['errors']}"
                              + (f" {m['first_errors']}" if m["errors"] else ""), flush=True)
                finally:
                    server.stop()
    print("\nmedians over repeats:")
    for model in runs:
        for side in SIDES:
            cells = []
            for concurrency in CONCURRENCY:
                ms = figures[(model, side, concurrency)]
                med = lambda key: statistics.median(m[key] for m in ms)
                cells.append(f"c={concurrency}: {med('requests_per_s'):.0f} req/s, p50 {med('p50_ms'):.1f} / p99 {med('p99_ms'):.1f} ms")
            print(f"  {model:>4} {side:>11}: " + "; ".join(cells))
        ratios = [b["requests_per_s"] / p["requests_per_s"] for b, p in zip(figures[(model, "batched", 64)], figures[(model, "per-request", 64)])]
        tails = [m["p99_ms"] / m["p50_ms"] for m in figures[(model, "batched", 8)]]
        errors = sum(m["errors"] for key, ms in figures.items() if key[0] == model for m in ms)
        print(f"  {model:>4}: batched / per-request throughput at c=64 = {statistics.median(ratios):.2f}x (per repeat "
              f"{', '.join(f'{r:.2f}' for r in ratios)}); batched p99/p50 at c=8 = {statistics.median(tails):.2f} "
              f"({', '.join(f'{t:.2f}' for t in tails)}); errors {errors}", flush=True)


def load_test(options, runs, folder):
    """One server, `--concurrency` users for `--load` seconds: throughput, latency, errors, memory."""
    for model, run in runs.items():
        body_file = bodies(model, folder)
        server = Server(run, SIDES["batched"], Path(folder) / f"{model}-load.log")
        try:
            before = rss_mib(server.process.pid)
            m = measure(server.port, f"/v1/models/{model}:predict", body_file, options.concurrency, options.load)
            after = rss_mib(server.process.pid)
        finally:
            code = server.stop()
        print(f"{model} load test: {options.load} s at concurrency {options.concurrency}: {m['requests']} requests, "
              f"{m['requests_per_s']:.1f} req/s, p50 {m['p50_ms']:.1f} ms, p99 {m['p99_ms']:.1f} ms, errors {m['errors']}"
              f"{' ' + str(m['first_errors']) if m['errors'] else ''}; server RSS {before[0]:.0f} -> {after[0]:.0f} MiB "
              f"(peak {after[1]:.0f}); SIGTERM exit {code}", flush=True)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--client":
        port, path, body_file, concurrency, seconds = sys.argv[2:7]
        return client(int(port), path, body_file, int(concurrency), float(seconds))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="cnn,lstm")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--cnn", help="a cnn run folder (default: one trained on digits for 1 epoch)")
    parser.add_argument("--lstm", help="an lstm run folder (default: one trained on synthetic reviews for 1 epoch)")
    parser.add_argument("--load", type=float, default=0, help="instead: a load test of this many seconds on the batched server")
    parser.add_argument("--concurrency", type=int, default=32, help="users of the load test")
    options = parser.parse_args()
    models = [m.strip() for m in options.models.split(",") if m.strip()]
    unknown = sorted(set(models) - set(TRAIN))
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(TRAIN)}")
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory(prefix="dlcli-serve-bench-") as folder:
        runs = runs_for(models, {"cnn": options.cnn, "lstm": options.lstm}, folder)
        if options.load:
            load_test(options, runs, folder)
        else:
            compare(options, runs, folder)
    print(f"load average at the end: {' '.join(open('/proc/loadavg').read().split()[:3])}")


if __name__ == "__main__":
    main()
