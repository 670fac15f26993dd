"""Media repository benchmark: upload and download throughput, peak RSS, thumbnails per second.

Starts a homeserver in a subprocess (SQLite, its own data directory, the ``media`` resource on
its listener), registers a user, then for each file size (10 MB and 50 MB by default):

- uploads a random file of that size (``POST /_matrix/media/v3/upload``) ``--repeat`` times and
  downloads it (``GET /_matrix/client/v1/media/download``) as many times, streaming on the client
  side too, checking the sha256 of every download;
- samples the server's RSS every 5 ms during the transfers and reports the peak above the
  server's RSS before the first transfer: it must not grow with the file size (bodies are
  streamed in both directions).

Then it uploads a 1600x1200 JPEG and a PNG and asks for on-demand thumbnails of distinct sizes
(so none comes from the cache), sequentially, and reports thumbnails per second.

Run from the repository root:

    .venv/bin/python bench/bench_media.py
    .venv/bin/python bench/bench_media.py --sizes-mb 10 50 100 --repeat 5
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import trio
import yaml
from PIL import Image

MB = 1024 * 1024


@dataclass
class Server:
    base_url: str
    process: psutil.Process

    def rss(self) -> int:
        return int(self.process.memory_info().rss)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@asynccontextmanager
async def start_server(max_upload_mb: int) -> AsyncIterator[Server]:
    with tempfile.TemporaryDirectory(prefix="hs-bench-media-") as tmp:
        directory = Path(tmp)
        port = _free_port()
        config = {
            "server_name": "bench.local",
            "listeners": [
                {"host": "127.0.0.1", "port": port, "resources": ["client", "media", "health"]}
            ],
            "database": {"url": "sqlite:///data/homeserver.db"},
            "logging": {"level": "WARNING"},
            "rate_limits": {"enabled": False},
            "registration": {"policy": "open"},
            "limits": {"shutdown_grace_period_s": 2.0},
            "media": {"max_upload_bytes": max_upload_mb * MB, "pregenerate_thumbnails": False},
        }
        (directory / "homeserver.yaml").write_text(yaml.safe_dump(config))
        proc = await trio.lowlevel.open_process(
            [sys.executable, "-m", "homeserver", "run", "--config", "homeserver.yaml"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=str(directory),
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            async with httpx.AsyncClient(base_url=base_url) as probe:
                with trio.fail_after(60):
                    while True:
                        try:
                            if (await probe.get("/health")).status_code == 200:
                                break
                        except httpx.TransportError:
                            await trio.sleep(0.1)
            yield Server(base_url, psutil.Process(proc.pid))
        finally:
            proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(20):
                await proc.wait()
            if proc.returncode is None:
                proc.kill()


class PeakRss:
    """Samples a process's RSS in the background."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.peak = server.rss()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            self.peak = max(self.peak, self.server.rss())
            await trio.sleep(0.005)


async def _chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for i in range(0, len(data), size):
        yield bytes(view[i : i + size])


async def transfer(client: httpx.AsyncClient, auth: dict[str, str], mb: int, repeat: int) -> dict:
    data = os.urandom(mb * MB)
    digest = hashlib.sha256(data).hexdigest()
    up_times: list[float] = []
    down_times: list[float] = []
    for _ in range(repeat):
        start = time.perf_counter()
        r = await client.post(
            "/_matrix/media/v3/upload",
            content=_chunks(data),
            headers={**auth, "Content-Type": "application/octet-stream",
                     "Content-Length": str(len(data))},
        )  # fmt: skip
        r.raise_for_status()
        up_times.append(time.perf_counter() - start)
        mxc = r.json()["content_uri"].removeprefix("mxc://")
        start = time.perf_counter()
        h = hashlib.sha256()
        async with client.stream(
            "GET", f"/_matrix/client/v1/media/download/{mxc}", headers=auth
        ) as resp:
            resp.raise_for_status()
            async for chunk in resp.aiter_raw():
                h.update(chunk)
        down_times.append(time.perf_counter() - start)
        assert h.hexdigest() == digest, "download differs from upload"
    return {
        "up_mb_s": mb / min(up_times),
        "up_mb_s_median": mb / sorted(up_times)[len(up_times) // 2],
        "down_mb_s": mb / min(down_times),
        "down_mb_s_median": mb / sorted(down_times)[len(down_times) // 2],
    }


def _image(fmt: str, size: tuple[int, int]) -> bytes:
    im = Image.effect_mandelbrot(size, (-2.0, -1.2, 1.0, 1.2), 60).convert("RGB")
    out = io.BytesIO()
    im.save(out, fmt, quality=90) if fmt == "JPEG" else im.save(out, fmt)
    return out.getvalue()


async def thumbnails(client: httpx.AsyncClient, auth: dict[str, str], count: int) -> dict:
    out = {}
    for fmt, content_type in (("JPEG", "image/jpeg"), ("PNG", "image/png")):
        r = await client.post(
            "/_matrix/media/v3/upload",
            content=_image(fmt, (1600, 1200)),
            headers={**auth, "Content-Type": content_type},
        )
        r.raise_for_status()
        mxc = r.json()["content_uri"].removeprefix("mxc://")
        start = time.perf_counter()
        for i in range(count):
            r = await client.get(
                f"/_matrix/client/v1/media/thumbnail/{mxc}",
                params={"width": 100 + i, "height": 80 + i, "method": "crop" if i % 2 else "scale"},
                headers=auth,
            )
            r.raise_for_status()
        out[fmt] = count / (time.perf_counter() - start)
    return out


async def main(sizes_mb: list[int], repeat: int, thumbs: int) -> None:
    async with start_server(max(sizes_mb) + 1) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=300) as client:
            r = await client.post(
                "/_matrix/client/v3/register",
                json={"username": "bench", "password": "bench password",
                      "auth": {"type": "m.login.dummy"}},
            )  # fmt: skip
            r.raise_for_status()
            auth = {"Authorization": f"Bearer {r.json()['access_token']}"}
            # warm up (imports, first file, SQLite pages)
            await transfer(client, auth, 1, 1)
            print(f"server RSS after warm-up: {server.rss() / MB:.1f} MB")
            print("| file | upload MB/s (best / median) | download MB/s (best / median) "
                  "| peak RSS over baseline |")  # fmt: skip
            print("|---|---:|---:|---:|")
            for mb in sizes_mb:
                baseline = server.rss()
                sampler = PeakRss(server)
                async with trio.open_nursery() as nursery:
                    await nursery.start(sampler.run)
                    res = await transfer(client, auth, mb, repeat)
                    nursery.cancel_scope.cancel()
                print(
                    f"| {mb} MB | {res['up_mb_s']:.0f} / {res['up_mb_s_median']:.0f} "
                    f"| {res['down_mb_s']:.0f} / {res['down_mb_s_median']:.0f} "
                    f"| {(sampler.peak - baseline) / MB:+.1f} MB |"
                )
            per_s = await thumbnails(client, auth, thumbs)
            for fmt, rate in per_s.items():
                print(f"thumbnails/s, 1600x1200 {fmt} source, on demand: {rate:.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes-mb", type=int, nargs="+", default=[10, 50])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--thumbnails", type=int, default=40)
    args = parser.parse_args()
    trio.run(main, args.sizes_mb, args.repeat, args.thumbnails)
