"""Prometheus metrics of one app: request counts, latency histogram, batch sizes, index size.

Each app gets its own CollectorRegistry, so that several apps in one process (tests) never share
or clash over counters.
"""

import time

from prometheus_client import (  # CONTENT_TYPE_LATEST: re-exported for the /metrics route
    CONTENT_TYPE_LATEST,  # noqa: F401
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

# Latency buckets (seconds): the text-query target is 50 ms, so resolve well below it.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)


class Telemetry:
    """The app's metrics. `observe_request` is called by the middleware for every request."""

    def __init__(self):
        self.registry = CollectorRegistry()
        self.requests = Counter("daah_requests", "HTTP requests by route, method and status",
                                ["route", "method", "status"], registry=self.registry)
        self.latency = Histogram("daah_request_latency_seconds", "Request latency by route",
                                 ["route"], buckets=LATENCY_BUCKETS, registry=self.registry)
        self.batch_size = Histogram("daah_encode_batch_size", "Queries per SavedModel call",
                                    ["signature"], buckets=BATCH_BUCKETS, registry=self.registry)
        self.index_items = Gauge("daah_index_items", "Items in each Hamming index",
                                 ["modality"], registry=self.registry)
        self.index_bits = Gauge("daah_index_bits", "Code length in bits", registry=self.registry)

    def observe_request(self, route, method, status, seconds):
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route).observe(seconds)

    def render(self):
        return generate_latest(self.registry)


class RequestMetrics:
    """ASGI middleware timing every request; the route label is the matched route's template
    (bounded cardinality), "unmatched" for 404s. Pure ASGI rather than @app.middleware: that
    one runs the body stream in another task, where an error raised while reading it (the body
    limit's 413) escapes the app's error handlers."""

    def __init__(self, app, telemetry):
        self.app = app
        self.telemetry = telemetry

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        status = 500

        async def send_and_note(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            name = getattr(scope.get("route"), "path", None) or "unmatched"
            self.telemetry.observe_request(name, scope["method"], status,
                                           time.perf_counter() - start)
