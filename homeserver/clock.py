"""The injected clock.

Services take a :class:`Clock` so tests control time (Signal-Server's injected clock). The
production clock reads the wall clock for timestamps and Trio's clock for durations, which a
test replaces with ``trio.testing.MockClock`` through Trio itself.
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Where services read time."""

    def time_ms(self) -> int:
        """Wall-clock milliseconds since the epoch (for ``origin_server_ts`` and expiries)."""
        ...

    def monotonic(self) -> float:
        """Seconds on a monotonic clock (for rate limits and timeouts)."""
        ...


class SystemClock:
    """The real clock: wall time from the OS, monotonic time from ``time.monotonic``."""

    def time_ms(self) -> int:
        return int(time.time() * 1000)

    def monotonic(self) -> float:
        return time.monotonic()


class FakeClock:
    """A clock tests move by hand."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._ms = start_ms
        self._mono = 1000.0

    def time_ms(self) -> int:
        return self._ms

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._ms += int(seconds * 1000)
        self._mono += seconds
