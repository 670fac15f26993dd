"""The request gate tells presence about activity: every authenticated request but /sync."""

from __future__ import annotations

from functools import partial
from typing import Any

import httpx
import hypercorn.trio
import trio
from hypercorn.config import Config as HypercornConfig

from homeserver.api._http import RequestGate, build_asgi_app, route
from homeserver.config import PresenceConfig, TypingConfig
from homeserver.errors import UnknownToken
from homeserver.services.requester import Requester


class Auth:
    async def authenticate(self, access_token: str, *, client_ip: str) -> Requester:
        if access_token != "good":
            raise UnknownToken()
        return Requester("@alice:test", "DEV")


class Api:
    @route("GET", "/_matrix/client/v3/sync", auth="user")
    async def sync(self) -> dict[str, Any]:
        return {}

    @route("GET", "/_matrix/client/v3/thing", auth="user")
    async def thing(self) -> dict[str, Any]:
        return {}

    @route("GET", "/_matrix/client/v3/open", auth="optional")
    async def open(self) -> dict[str, Any]:
        return {}


async def test_activity_hook(nursery: trio.Nursery) -> None:
    seen: list[str] = []
    gate = RequestGate(Auth(), None, on_activity=seen.append)
    app = build_asgi_app([Api()], max_body_bytes=1024, gate=gate)
    hc = HypercornConfig()
    hc.bind = ["127.0.0.1:0"]
    hc.accesslog = None
    stop = trio.Event()
    urls = await nursery.start(partial(hypercorn.trio.serve, app, hc, shutdown_trigger=stop.wait))
    good = {"Authorization": "Bearer good"}
    async with httpx.AsyncClient(base_url=urls[0]) as client:
        assert (await client.get("/_matrix/client/v3/sync", headers=good)).status_code == 200
        assert seen == []
        assert (await client.get("/_matrix/client/v3/thing", headers=good)).status_code == 200
        assert (await client.get("/_matrix/client/v3/open")).status_code == 200
        bad = {"Authorization": "Bearer bad"}
        assert (await client.get("/_matrix/client/v3/thing", headers=bad)).status_code == 401
        assert (await client.get("/_matrix/client/v3/open", headers=good)).status_code == 200
    stop.set()
    assert seen == ["@alice:test", "@alice:test"]


def test_config_problems() -> None:
    assert TypingConfig().problems() == [] and PresenceConfig().problems() == []
    assert TypingConfig(default_timeout_ms=0, max_timeout_ms=0).problems() == [
        "typing.default_timeout_ms: must be at least 1"
    ]
    assert TypingConfig(max_timeout_ms=10).problems() == [
        "typing.max_timeout_ms: must be at least typing.default_timeout_ms"
    ]
    assert PresenceConfig(flush_interval_s=0).problems() == [
        "presence.flush_interval_s: must be > 0"
    ]
    assert PresenceConfig(currently_active_s=600).problems() == [
        "presence.currently_active_s: must not be longer than idle_timeout_s"
    ]
