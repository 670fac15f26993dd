"""Benchmark rooms over real HTTP: messages/s into one room, server CPU per message, DM rooms/s.

The server runs as a subprocess (``python -m homeserver run``) on a fresh SQLite database (or
PostgreSQL with ``--pg-url``) with rate limits off; this process drives it with httpx:

1. ``--users`` (20) users join one public room and each sends ``--messages`` messages back to
   back, all users at once: messages/s = messages / wall time; server CPU per message = the
   server process's CPU time (user + system, all threads, read with psutil) over the phase,
   divided by the messages.
2. ``--dms`` one-to-one rooms, ``--concurrency`` at a time: ``POST /createRoom``
   (``trusted_private_chat``, ``is_direct``, one invitee) then the invitee's ``POST /join``:
   rooms/s = rooms / wall time, and server CPU per room.

``--profile out.prof`` runs the server under cProfile (the Trio thread, which is where the
SQLite units of work run too) and prints the top functions by own time after the run.

Run:  .venv/bin/python bench/bench_rooms.py
      .venv/bin/python bench/bench_rooms.py --profile /tmp/rooms.prof
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import orjson
import psutil
import trio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import BenchUser, RawClient  # noqa: E402

V3 = "/_matrix/client/v3"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(directory: Path, port: int, db_url: str | None) -> Path:
    cfg = {
        "server_name": "bench.local",
        "listeners": [{"host": "127.0.0.1", "port": port, "resources": ["client", "health"]}],
        "database": {"url": db_url or f"sqlite:///{directory / 'bench.db'}", "pool_size": 8},
        "data_dir": str(directory / "data"),
        "signing_key_path": str(directory / "data" / "signing.key"),
        "logging": {"level": "WARNING"},
        "rate_limits": {"enabled": False},
        "registration": {"policy": "open", "allow_guests": False},
    }
    path = directory / "homeserver.yaml"
    path.write_text(json.dumps(cfg))  # JSON is YAML
    return path


def _cpu(proc: psutil.Process) -> float:
    times = proc.cpu_times()
    return float(times.user + times.system)


async def _wait_ready(base: str, proc: trio.Process) -> None:
    async with httpx.AsyncClient(base_url=base) as c:
        for _ in range(600):
            if proc.poll() is not None:
                raise SystemExit(f"server exited with {proc.returncode}")
            try:
                if (await c.get("/health")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await trio.sleep(0.1)
    raise SystemExit("server did not become ready")


async def _register(c: httpx.AsyncClient, name: str) -> tuple[str, str]:
    r = await c.post(
        f"{V3}/register",
        json={
            "username": name,
            "password": "bench password 123",
            "auth": {"type": "m.login.dummy"},
        },
    )
    r.raise_for_status()
    body = r.json()
    return body["user_id"], body["access_token"]


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _messages_phase(
    c: httpx.AsyncClient, proc: psutil.Process, users: list[tuple[str, str]], per_user: int
) -> dict[str, float]:
    owner = users[0][1]
    r = await c.post(f"{V3}/createRoom", json={"preset": "public_chat"}, headers=_auth(owner))
    room_id = r.json()["room_id"]
    for _, token in users[1:]:
        (
            await c.post(f"{V3}/rooms/{room_id}/join", json={}, headers=_auth(token))
        ).raise_for_status()
    latencies: list[float] = []

    base_url = str(c.base_url).rstrip("/")

    async def sender(index: int, token: str) -> None:
        # a lean client: httpx would spend as much CPU per request as the server does
        client = RawClient.to(base_url, BenchUser(users[index][0], token))
        try:
            for i in range(per_user):
                t0 = time.perf_counter()
                answer = await client.request(
                    "PUT",
                    f"{V3}/rooms/{quote(room_id)}/send/m.room.message/b{index}-{i}",
                    orjson.dumps({"msgtype": "m.text", "body": f"message {i} from user {index}"}),
                )
                assert "event_id" in answer, answer
                latencies.append(time.perf_counter() - t0)
        finally:
            await client.aclose()

    cpu0, t0, me0 = _cpu(proc), time.perf_counter(), time.process_time()
    async with trio.open_nursery() as nursery:
        for index, (_, token) in enumerate(users):
            nursery.start_soon(sender, index, token)
    wall, cpu = time.perf_counter() - t0, _cpu(proc) - cpu0
    client_cpu = time.process_time() - me0
    n = per_user * len(users)
    latencies.sort()
    return {
        "messages": n,
        "messages_per_s": n / wall,
        "server_cpu_ms_per_message": 1000 * cpu / n,
        "client_cpu_ms_per_message": 1000 * client_cpu / n,
        "p50_ms": 1000 * latencies[len(latencies) // 2],
        "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)],
    }


async def _dm_phase(
    c: httpx.AsyncClient,
    proc: psutil.Process,
    pairs: list[tuple[tuple[str, str], tuple[str, str]]],
    concurrency: int,
) -> dict[str, float]:
    limiter = trio.CapacityLimiter(concurrency)

    async def one(a: tuple[str, str], b: tuple[str, str]) -> None:
        async with limiter:
            r = await c.post(
                f"{V3}/createRoom",
                json={"preset": "trusted_private_chat", "is_direct": True, "invite": [b[0]]},
                headers=_auth(a[1]),
            )
            r.raise_for_status()
            room_id = r.json()["room_id"]
            r = await c.post(f"{V3}/rooms/{room_id}/join", json={}, headers=_auth(b[1]))
            r.raise_for_status()

    cpu0, t0, me0 = _cpu(proc), time.perf_counter(), time.process_time()
    async with trio.open_nursery() as nursery:
        for a, b in pairs:
            nursery.start_soon(one, a, b)
    wall, cpu = time.perf_counter() - t0, _cpu(proc) - cpu0
    client_cpu = time.process_time() - me0
    return {
        "rooms": len(pairs),
        "rooms_per_s": len(pairs) / wall,
        "server_cpu_ms_per_room": 1000 * cpu / len(pairs),
        "client_cpu_ms_per_room": 1000 * client_cpu / len(pairs),
    }


async def _bench(args: argparse.Namespace) -> None:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="bench_rooms_") as tmp:
        directory = Path(tmp)
        port = _free_port()
        config = _config(directory, port, args.pg_url)
        env = os.environ.copy()
        cmd = [sys.executable]
        if args.profile:  # cProfile with the CPU clock (bench/_cpuprofile.py)
            cmd += [str(ROOT / "bench" / "_cpuprofile.py")]
            env["HS_PROFILE"] = args.profile
        else:
            cmd += ["-m", "homeserver"]
        cmd += ["run", "-c", str(config)]
        proc = await trio.lowlevel.open_process(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            await _wait_ready(base, proc)
            ps = psutil.Process(proc.pid)
            limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
            async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as c:
                users = [await _register(c, f"user{i}") for i in range(args.users)]
                await _messages_phase(c, ps, users, 5)  # warm-up
                results: dict[str, Any] = {
                    "backend": "postgresql" if args.pg_url else "sqlite",
                    "load_average_before": load,
                }
                results.update(await _messages_phase(c, ps, users, args.messages))
                dm_users = [await _register(c, f"dm{i}") for i in range(2 * min(args.dms, 50))]
                if not args.dms:
                    dm_users = []
                pairs = [
                    (dm_users[(2 * i) % len(dm_users)], dm_users[(2 * i + 1) % len(dm_users)])
                    for i in range(args.dms)
                ]
                if pairs:
                    results.update(await _dm_phase(c, ps, pairs, args.concurrency))
            print(
                json.dumps(
                    {k: round(v, 2) if isinstance(v, float) else v for k, v in results.items()},
                    indent=2,
                )
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            with trio.move_on_after(60):
                await proc.wait()
    if args.profile:
        pstats.Stats(args.profile).sort_stats("tottime").print_stats(args.top)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=20)
    parser.add_argument("--messages", type=int, default=50, help="messages per user")
    parser.add_argument("--dms", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--pg-url", default=None, help="a PostgreSQL database URL (empty db)")
    parser.add_argument("--profile", default=None, help="run the server under cProfile")
    parser.add_argument("--top", type=int, default=30)
    trio.run(_bench, parser.parse_args())


if __name__ == "__main__":
    main()
