"""How much memory an idle long-poll costs in the HTTP server alone (no Matrix work).

Two servers, each in a subprocess, each holding requests that it never answers until the
client goes away:

- ``hypercorn``: a bare ASGI app on hypercorn's Trio worker (our configuration: no access log,
  no server header) that waits for ``http.disconnect``, as a parked ``/sync`` does;
- ``h11``: a minimal HTTP/1.1 server of the kind a lean long-poll path would be: one Trio task
  per connection, h11 parsing the request, then the same task waiting for the socket to close.

The client opens ``--polls`` connections, sends one ``GET`` on each, and reads the server's RSS
before and after (psutil). This is the floor below which no ``/sync`` built on that server can
go; ``bench_sync.py`` measures the real thing.

Run: ``.venv/bin/python bench/probe_longpoll_memory.py [--polls 1000]`` (``ulimit -n 8192``).
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
from typing import Any

import psutil
import trio

_REQUEST = b"GET /sync?timeout=60000 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n"


def _serve_hypercorn(port: int) -> None:
    import hypercorn.trio
    from hypercorn.config import Config

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        while (await receive())["type"] != "http.disconnect":
            pass

    cfg = Config()
    cfg.bind = [f"127.0.0.1:{port}"]
    cfg.accesslog = None
    cfg.include_server_header = False
    cfg.keep_alive_timeout = 75
    trio.run(hypercorn.trio.serve, app, cfg)


def _serve_h11(port: int) -> None:
    import h11

    async def connection(stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        async with stream:
            while True:  # read the request head
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    conn.receive_data(data)
                elif isinstance(event, h11.EndOfMessage):
                    break
            del event
            while await stream.receive_some(65536):  # parked: returns b"" when the client goes
                pass

    async def main() -> None:
        await trio.serve_tcp(connection, port, host="127.0.0.1")

    trio.run(main)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(kind: str) -> tuple[subprocess.Popen[bytes], int]:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, __file__, "--serve", kind, "--port", str(port)])
    for _ in range(100):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.1)
    return proc, port


async def _measure(kind: str, pid: int, port: int, polls: int) -> dict[str, object]:
    server = psutil.Process(pid)
    streams: list[trio.SocketStream] = []

    async def open_some(n: int) -> None:
        for _ in range(n):
            stream = await trio.open_tcp_stream("127.0.0.1", port)
            await stream.send_all(_REQUEST)
            streams.append(stream)

    await open_some(20)  # warm-up
    await trio.sleep(1)
    before = server.memory_info().rss
    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(open_some, polls // 10)
    await trio.sleep(3)
    during = server.memory_info().rss
    held = len([c for c in server.net_connections("tcp") if c.status == "ESTABLISHED"])
    for stream in streams:
        await stream.aclose()
    return {
        "server": kind,
        "polls": polls,
        "connections_held": held,
        "kib_per_poll": round((during - before) / polls / 1024, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--polls", type=int, default=1000)
    parser.add_argument("--serve", choices=["hypercorn", "h11"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve == "hypercorn":
        _serve_hypercorn(args.port)
    elif args.serve == "h11":
        _serve_h11(args.port)
    else:
        for kind in ("hypercorn", "h11"):
            proc, port = _start(kind)
            try:
                print(json.dumps(trio.run(_measure, kind, proc.pid, port, args.polls)), flush=True)
            finally:
                proc.terminate()
                proc.wait()


if __name__ == "__main__":
    main()
