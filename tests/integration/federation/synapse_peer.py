"""A real Synapse as a federation peer, started by the test (see shared/notes/federation-interop.md).

``synapse_factory()`` starts a throwaway Synapse (pinned: :data:`SYNAPSE_VERSION`, installed by
``scripts/bootstrap test`` into ``.venv-synapse``) on loopback:

- server name ``127.0.0.1:<federation port>`` (an IP literal: no ``.well-known``, no SRV);
- a TLS federation listener on that port with a certificate from the test's CA
  (``federation_ca``, the same CA our servers use) and a plain client listener;
- ``federation_custom_ca_list`` = that CA, certificates verified; loopback allowed as a
  destination (``ip_range_whitelist`` plus the default blocklist without loopback);
- no notary (``trusted_key_servers: []``), short federation back-off, open registration,
  rate limits raised, SQLite in the test's temporary folder.

Without ``.venv-synapse`` the tests that use it are skipped locally, and fail in CI
(``CI=true``), where the test command installs it.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
import trustme
import yaml

__all__ = ["SYNAPSE_VERSION", "SynapsePeer", "synapse_factory"]

#: Keep in step with scripts/bootstrap.
SYNAPSE_VERSION = "1.163.2"
ROOT = Path(__file__).resolve().parents[3]
SYNAPSE_PYTHON = ROOT / ".venv-synapse" / "bin" / "python"

#: Synapse's default destination blocklist without the loopback ranges (for IP-literal server
#: names Synapse checks only the blocklist; the whitelist lets loopback through).
_BLOCKLIST_WITHOUT_LOOPBACK = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "192.0.0.0/24",
    "169.254.0.0/16",
    "192.88.99.0/24",
    "198.18.0.0/15",
    "192.0.2.0/24",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "fe80::/10",
    "fc00::/7",
    "2001:db8::/32",
    "ff00::/8",
    "fec0::/10",
]
_RC = {"per_second": 1000, "burst_count": 10000}


@dataclass
class SynapsePeer:
    """A running Synapse: its server name and listeners."""

    server_name: str
    federation_url: str
    client_url: str
    directory: Path
    ca: trustme.CA

    def client(self, **kwargs: Any) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.client_url, timeout=60, **kwargs)

    async def register(self, username: str, password: str = "correct horse") -> dict[str, Any]:
        """Register with the dummy stage; return the answer (user_id, access_token ...)."""
        async with self.client() as c:
            body: dict[str, Any] = {"username": username, "password": password}
            r = await c.post("/_matrix/client/v3/register", json=body)
            if r.status_code == 401:
                body["auth"] = {"type": "m.login.dummy", "session": r.json()["session"]}
                r = await c.post("/_matrix/client/v3/register", json=body)
        assert r.status_code == 200, r.text
        answer: dict[str, Any] = r.json()
        return answer

    @property
    def log(self) -> str:
        path = self.directory / "homeserver.log"
        return path.read_text(errors="replace") if path.exists() else ""


SynapseFactory = Callable[..., Awaitable[SynapsePeer]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _config(directory: Path, federation_port: int, client_port: int) -> dict[str, Any]:
    server_name = f"127.0.0.1:{federation_port}"
    return {
        "server_name": server_name,
        "public_baseurl": f"http://127.0.0.1:{client_port}/",
        "pid_file": str(directory / "homeserver.pid"),
        "listeners": [
            {
                "port": federation_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": True,
                "resources": [{"names": ["federation"], "compress": False}],
            },
            {
                "port": client_port,
                "bind_addresses": ["127.0.0.1"],
                "type": "http",
                "tls": False,
                "resources": [{"names": ["client"], "compress": False}],
            },
        ],
        "tls_certificate_path": str(directory / "tls.crt"),
        "tls_private_key_path": str(directory / "tls.key"),
        "federation_custom_ca_list": [str(directory / "ca.pem")],
        "federation_verify_certificates": True,
        "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
        "ip_range_blacklist": _BLOCKLIST_WITHOUT_LOOPBACK,
        "federation_ip_range_blacklist": _BLOCKLIST_WITHOUT_LOOPBACK,
        "federation": {
            "destination_min_retry_interval": "2s",
            "destination_max_retry_interval": "30s",
        },
        "database": {"name": "sqlite3", "args": {"database": str(directory / "homeserver.db")}},
        "media_store_path": str(directory / "media"),
        "signing_key_path": str(directory / "signing.key"),
        "log_config": str(directory / "log.yaml"),
        "report_stats": False,
        "trusted_key_servers": [],
        "suppress_key_server_warning": True,
        "allow_public_rooms_over_federation": True,
        "room_list_publication_rules": [{"action": "allow"}],
        "enable_registration": True,
        "enable_registration_without_verification": True,
        "bcrypt_rounds": 4,
        "macaroon_secret_key": secrets.token_urlsafe(32),
        "registration_shared_secret": secrets.token_urlsafe(32),
        "form_secret": secrets.token_urlsafe(32),
        "url_preview_enabled": False,
        "rc_message": _RC,
        "rc_registration": _RC,
        "rc_login": {"address": _RC, "account": _RC, "failed_attempts": _RC},
        "rc_joins": {"local": _RC, "remote": _RC},
        "rc_joins_per_room": _RC,
        "rc_invites": {"per_room": _RC, "per_user": _RC, "per_issuer": _RC},
        "rc_federation": {
            "window_size": 1000,
            "sleep_limit": 1000,
            "sleep_delay": 0,
            "reject_limit": 1000,
            "concurrent": 100,
        },
        "federation_rr_transactions_per_room_per_second": 1000,
        "rc_presence": {"per_user": _RC},
    }


_LOG_CONFIG = """
version: 1
formatters:
  precise:
    format: '%(asctime)s %(name)s %(lineno)d %(levelname)s %(request)s %(message)s'
filters:
  context:
    (): synapse.logging.context.LoggingContextFilter
    request: ""
handlers:
  file:
    class: logging.FileHandler
    formatter: precise
    filename: {path}
    filters: [context]
loggers:
  synapse.storage.SQL: {{level: WARNING}}
root:
  level: INFO
  handlers: [file]
disable_existing_loggers: false
"""


@pytest.fixture
async def synapse_factory(
    nursery: trio.Nursery, tmp_path: Path, federation_ca: trustme.CA
) -> AsyncIterator[SynapseFactory]:
    """Starts Synapse peers; each is stopped (SIGTERM, then SIGKILL) at the end of the test."""
    if not SYNAPSE_PYTHON.exists():
        if os.environ.get("CI") == "true":
            pytest.fail(f"Synapse {SYNAPSE_VERSION} is required in CI: {SYNAPSE_PYTHON} is missing")
        pytest.skip("Synapse is not installed in .venv-synapse (scripts/bootstrap test does it)")
    processes: list[trio.Process] = []
    cert = federation_ca.issue_cert("127.0.0.1", "localhost")

    async def start() -> SynapsePeer:
        directory = tmp_path / f"synapse{len(processes)}"
        (directory / "media").mkdir(parents=True)
        cert.private_key_pem.write_to_path(str(directory / "tls.key"))
        (directory / "tls.crt").write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        federation_ca.cert_pem.write_to_path(str(directory / "ca.pem"))
        (directory / "log.yaml").write_text(_LOG_CONFIG.format(path=directory / "homeserver.log"))
        federation_port, client_port = _free_port(), _free_port()
        config = directory / "homeserver.yaml"
        config.write_text(yaml.safe_dump(_config(directory, federation_port, client_port)))
        await trio.run_process(
            [
                str(SYNAPSE_PYTHON),
                "-m",
                "synapse.app.homeserver",
                "-c",
                str(config),
                "--generate-keys",
            ],
            stdout=subprocess.DEVNULL,
            cwd=directory,
        )
        process = await trio.lowlevel.open_process(
            [str(SYNAPSE_PYTHON), "-m", "synapse.app.homeserver", "-c", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=open(directory / "stderr.log", "wb"),
            cwd=directory,
        )
        processes.append(process)
        peer = SynapsePeer(
            server_name=f"127.0.0.1:{federation_port}",
            federation_url=f"https://127.0.0.1:{federation_port}",
            client_url=f"http://127.0.0.1:{client_port}",
            directory=directory,
            ca=federation_ca,
        )
        with trio.fail_after(90):
            async with peer.client() as c:
                while True:
                    if process.poll() is not None:
                        raise RuntimeError(
                            "Synapse exited: "
                            + (directory / "stderr.log").read_text(errors="replace")[-3000:]
                        )
                    try:
                        if (await c.get("/_matrix/client/versions")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await trio.sleep(0.2)
        return peer

    yield start
    for process in processes:
        process.terminate()
    for process in processes:
        with trio.move_on_after(10):
            await process.wait()
        if process.poll() is None:
            process.kill()
            await process.wait()
