"""A homeserver started in-process for tests that talk to it over real sockets.

``homeserver_factory(**overrides)`` starts :func:`homeserver.app.serve_homeserver` in the test's
nursery with a config whose listener port is 0, on the ``database_url`` backend (SQLite, and
PostgreSQL when ``HOMESERVER_TEST_POSTGRES_URL`` is set), and returns a :class:`RunningServer`
with the base URL and the config. ``overrides`` are merged into the config mapping, e.g.::

    srv = await homeserver_factory(registration={"policy": "token"}, otp={"enabled": True})

Defaults: ``server_name: test.local``, registration ``open``, rate limits off, phone
verification on with the file sender (``srv.sms_code(number)`` reads the newest code).
``server`` is one server with the defaults. Servers stop (gracefully) at the end of the test.
"""

from __future__ import annotations

import copy
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from homeserver.app import serve_homeserver
from homeserver.config import Config, parse_config

SERVER_NAME = "test.local"


@dataclass
class RunningServer:
    """A started server: where it listens and how it was configured."""

    base_url: str
    config: Config
    directory: Path

    @property
    def sms_file(self) -> Path:
        return self.config.resolve_path(self.config.data_dir) / self.config.otp.file_path

    def sms_code(self, number: str) -> str:
        """The newest code the file sender wrote for ``number`` (E.164, with ``+``)."""
        lines = self.sms_file.read_text().splitlines() if self.sms_file.exists() else []
        codes = [line.split()[1] for line in lines if line.split()[0] == number]
        assert codes, f"no SMS code was sent to {number}"
        return codes[-1]

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.base_url, timeout=30, **kwargs)

    async def register(
        self, username: str, password: str = "correct horse", **body: Any
    ) -> dict[str, Any]:
        """Register with ``m.login.dummy`` (policy ``open``); return the answer."""
        async with self.client() as c:
            r = await c.post(
                "/_matrix/client/v3/register",
                json={
                    "username": username,
                    "password": password,
                    "auth": {"type": "m.login.dummy"},
                    **body,
                },
            )
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result


def _merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


ServerFactory = Callable[..., Awaitable[RunningServer]]


@pytest.fixture
async def homeserver_factory(
    nursery: trio.Nursery, database_url: str, tmp_path: Path
) -> AsyncIterator[ServerFactory]:
    stops: list[trio.Event] = []

    async def start(**overrides: Any) -> RunningServer:
        directory = tmp_path / f"hs{len(stops)}"
        directory.mkdir()
        data = _merge(
            {
                "server_name": SERVER_NAME,
                "listeners": [
                    {
                        "host": "127.0.0.1",
                        "port": 0,
                        "resources": ["client", "federation", "media", "health"],
                    }
                ],
                "database": {"url": database_url, "pool_size": 4},
                "data_dir": "data",
                "signing_key_path": "data/signing.key",
                "limits": {"shutdown_grace_period_s": 1.0},
                "logging": {"level": "WARNING"},
                "rate_limits": {"enabled": False},
                "registration": {"policy": "open", "allow_guests": False},
                "otp": {"enabled": True, "sender": "file", "development": True},
            },
            overrides,
        )
        cfg = parse_config(data, str(directory / "homeserver.yaml"))
        stop = trio.Event()
        stops.append(stop)
        bound = await nursery.start(partial(serve_homeserver, cfg, shutdown_trigger=stop.wait))
        return RunningServer(bound[0].urls[0], cfg, directory)

    yield start
    for stop in stops:
        stop.set()


@pytest.fixture
async def server(homeserver_factory: ServerFactory) -> RunningServer:
    """One server with the defaults (open registration, phone verification by file)."""
    return await homeserver_factory()
