"""Prometheus metrics of the HTTP layer and the process.

One :class:`HttpMetrics` per app, on its own ``CollectorRegistry`` (no global registry, so tests
can run several servers in one process). ``GET /metrics`` renders it in the Prometheus text
format: requests by route and status, a latency histogram, open connections, database pool use
(read through a callback at scrape time) and the process's RSS and CPU time.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CONTENT_TYPE_LATEST as PROMETHEUS_CONTENT_TYPE
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

__all__ = ["PROMETHEUS_CONTENT_TYPE", "HttpMetrics"]

_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


class HttpMetrics:
    """The metrics the HTTP layer records, and the scrape output."""

    def __init__(self, pool_usage: Callable[[], tuple[int, int]] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "homeserver_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "homeserver_http_request_duration_seconds",
            "HTTP request latency by method and route",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.open_connections = Gauge(
            "homeserver_http_open_requests",
            "HTTP requests and WebSocket connections in progress",
            registry=self.registry,
        )
        if pool_usage is not None:
            in_use = Gauge(
                "homeserver_db_pool_connections_in_use",
                "Database connections in use",
                registry=self.registry,
            )
            in_use.set_function(lambda: pool_usage()[0])
            size = Gauge(
                "homeserver_db_pool_size",
                "Database connections in the pool",
                registry=self.registry,
            )
            size.set_function(lambda: pool_usage()[1])

    def observe(self, method: str, route: str, status: int, duration_s: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(duration_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)
