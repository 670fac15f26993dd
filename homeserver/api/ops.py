"""Operations endpoints: health and metrics.

Not part of the Matrix spec. ``GET /health`` is readiness (the database answers) and
``GET /health/live`` liveness; ``GET /metrics`` is the Prometheus text format.
"""

from __future__ import annotations

from typing import Any

from quart import Response

from homeserver.api._http import JsonResponse, route
from homeserver.api.metrics import PROMETHEUS_CONTENT_TYPE, HttpMetrics
from homeserver.services.health import HealthService


class HealthApi:
    def __init__(self, health: HealthService) -> None:
        self._health = health

    @route("GET", "/health")
    async def get_health(self) -> JsonResponse:
        """GET /health — 200 when ready (database reachable), 503 otherwise."""
        r = await self._health.readiness()
        body: dict[str, Any] = {"status": "ok" if r.ready else "unavailable", "checks": r.checks}
        return JsonResponse(body, 200 if r.ready else 503)

    @route("GET", "/health/live")
    async def get_live(self) -> dict[str, Any]:
        """GET /health/live — 200 while the process serves requests."""
        return {"status": "ok"}


class MetricsApi:
    def __init__(self, metrics: HttpMetrics) -> None:
        self._metrics = metrics

    @route("GET", "/metrics")
    async def get_metrics(self) -> Response:
        """GET /metrics — Prometheus text exposition format."""
        return Response(self._metrics.render(), status=200, content_type=PROMETHEUS_CONTENT_TYPE)
