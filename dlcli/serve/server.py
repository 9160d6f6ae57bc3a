"""Listening, workers, signals: `dlcli serve` from its options to a drained exit.

Order: the model is found and checked (no TensorFlow; a gs:// model is downloaded), the port is
bound (both failures are one line and exit 2, before anything listens), then uvicorn serves
while the model loads in the background: health checks answer 503 until it is loaded, 200
after. A model that fails to load then is one line and exit 2 as well.

SIGTERM (what `docker stop` and Vertex AI send) and Ctrl-C stop accepting connections, let the
requests in flight finish (up to GRACE seconds), and exit 0. uvicorn would raise the signal
again after its drain (a 143 exit); `DrainingServer` does not, as a drained stop is a success.

Workers: TensorFlow is not fork-safe, so `--workers N` starts N spawned processes, each loading
its own model and running its own batcher on the one listening socket (the kernel spreads the
connections); the parent only waits for them, forwards SIGTERM, and exits with the first
failure's code (2 for a model that fails to load) or 0. uvicorn's own `workers` restarts a
worker that exits, which would loop on a model that cannot load.
"""

import contextlib
import logging
import multiprocessing
import os
import resource
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace

import uvicorn

from dlcli.core.errors import DlcliError
from dlcli.serve import app as serve_app
from dlcli.serve import model
from dlcli.serve.protocol import GuardedProtocol

GRACE = 25  # seconds to finish the requests in flight after SIGTERM (docker stop waits 10 by default, Vertex AI 30)
KEEP_ALIVE = 5  # seconds an idle keep-alive connection stays open
MAX_CONNECTIONS = 1000  # beyond: 503 from uvicorn (each connection holds a file descriptor)


@dataclass
class Options:
    location: str
    host: str = "0.0.0.0"
    port: int = 8080
    workers: int = 1
    name: str | None = None
    top_k: int = 3
    unsafe: bool = False
    settings: serve_app.Settings = None


def serve(options):
    """Serves until SIGTERM/SIGINT; returns normally after a drained stop, raises DlcliError
    (exit 2) when the model cannot be served or the port cannot be bound."""
    served = model.resolve(options.location, options.name, options.unsafe, options.top_k, options.settings.max_batch)
    sock = bind(options.host, options.port)
    options = replace(options, location=str(served.local))  # workers read the downloaded copy of a gs:// model
    shown = f"[{options.host}]" if ":" in options.host else options.host
    routes = f"TF Serving /v1/models/{served.name}[:predict|/metadata], Vertex AI {options.settings.health_route} {options.settings.predict_route}, /metrics"
    serve_app.log(f"serving {served.record.recipe} ({served.kind}, {served.artifact}) as '{served.name}' on http://{shown}:{sock.getsockname()[1]}: "
                  f"{routes}; {options.workers} worker(s), batches of up to {options.settings.max_batch} within "
                  f"{options.settings.batch_timeout * 1000:g} ms; loading the model")
    raise_file_limit()
    if options.workers == 1:
        failure = run_worker(options, served, sock)
    else:
        failure = supervise(options, sock)
    if failure:
        raise DlcliError(f"the model did not load: {failure}")


def bind(host, port):
    """The server's socket, bound (not yet listening: connections are refused until it serves)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise DlcliError(f"cannot listen on {host}:{port}: {e.strerror or e}.") from None
    sock.set_inheritable(True)
    return sock


def raise_file_limit():
    """Each connection holds a file descriptor: the soft limit up to what MAX_CONNECTIONS needs."""
    with contextlib.suppress(ValueError, OSError):
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        wanted = MAX_CONNECTIONS + 256
        if soft != resource.RLIM_INFINITY and soft < wanted:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted if hard == resource.RLIM_INFINITY else min(wanted, hard), hard))


class DrainingServer(uvicorn.Server):
    """uvicorn's server, whose stop on SIGTERM or Ctrl-C ends in a normal return (exit 0)."""

    signals = (signal.SIGINT, signal.SIGTERM)  # a worker of --workers N: SIGTERM only, from its parent

    @contextlib.contextmanager
    def capture_signals(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self.handle_exit) for sig in self.signals}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def handle_exit(self, sig, frame):
        if not self.should_exit:
            serve_app.log(f"{signal.Signals(sig).name}: finishing the requests in flight (up to {GRACE} s), then exiting")
        super().handle_exit(sig, frame)


def run_worker(options, served, sock, parent=None):
    """Serves on `sock` in this process until a stop signal; returns the message of a failed
    model load, or None."""
    failure = []
    settings = options.settings
    GuardedProtocol.read_timeout = settings.read_timeout

    def on_load_failure(message):
        failure.append(message)
        server.should_exit = True

    app = serve_app.create_app(served, settings, on_load_failure)
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    config = uvicorn.Config(
        app, http=GuardedProtocol, loop="auto", lifespan="on", access_log=False, log_config=None, log_level="warning",
        timeout_keep_alive=KEEP_ALIVE, timeout_graceful_shutdown=GRACE, limit_concurrency=MAX_CONNECTIONS, server_header=False,
    )
    logging.basicConfig(format="dlcli serve: uvicorn %(levelname)s: %(message)s", level=logging.WARNING)
    server = DrainingServer(config)
    if parent is not None:  # a worker of `--workers N`: stop when the parent is gone
        server.signals = (signal.SIGTERM,)
        threading.Thread(target=watch_parent, args=(server, parent), daemon=True).start()
    server.run(sockets=[sock])
    return failure[0] if failure else None


def watch_parent(server, parent):
    while os.getppid() == parent and not server.should_exit:
        time.sleep(1)
    server.should_exit = True


# ## --workers N: one process each


def supervise(options, sock):
    """Starts the workers, forwards SIGTERM/SIGINT to them, and returns the first load failure's
    message (None when every worker stopped cleanly)."""
    context = multiprocessing.get_context("spawn")
    failures = context.SimpleQueue()
    metrics_dir = tempfile.mkdtemp(prefix="dlcli-serve-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # the workers inherit it: /metrics sums them
    workers = [context.Process(target=worker_main, args=(options, sock, failures, os.getpid()), name=f"dlcli-serve-{i}")
               for i in range(options.workers)]
    stopping = []

    def stop(sig, frame):
        if stopping and sig == signal.SIGINT:  # a second Ctrl-C: no more waiting
            for worker in workers:
                if worker.is_alive():
                    worker.kill()
        stopping.append(sig)
        for worker in workers:
            if worker.pid and worker.is_alive():
                os.kill(worker.pid, signal.SIGTERM)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for worker in workers:
            worker.start()
        sock.close()  # the workers hold it now
        code = 0
        while any(worker.is_alive() for worker in workers):
            for worker in workers:
                worker.join(0.2)
                if worker.exitcode not in (None, 0) and not code:
                    code = worker.exitcode
                    stop(signal.SIGTERM, None)  # one worker down: the server is not whole; stop
        code = code or next((w.exitcode for w in workers if w.exitcode), 0)
        if not failures.empty():
            return failures.get()
        if code:
            raise DlcliError(f"a worker exited with code {code}; the server stopped (its log is above).")
        return None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)


def worker_main(options, sock, failures, parent):
    """One worker process: its own TensorFlow and model, the shared socket."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent turns Ctrl-C into SIGTERM for each worker
    try:
        served = model.resolve(options.location, options.name, options.unsafe, options.top_k, options.settings.max_batch)
        failure = run_worker(options, served, sock, parent)
    except DlcliError as e:
        failure = str(e)
    if failure:
        failures.put(failure)
        sys.exit(2)
