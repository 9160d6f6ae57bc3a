"""`GET /metrics` in Prometheus' text format, from prometheus_client (the Prometheus project's
own Python client): requests and errors by route and status, request latency, batch sizes and
model-call time, the examples waiting for the model, and whether the model is loaded.

With `--workers N` each worker is its own process; prometheus_client's multiprocess mode
(PROMETHEUS_MULTIPROC_DIR, set by the supervisor before the workers start) sums their files,
so whichever worker answers /metrics reports the whole server.
"""

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
)

disable_created_metrics()  # no *_created series beside each counter: Prometheus does not need them

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    def __init__(self, max_batch):
        self.shared = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
        # Shared: values live in the multiprocess files, collected below; else in this registry.
        registry = None if self.shared else CollectorRegistry()
        self.registry = registry
        self.requests = Counter("dlcli_serve_requests", "HTTP requests answered, by route and status code.", ["route", "code"], registry=registry)
        self.errors = Counter("dlcli_serve_errors", "Requests answered with an error status (4xx, 5xx) or not at all, by route and code.",
                              ["route", "code"], registry=registry)
        self.latency = Histogram("dlcli_serve_request_seconds", "Time from a request's arrival to the end of its answer.", ["route"],
                                 buckets=LATENCY_BUCKETS, registry=registry)
        sizes = sorted({2**i for i in range(16) if 2**i < max_batch} | {max_batch})  # 1, 2, 4, ... up to --max-batch
        self.batch_sizes = Histogram("dlcli_serve_batch_size", "Examples per model call.", buckets=sizes, registry=registry)
        self.model_seconds = Histogram("dlcli_serve_model_call_seconds", "Time of each model call (one batch).",
                                       buckets=LATENCY_BUCKETS, registry=registry)
        self.examples = Counter("dlcli_serve_examples", "Examples (instances) computed by the model.", registry=registry)
        self.loaded = Gauge("dlcli_serve_model_loaded", "1 once the model is loaded and answering (with workers: the number loaded).",
                            registry=registry, multiprocess_mode="livesum")
        self.in_flight = Gauge("dlcli_serve_requests_in_flight", "Requests being read, decoded or computed.",
                               registry=registry, multiprocess_mode="livesum")

    def request(self, route, status, seconds):
        code = str(status) if status else "none"  # none: the client went away before an answer
        self.requests.labels(route, code).inc()
        if not status or status >= 400:
            self.errors.labels(route, code).inc()
        self.latency.labels(route).observe(seconds)

    def batch(self, size, seconds):
        self.batch_sizes.observe(size)
        self.model_seconds.observe(seconds)
        self.examples.inc(size)

    def exposition(self):
        """The text /metrics answers."""
        if self.shared:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)
