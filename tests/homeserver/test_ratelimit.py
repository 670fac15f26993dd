from __future__ import annotations

import pytest

from homeserver.clock import FakeClock
from homeserver.config import RateLimit
from homeserver.errors import LimitExceeded
from homeserver.services.ratelimit import RateLimiter


def make(enabled=True):
    clock = FakeClock()
    rl = RateLimiter({"login": RateLimit(per_second=0.5, burst_count=3)}, clock, enabled=enabled)
    return rl, clock


def test_burst_then_refuse_with_retry_after():
    rl, clock = make()
    for _ in range(3):
        rl.check("login", "@a:x")
    with pytest.raises(LimitExceeded) as exc:
        rl.check("login", "@a:x")
    assert exc.value.status == 429
    assert exc.value.to_json()["retry_after_ms"] == 2000
    assert exc.value.headers["Retry-After"] == "2"
    clock.advance(2.0)
    rl.check("login", "@a:x")


def test_keys_are_independent():
    rl, _ = make()
    for _ in range(3):
        rl.check("login", "1.2.3.4")
    rl.check("login", "5.6.7.8")
    assert rl.try_take("login", "1.2.3.4") > 0


def test_refill_caps_at_burst():
    rl, clock = make()
    rl.check("login", "k")
    clock.advance(1000)
    for _ in range(3):
        rl.check("login", "k")
    assert rl.try_take("login", "k") > 0


def test_disabled_never_limits():
    rl, _ = make(enabled=False)
    for _ in range(100):
        rl.check("login", "k")


def test_sweep_drops_only_full_buckets():
    rl, clock = make()
    rl._SWEEP_AT = 3
    rl.check("login", "busy")
    rl.check("login", "busy")
    rl.check("login", "idle")
    clock.advance(10)
    rl.check("login", "busy2")
    rl.check("login", "new")  # triggers a sweep: idle ones are full again
    assert ("login", "new") in rl._buckets
    assert len(rl._buckets) <= 3
