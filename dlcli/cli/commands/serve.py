"""`dlcli serve [RUN_OR_EXPORT]`: a trained run or an export over HTTP (dlcli/serve/)."""

import importlib.util
import os
from typing import Annotated

import typer

from dlcli.cli import options
from dlcli.core.errors import DlcliError

STACK = ("starlette", "uvicorn", "httptools", "prometheus_client")  # the serve extra


def serve_command(
    model: Annotated[
        str | None,
        typer.Argument(help="A run folder or a model written by `dlcli export` (a path, /gcs/... or gs://) \\[default: $AIP_STORAGE_URI].",
                       show_default=False),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on (127.0.0.1: this machine only).")] = "0.0.0.0",
    port: Annotated[int | None, typer.Option(help="Port \\[default: $AIP_HTTP_PORT, else 8080].", show_default=False)] = None,
    workers: Annotated[int, typer.Option(help="Server processes, each loading the model (TensorFlow is not fork-safe).")] = 1,
    max_batch: Annotated[int, typer.Option(help="Most examples in one model call, and in one request.")] = 64,
    batch_timeout_ms: Annotated[float, typer.Option(help="How long a request may wait for others to share its model call.")] = 2.0,
    read_timeout: Annotated[float, typer.Option(help="Seconds a client has to send a request's headers, and again its body.")] = 10.0,
    name: Annotated[str | None, typer.Option(help="The model's NAME in /v1/models/NAME \\[default: the recipe's name].", show_default=False)] = None,
    top_k: Annotated[int, typer.Option(help="Classes listed per instance (classifiers); a request may ask for others.")] = 3,
    unsafe: options.Unsafe = False,
):
    """Serve a run or an export over HTTP: TensorFlow Serving's REST API, Vertex AI's custom-container routes, dynamic batching."""
    missing = [module for module in STACK if importlib.util.find_spec(module) is None]
    if missing:
        raise DlcliError(f'dlcli serve needs the serve extra ({", ".join(missing)} missing): pip install -e ".[serve]" in the dlcli checkout.')
    location = model or os.environ.get("AIP_STORAGE_URI")
    if not location:
        raise DlcliError("say which model to serve: dlcli serve RUN_OR_EXPORT (or set AIP_STORAGE_URI, as Vertex AI does).")
    port = port if port is not None else environment_port()
    checks = [
        (1 <= port <= 65535, f"--port must be from 1 to 65535. Received: {port}"),
        (1 <= workers <= 64, f"--workers must be from 1 to 64. Received: {workers}"),
        (1 <= max_batch <= 4096, f"--max-batch must be from 1 to 4096. Received: {max_batch}"),
        (0 <= batch_timeout_ms <= 10_000, f"--batch-timeout-ms must be from 0 to 10000. Received: {batch_timeout_ms}"),
        (0 < read_timeout <= 3600, f"--read-timeout must be a positive number of seconds, at most 3600. Received: {read_timeout}"),
        (1 <= top_k <= 1000, f"--top-k must be from 1 to 1000. Received: {top_k}"),
    ]
    for ok, message in checks:
        if not ok:
            raise DlcliError(message)
    routes = {key: os.environ.get(f"AIP_{key.upper()}_ROUTE") or f"/{key}" for key in ("health", "predict")}
    for key, route in routes.items():
        if not route.startswith("/") or route.startswith(("/v1/models/", "/metrics")):
            raise DlcliError(f"AIP_{key.upper()}_ROUTE must be a path of its own starting with /, outside /v1/models/ and /metrics. Received: {route}")

    from dlcli.serve import app, server

    settings = app.Settings(max_batch=max_batch, batch_timeout=batch_timeout_ms / 1000, read_timeout=read_timeout,
                            health_route=routes["health"], predict_route=routes["predict"])
    server.serve(server.Options(location=location, host=host, port=port, workers=workers, name=name, top_k=top_k,
                                unsafe=unsafe, settings=settings))


def environment_port():
    value = os.environ.get("AIP_HTTP_PORT", "")
    if not value:
        return 8080
    if not value.isdigit():
        raise DlcliError(f"AIP_HTTP_PORT must be a port number. Received: {value!r}")
    return int(value)
