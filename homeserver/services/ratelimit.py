"""Rate limiting with token buckets.

One :class:`RateLimiter` is shared by every endpoint that needs one. Each named action (``login``,
``message``, ``sms_per_number`` …) has its own bucket parameters from the config; buckets are
keyed per action and per key (a user ID, an IP address, a phone number), so the same limiter
serves per-user, per-IP and per-anything limits.

A bucket holds at most ``burst_count`` tokens and refills at ``per_second``. A request takes one
token; with none left it is refused with ``429 M_LIMIT_EXCEEDED`` and the time until the next
token as ``retry_after_ms``. Idle buckets are dropped when full again, so memory stays bounded by
the number of recently active keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from homeserver.clock import Clock
from homeserver.config import RateLimit
from homeserver.errors import LimitExceeded


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Token buckets per (action, key).

    Args:
        limits: bucket parameters per action name.
        clock: where the monotonic time comes from.
        enabled: when False every check passes (the operator turned limits off).
    """

    #: Sweep idle buckets once this many exist.
    _SWEEP_AT = 10_000

    def __init__(self, limits: dict[str, RateLimit], clock: Clock, *, enabled: bool = True) -> None:
        self._limits = limits
        self._clock = clock
        self._enabled = enabled
        self._buckets: dict[tuple[str, str], _Bucket] = {}

    def check(self, action: str, key: str, *, cost: float = 1.0) -> None:
        """Take ``cost`` tokens from the bucket of ``(action, key)``.

        Raises:
            LimitExceeded: not enough tokens; ``retry_after_ms`` says when there will be.
            KeyError: ``action`` has no configured limit (a programming error).
        """
        retry_ms = self.try_take(action, key, cost=cost)
        if retry_ms:
            raise LimitExceeded(retry_ms)

    def try_take(self, action: str, key: str, *, cost: float = 1.0) -> int:
        """Like :meth:`check` but returns 0 on success or the milliseconds to wait."""
        if not self._enabled:
            return 0
        limit = self._limits[action]
        now = self._clock.monotonic()
        bucket = self._buckets.get((action, key))
        if bucket is None:
            if len(self._buckets) >= self._SWEEP_AT:
                self._sweep(now)
            bucket = _Bucket(tokens=float(limit.burst_count), updated=now)
            self._buckets[(action, key)] = bucket
        else:
            bucket.tokens = min(
                float(limit.burst_count), bucket.tokens + (now - bucket.updated) * limit.per_second
            )
            bucket.updated = now
        if bucket.tokens >= cost:
            bucket.tokens -= cost
            return 0
        missing = cost - bucket.tokens
        return max(1, math.ceil(missing / limit.per_second * 1000))

    def _sweep(self, now: float) -> None:
        full = [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.updated) * self._limits[k[0]].per_second
            >= self._limits[k[0]].burst_count
        ]
        for k in full:
            del self._buckets[k]
