"""The HTTP layer's streamed request bodies (used by media uploads) over real sockets:
backpressure bounds what is buffered, and handlers that never read a body do not wedge the
keep-alive connection."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import httpx
import hypercorn.trio
import trio
import trio.testing
from hypercorn.config import Config as HypercornConfig
from quart import request

from homeserver.api._http import STREAM_HIGH_WATER, build_asgi_app, read_json_body, route

LIMIT = 4096
MAX_RECV = 65536  # hypercorn reads the socket in chunks of at most this


class StreamApi:
    def __init__(self) -> None:
        self.peak_buffered = 0
        self.started = trio.Event()
        self.go = trio.Event()
        self.body: Any = None

    @route("POST", "/stream")
    async def stream(self):
        self.body = request.body
        self.started.set()
        await self.go.wait()
        digest = hashlib.sha256()
        total = 0
        async for chunk in request.body:
            self.peak_buffered = max(self.peak_buffered, len(chunk))
            digest.update(chunk)
            total += len(chunk)
        return {"total": total, "sha256": digest.hexdigest()}

    @route("POST", "/ignore")
    async def ignore(self):
        return {"ignored": True}

    @route("POST", "/json")
    async def json(self):
        return await read_json_body(LIMIT)


async def serve(nursery, api) -> str:
    app = build_asgi_app([api], max_body_bytes=LIMIT)
    cfg = HypercornConfig()
    cfg.bind = ["127.0.0.1:0"]
    cfg.accesslog = None
    urls = await nursery.start(partial(hypercorn.trio.serve, app, cfg))
    return str(urls[0])


async def test_streamed_body_is_bounded_by_backpressure(nursery):
    api = StreamApi()
    base = await serve(nursery, api)
    data = bytes(range(256)) * (20 * 1024 * 1024 // 256)  # 20 MiB, far over the JSON limit
    result = {}

    async def client():
        async with httpx.AsyncClient(base_url=base, timeout=30) as c:
            result["r"] = await c.post("/stream", content=data)

    async with trio.open_nursery() as n:
        n.start_soon(client)
        await api.started.wait()
        # the handler has not read anything: the client is stuck on a full socket, and the
        # server holds at most the high-water mark (plus one socket read) in memory
        await trio.testing.wait_all_tasks_blocked(cushion=0.05)
        assert "r" not in result
        buffered = len(api.body._data)
        assert 0 < buffered <= STREAM_HIGH_WATER + MAX_RECV
        api.go.set()
    r = result["r"]
    assert r.status_code == 200, r.text
    assert r.json() == {"total": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    assert api.peak_buffered <= STREAM_HIGH_WATER + MAX_RECV


async def follow_up(c: httpx.AsyncClient) -> httpx.Response:
    """A request after one whose body the server did not read: hypercorn closes such a
    connection without ``Connection: close``, so a client may lose the race of reusing it
    (``RemoteProtocolError``, once) — but it must never hang."""
    try:
        return await c.post("/json", json={"n": 1})
    except httpx.RemoteProtocolError:
        return await c.post("/json", json={"n": 1})


async def test_unread_bodies_do_not_wedge_the_connection(nursery):
    base = await serve(nursery, StreamApi())
    big = b"x" * (3 * 1024 * 1024)
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        with trio.fail_after(20):
            for path in ("/ignore", "/nowhere", "/json"):
                r = await c.post(path, content=big)
                assert r.status_code in (200, 404, 413), path

                async def chunked() -> AsyncIterator[bytes]:
                    for _ in range(30):
                        yield b"y" * 100_000

                r = await c.post(path, content=chunked())
                assert r.status_code in (200, 404, 413), path
                r = await follow_up(c)
                assert r.status_code == 200 and r.json() == {"n": 1}


async def test_json_bodies_keep_their_limit(nursery):
    base = await serve(nursery, StreamApi())
    async with httpx.AsyncClient(base_url=base, timeout=10) as c:
        r = await c.post("/json", content=b'{"a": "' + b"z" * LIMIT + b'"}')
        assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"

        async def chunked() -> AsyncIterator[bytes]:
            yield b'{"a": "'
            for _ in range(10):
                yield b"z" * 1000
            yield b'"}'

        r = await c.post("/json", content=chunked())
        assert r.status_code == 413
        r = await follow_up(c)
        assert r.status_code == 200 and r.json() == {"n": 1}
