"""Liveness and readiness.

Liveness: the process answers. Readiness: it can also reach its database within a short time,
so a load balancer stops sending traffic to a process whose database is gone.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Readiness:
    ready: bool
    checks: dict[str, str]


class HealthService:
    """Answers readiness from the checks it is given (name → async check that raises on failure).

    Args:
        checks: e.g. ``{"database": db.ping}``.
        timeout: a function that runs an awaitable with a deadline (injected so this module stays
            free of the event loop); it returns False when the deadline passed.
    """

    def __init__(
        self,
        checks: dict[str, Callable[[], Awaitable[None]]],
        run_with_timeout: Callable[[Callable[[], Awaitable[None]]], Awaitable[bool]],
    ) -> None:
        self._checks = checks
        self._run = run_with_timeout

    async def readiness(self) -> Readiness:
        results: dict[str, str] = {}
        for name, check in self._checks.items():
            try:
                ok = await self._run(check)
                results[name] = "ok" if ok else "timeout"
            except Exception as e:  # a failing dependency is a readiness answer, not a 500
                logger.warning("readiness check %s failed: %s", name, e)
                results[name] = "error"
        return Readiness(all(v == "ok" for v in results.values()), results)
