"""The HTTP routes (Starlette): TensorFlow Serving's REST API and Vertex AI's custom-container
routes over one predict path, `/metrics`, JSON errors, and one access-log line per request.

  GET  /v1/models/NAME[/versions/1]            status: {"model_version_status": [...]}
  GET  /v1/models/NAME[/versions/1]/metadata   the signature: input dtype and shape, outputs, classes
  POST /v1/models/NAME[/versions/1]:predict    {"instances": [...]} -> {"predictions": [...]},
                                               {"inputs": ...} -> {"outputs": [...]}
  GET  $AIP_HEALTH_ROUTE (/health)             200 once the model is loaded, 503 before
  POST $AIP_PREDICT_ROUTE (/predict)           {"instances": [...], "parameters": {...}} -> {"predictions": [...]}
  GET  /metrics                                Prometheus text format

A predict request goes: admitted (at most `max_in_flight` at a time, else 429), its body read
under a deadline and Vertex AI's 1.5 MB limit (413), parsed and decoded in the decode thread
pool (an image file is only checked there: it is decoded with its batch), computed in a shared
batch (`batcher`), and formatted in the pool again. Every error is
{"error": "..."} with a 4xx status; an unexpected one is a JSON 500 and one log line.
"""

import asyncio
import contextlib
import os
import re
import sys
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from dlcli.serve.batcher import Batcher
from dlcli.serve.metrics import CONTENT_TYPE, Metrics
from dlcli.serve.model import MAX_BODY_BYTES, RequestError

TF_SERVING = re.compile(r"^(?P<name>[^/:]+)(?:/versions/(?P<version>[^/:]+))?(?P<what>/metadata|:predict|:classify|:regress)?$")


@dataclass
class Settings:
    """How the app answers; `dlcli serve`'s options and Vertex AI's AIP_* variables."""

    max_batch: int = 64
    batch_timeout: float = 0.002  # seconds
    read_timeout: float = 10.0  # seconds for a request's headers, and again for its body
    health_route: str = "/health"
    predict_route: str = "/predict"
    max_in_flight: int = 0  # 0: 4 x max_batch, at least 64
    decode_threads: int = 0  # 0: one per core, 2 to 8


class State:
    """The app's moving parts, made in its lifespan (inside the worker's event loop)."""

    def __init__(self, served, settings, on_load_failure):
        self.served, self.settings, self.on_load_failure = served, settings, on_load_failure
        self.ready = False
        self.in_flight = 0
        self.max_in_flight = settings.max_in_flight or max(64, 4 * settings.max_batch)
        self.metrics = Metrics(settings.max_batch)
        self.batcher = None
        self.pool = None


def create_app(served, settings, on_load_failure=lambda message: None):
    """The ASGI app serving `served` (a `model.Served`, loaded in the background once the app
    starts); `on_load_failure(message)` is called if loading fails."""
    state = State(served, settings, on_load_failure)

    @contextlib.asynccontextmanager
    async def lifespan(app):
        loop = asyncio.get_running_loop()
        threads = settings.decode_threads or min(8, max(2, os.cpu_count() or 2))
        state.pool = ThreadPoolExecutor(threads, thread_name_prefix="dlcli-decode")
        state.batcher = Batcher(lambda x: served.runner(x), served.prepare, settings.max_batch, settings.batch_timeout, state.metrics)
        state.batcher.start()
        threading.Thread(target=load, args=(state, loop), name="dlcli-load", daemon=True).start()
        yield
        await state.batcher.close()
        state.pool.shutdown(wait=True)
        state.metrics.loaded.set(0)

    routes = [
        Route(settings.health_route, guarded(state, health), methods=["GET"]),
        Route(settings.predict_route, guarded(state, vertex_predict), methods=["POST"]),
        Route("/v1/models/{path:path}", guarded(state, tf_serving), methods=["GET", "POST"]),
        Route("/metrics", guarded(state, metrics), methods=["GET"]),
    ]
    handlers = {404: not_found, 405: not_allowed}
    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers=handlers)
    app.router.redirect_slashes = False  # /health/ is not found, not a 307 to /health
    return AccessLog(app, state, settings)


def load(state, loop):
    """Loads the model (in a thread: the port answers health checks meanwhile)."""
    started = time.perf_counter()
    try:
        state.served.load()
    except Exception as e:  # DlcliError, or whatever Keras or a runtime raised
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        loop.call_soon_threadsafe(state.on_load_failure, message)
        return
    loop.call_soon_threadsafe(ready, state, time.perf_counter() - started)


def ready(state, seconds):
    state.ready = True
    state.metrics.loaded.set(1)
    log(f"model loaded in {seconds:.1f} s: ready")


def log(line):
    print(f"dlcli serve [{os.getpid()}]: {line}", file=sys.stderr, flush=True)


def error(status, message, close=False):
    return JSONResponse({"error": message}, status, headers={"connection": "close"} if close else None)


def guarded(state, handler):
    """`handler(state, request)` as a route endpoint whose every failure is a JSON error."""

    async def endpoint(request):
        try:
            return await handler(state, request)
        except RequestError as e:
            return error(e.status, e.message, e.close)
        except ClientDisconnect:
            return Response(status_code=400)  # nobody reads it
        except Exception as e:
            if os.environ.get("DLCLI_DEBUG"):
                traceback.print_exc()
            log(f"unexpected {type(e).__name__} on {request.method} {request.url.path}: {str(e)[:200]!r} (DLCLI_DEBUG=1 prints the traceback)")
            return error(500, f"internal error ({type(e).__name__}); the server logged it.")

    return endpoint


async def not_found(request, exc):
    return error(404, f"no route {request.method} {request.url.path[:200]}: this server answers /v1/models/NAME[:predict|/metadata], "
                      f"{request.app.state.routes_help}, and /metrics.")


async def not_allowed(request, exc):
    return error(405, f"{request.method} is not allowed on {request.url.path[:200]}.")


# ## Routes


async def health(state, request):
    if not state.ready:
        return error(503, "the model is loading.")
    return JSONResponse({"status": "ready", "model": state.served.name})


async def metrics(state, request):
    return Response(state.metrics.exposition(), media_type=CONTENT_TYPE)


async def vertex_predict(state, request):
    return await predict(state, request)


async def tf_serving(state, request):
    match = TF_SERVING.match(request.path_params["path"])
    if match is None:
        raise RequestError(404, f"no route {request.method} /v1/models/{request.path_params['path'][:200]}: "
                                "TensorFlow Serving's are /v1/models/NAME, NAME/metadata and NAME:predict.")
    name, version, what = match["name"], match["version"], match["what"]
    if name != state.served.name:
        raise RequestError(404, f"Servable not found for request: Latest({name[:100]}); this server serves '{state.served.name}'.")
    if version not in (None, "1"):
        raise RequestError(404, f"Servable not found for request: Specific({name[:100]}, {version[:20]}); this server serves version 1.")
    if what in (":classify", ":regress"):
        raise RequestError(400, f"{what[1:]} takes tf.Example inputs, which this server does not read; use :predict.")
    expected = "POST" if what == ":predict" else "GET"
    if request.method != expected:
        raise RequestError(405, f"{request.method} is not allowed on {request.url.path[:200]}; use {expected}.")
    if what == ":predict":
        return await predict(state, request)
    if what == "/metadata":
        if not state.ready:
            raise RequestError(503, "the model is loading.")
        return JSONResponse(state.served.metadata())
    return JSONResponse(state.served.status("AVAILABLE" if state.ready else "LOADING"))


async def predict(state, request):
    if not state.ready:
        raise RequestError(503, "the model is loading.")
    content_type = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if content_type != "application/json" and not content_type.endswith("+json"):
        raise RequestError(415, f"the body must be JSON (Content-Type: application/json), not {content_type[:60]}.")
    if state.in_flight >= state.max_in_flight:
        raise RequestError(429, f"{state.in_flight} requests are in progress, the most this server takes at once; retry shortly.")
    state.in_flight += 1
    state.metrics.in_flight.inc()
    state.batcher.expect()
    submitted = False
    try:
        body = await read_body(request, state.settings.read_timeout)
        loop = asyncio.get_running_loop()
        parsed = await loop.run_in_executor(state.pool, state.served.parse, body)
        submitted = True
        parsed.batch, outputs = await state.batcher.predict(parsed.examples)
        answer = await loop.run_in_executor(state.pool, state.served.answer, outputs, parsed)
        return Response(answer, media_type="application/json")
    finally:
        if not submitted:
            state.batcher.give_up()
        state.in_flight -= 1
        state.metrics.in_flight.dec()


async def read_body(request, timeout):
    """The request's body, at most MAX_BODY_BYTES (413 beyond, as Vertex AI answers), received
    within `timeout` seconds (408 after)."""
    too_big = RequestError(413, f"Request payload size exceeds the limit: {MAX_BODY_BYTES} bytes.")
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        raise too_big
    chunks = []

    async def receive():
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                raise too_big
            chunks.append(chunk)

    try:
        await asyncio.wait_for(receive(), timeout)  # asyncio.timeout needs Python 3.11; pyproject allows 3.10
    except asyncio.TimeoutError:
        raise RequestError(408, f"the request body did not arrive within {timeout:g} s.", close=True) from None
    return b"".join(chunks)


# ## One line per request, and the request metrics


class AccessLog:
    """Wraps the app: one stderr line per request (client, request line, status, bytes, time;
    the path as sent, escaped) and the request counters and latency."""

    def __init__(self, app, state, settings):
        self.app, self.state, self.settings = app, state, settings
        app.state.routes_help = f"{settings.health_route} (health), {settings.predict_route} (Vertex AI predict)"

    def route(self, path, method):
        if path == self.settings.predict_route and method == "POST":
            return "predict"
        if path == self.settings.health_route:
            return "health"
        if path.startswith("/v1/models/"):
            return "predict" if path.endswith(":predict") else "metadata" if path.endswith("/metadata") else "status"
        return "metrics" if path == "/metrics" else "other"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        sent = {"status": 0, "bytes": 0}

        async def send_counted(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            elif message["type"] == "http.response.body":
                sent["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, send_counted)
        finally:
            seconds = time.perf_counter() - started
            self.state.metrics.request(self.route(scope["path"], scope["method"]), sent["status"], seconds)
            client = scope.get("client") or ("-", 0)
            target = scope.get("raw_path", b"").decode("ascii", "backslashreplace")[:300]
            status = sent["status"] or "-"
            print(f'{time.strftime("%Y-%m-%dT%H:%M:%S")} {client[0]}:{client[1]} "{scope["method"]} {target} HTTP/{scope.get("http_version", "1.1")}" '
                  f'{status} {sent["bytes"]} {seconds * 1000:.1f}ms', file=sys.stderr)
