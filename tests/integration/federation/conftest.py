"""Several of our homeservers federating over TLS on loopback, started in-process.

``federated_server_factory(**overrides)`` starts :func:`homeserver.app.serve_homeserver` with

- a TLS listener with the ``federation`` resource on ``127.0.0.1:<port>`` (the certificate is
  issued by a CA this fixture makes with ``trustme``, SAN ``IP:127.0.0.1``), and a plain
  listener for the client API;
- the server name ``127.0.0.1:<federation port>`` (an IP literal with a port: other servers
  connect exactly there, no ``.well-known`` or SRV);
- ``federation.custom_ca_file`` = the test CA and ``allow_private_destinations: true``;
- its own database on the test's backend (SQLite, and PostgreSQL when
  ``HOMESERVER_TEST_POSTGRES_URL`` is set).

It returns a :class:`FederatedServer`, which can also make requests *as* that server
(:meth:`FederatedServer.signed_request`). ``two_servers`` is two of them. Everything stops at
the end of the test. ``overrides`` are merged into the config mapping as in
``tests/integration/conftest.py``.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme

from federation.core.signing import SigningKey, read_signing_keys
from federation.core.xmatrix import sign_request
from homeserver.app import serve_homeserver
from homeserver.config import Config, parse_config
from tests.conftest import _fresh_url, _Templates
from tests.integration.conftest import _merge

__all__ = ["FederatedServer", "FederatedServerFactory"]


@dataclass
class FederatedServer:
    """A started server: its name, where it listens, and its signing key."""

    server_name: str
    federation_url: str
    client_url: str
    config: Config
    directory: Path
    ca: trustme.CA
    #: set it to stop the server (e.g. to test an unreachable peer)
    stop: trio.Event | None = None

    @property
    def signing_key(self) -> SigningKey:
        """The active key (read from the key file, so a rotation shows)."""
        path = self.config.resolve_path(self.config.signing_key_path)
        return read_signing_keys(path.read_text())[0]

    def ssl_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    def federation_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """Plain HTTPS to the federation listener (trusts the test CA)."""
        return httpx.AsyncClient(
            base_url=self.federation_url, verify=self.ssl_context(), timeout=30, **kwargs
        )

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        """The client-server API listener."""
        return httpx.AsyncClient(base_url=self.client_url, timeout=30, **kwargs)

    async def register(self, username: str, password: str = "correct horse") -> dict[str, Any]:
        """Register a local user with ``m.login.dummy``; the ``/register`` answer."""
        async with self.client() as c:
            r = await c.post(
                "/_matrix/client/v3/register",
                json={
                    "username": username,
                    "password": password,
                    "auth": {"type": "m.login.dummy"},
                },
            )
        assert r.status_code == 200, r.text
        result: dict[str, Any] = r.json()
        return result

    async def signed_request(
        self,
        destination: FederatedServer,
        method: str,
        target: str,
        content: Any = None,
        *,
        key: SigningKey | None = None,
        origin: str | None = None,
        signed_destination: str | None = None,
    ) -> httpx.Response:
        """A request from this server to ``destination``, signed with X-Matrix.

        Args:
            target: path and query exactly as sent (and signed).
            key: sign with this key instead of this server's.
            origin: claim this origin instead of this server's name.
            signed_destination: sign for (and name) this destination instead.
        """
        dest_name = signed_destination or destination.server_name
        header = sign_request(
            key or self.signing_key,
            method,
            target,
            origin or self.server_name,
            dest_name,
            content,
        )
        async with destination.federation_client() as c:
            return await c.request(
                method,
                target,
                json=content,
                headers={"Authorization": header},
            )


FederatedServerFactory = Callable[..., Awaitable[FederatedServer]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def federation_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def _extra_databases(
    database_url: str, tmp_path: Path, _db_templates: _Templates
) -> Iterator[Callable[[], str]]:
    """More fresh databases on the backend of ``database_url``."""
    with contextlib.ExitStack() as stack:
        count = 0

        def make() -> str:
            nonlocal count
            count += 1
            if database_url.startswith("sqlite"):
                directory = tmp_path / f"extra-db{count}"
                directory.mkdir()
                gen = _fresh_url("sqlite", directory, _db_templates.sqlite())
            else:
                gen = _fresh_url("postgresql", tmp_path, _db_templates.postgres())
            url = next(gen)
            stack.callback(lambda: next(gen, None))
            return url

        yield make


@pytest.fixture
async def federated_server_factory(
    nursery: trio.Nursery,
    database_url: str,
    _extra_databases: Callable[[], str],
    tmp_path: Path,
    federation_ca: trustme.CA,
) -> AsyncIterator[FederatedServerFactory]:
    stops: list[trio.Event] = []
    cert = federation_ca.issue_cert("127.0.0.1", "localhost")

    async def start(**overrides: Any) -> FederatedServer:
        directory = tmp_path / f"fed{len(stops)}"
        directory.mkdir()
        cert.private_key_pem.write_to_path(str(directory / "tls.key"))
        (directory / "tls.crt").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        federation_ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        port = _free_port()
        server_name = f"127.0.0.1:{port}"
        data = _merge(
            {
                "server_name": server_name,
                "listeners": [
                    {"host": "127.0.0.1", "port": 0, "resources": ["client", "health"]},
                    {
                        "host": "127.0.0.1",
                        "port": port,
                        "tls_certificate": "tls.crt",
                        "tls_key": "tls.key",
                        "resources": ["federation"],
                    },
                ],
                "database": {
                    "url": database_url if not stops else _extra_databases(),
                    "pool_size": 4,
                },
                "data_dir": "data",
                "signing_key_path": "data/signing.key",
                "limits": {"shutdown_grace_period_s": 1.0},
                "logging": {"level": "WARNING"},
                "rate_limits": {"enabled": False},
                "registration": {"policy": "open", "allow_guests": False},
                "federation": {
                    "custom_ca_file": "ca.pem",
                    "allow_private_destinations": True,
                    "request_timeout_s": 10.0,
                },
            },
            overrides,
        )
        cfg = parse_config(data, str(directory / "homeserver.yaml"))
        stop = trio.Event()
        stops.append(stop)
        bound = await nursery.start(partial(serve_homeserver, cfg, shutdown_trigger=stop.wait))
        return FederatedServer(
            server_name=server_name,
            federation_url=f"https://{server_name}",
            client_url=bound[0].urls[0],
            config=cfg,
            directory=directory,
            ca=federation_ca,
            stop=stop,
        )

    yield start
    for stop in stops:
        stop.set()


@pytest.fixture
async def two_servers(
    federated_server_factory: FederatedServerFactory,
) -> tuple[FederatedServer, FederatedServer]:
    """Servers A and B, with the defaults."""
    return await federated_server_factory(), await federated_server_factory()
