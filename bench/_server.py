"""A homeserver in a subprocess for benchmarks: real sockets, its own CPU and memory readings.

``start_server`` writes a config (open registration, rate limits off, logging at WARNING) into a
temporary directory, starts ``python -m homeserver run`` with port 0, reads the bound address
from its output, and yields a :class:`Server` whose ``process`` is a :class:`psutil.Process` for
CPU and RSS readings. The server gets SIGTERM at the end.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import orjson
import psutil
import trio
import yaml

ROOT = Path(__file__).resolve().parents[1]
V3 = "/_matrix/client/v3"


@dataclass
class Server:
    base_url: str
    process: psutil.Process
    directory: Path | None = None

    def cpu_seconds(self) -> float:
        times = self.process.cpu_times()
        return float(times.user + times.system)

    def rss_bytes(self) -> int:
        return int(self.process.memory_info().rss)


@dataclass
class BenchUser:
    user_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(
    directory: Path, database_url: str | None, port: int, overrides: dict[str, Any] | None = None
) -> Path:
    data: dict[str, Any] = {
        "server_name": "bench.local",
        "listeners": [{"host": "127.0.0.1", "port": port, "resources": ["client", "health"]}],
        "database": {"url": database_url or "sqlite:///data/homeserver.db", "pool_size": 10},
        "logging": {"level": "WARNING"},
        "rate_limits": {"enabled": False},
        "registration": {"policy": "open"},
        "limits": {"shutdown_grace_period_s": 2.0},
    }
    for key, value in (overrides or {}).items():
        if key == "listeners":
            data["listeners"] = [*data["listeners"], *value]
        else:
            data[key] = value
    path = directory / "homeserver.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _entry_point() -> list[str]:
    """``-m homeserver``, or a wrapper script that runs it: ``HS_WRAPPER`` names one (for
    example a memory tracer), ``HS_PROFILE`` selects the CPU-clock profiler."""
    if wrapper := os.environ.get("HS_WRAPPER"):
        return [wrapper]
    if os.environ.get("HS_PROFILE"):
        return [str(ROOT / "bench" / "_cpuprofile.py")]
    return ["-m", "homeserver"]


@asynccontextmanager
async def start_server(
    database_url: str | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    prepare: Callable[[Path], dict[str, Any]] | None = None,
) -> AsyncIterator[Server]:
    """Start a server; ``overrides`` replace top-level config keys (``listeners`` are added),
    ``prepare(directory)`` writes files into the server's directory (certificates) and returns
    more overrides."""
    with tempfile.TemporaryDirectory(prefix="hs-bench-") as tmp:
        directory = Path(tmp)
        port = _free_port()
        extra = {**(overrides or {}), **(prepare(directory) if prepare else {})}
        cfg = _config(directory, database_url, port, extra)
        base_url = f"http://127.0.0.1:{port}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = await trio.lowlevel.open_process(
            [
                sys.executable,
                *_entry_point(),
                "run",
                "--config",
                str(cfg),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=str(directory),
        )
        output = bytearray()

        async def drain() -> None:
            assert proc.stdout is not None
            while chunk := await proc.stdout.receive_some(65536):
                output.extend(chunk[-65536:])

        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                async with httpx.AsyncClient(base_url=base_url) as probe:
                    with trio.fail_after(60):
                        while True:
                            if proc.poll() is not None:
                                raise RuntimeError("server exited:\n" + output.decode("replace"))
                            try:
                                if (await probe.get("/health")).status_code == 200:
                                    break
                            except httpx.TransportError:
                                await trio.sleep(0.1)
                yield Server(base_url, psutil.Process(proc.pid), directory)
                nursery.cancel_scope.cancel()
        finally:
            proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(20):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()


async def register_users(
    client: httpx.AsyncClient, prefix: str, count: int, *, parallel: int = 8
) -> list[BenchUser]:
    """Register ``count`` users named ``{prefix}{i}``, ``parallel`` at a time."""
    users: list[BenchUser | None] = [None] * count
    limiter = trio.CapacityLimiter(parallel)

    async def one(i: int) -> None:
        async with limiter:
            r = await client.post(
                f"{V3}/register",
                json={
                    "username": f"{prefix}{i}",
                    "password": "bench password",
                    "auth": {"type": "m.login.dummy"},
                },
            )
            r.raise_for_status()
            body = r.json()
            users[i] = BenchUser(body["user_id"], body["access_token"])

    async with trio.open_nursery() as nursery:
        for i in range(count):
            nursery.start_soon(one, i)
    return [u for u in users if u is not None]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


class RawClient:
    """One user's keep-alive connection that parses as little as it can, so the load
    generator's CPU does not bound what is measured (httpx costs ~2.5 ms per request).

    Args:
        host, port: the server.
        user: whose access token to send.
    """

    def __init__(self, host: str, port: int, user: BenchUser) -> None:
        self._host, self._port, self._user = host, port, user
        self._stream: trio.SocketStream | None = None
        self._buf = bytearray()

    @classmethod
    def to(cls, base_url: str, user: BenchUser) -> RawClient:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        return cls(host, int(port), user)

    async def sync(self, since: str, timeout: int, sync_filter: str) -> dict[str, Any]:
        query = urlencode({"since": since, "timeout": timeout, "filter": sync_filter})
        return await self.request("GET", f"{V3}/sync?{query}")

    async def request(self, method: str, target: str, body: bytes = b"") -> dict[str, Any]:
        if self._stream is None:
            self._stream = await trio.open_tcp_stream(self._host, self._port)
        head_out = (
            f"{method} {target} HTTP/1.1\r\nHost: {self._host}\r\n"
            f"Authorization: Bearer {self._user.token}\r\n"
        )
        if method != "GET":
            head_out += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        await self._stream.send_all((head_out + "\r\n").encode() + body)
        while b"\r\n\r\n" not in self._buf:
            self._buf += await self._stream.receive_some(65536)
        head, _, rest = bytes(self._buf).partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        data = bytearray(rest)
        while len(data) < length:
            data += await self._stream.receive_some(65536)
        self._buf = bytearray(data[length:])
        parsed: dict[str, Any] = orjson.loads(bytes(data[:length]))
        return parsed

    async def aclose(self) -> None:
        if self._stream is not None:
            await self._stream.aclose()
