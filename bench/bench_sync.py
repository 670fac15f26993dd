"""``/sync`` benchmarks against a server in a subprocess (see bench/README.md, "Sync").

1. delivery latency: PUT /send → the receiver's pending long-poll returns it, at a fixed rate;
2. fan-out: one message into a room where 200 members long-poll: deliveries per second and the
   time until the last member has it;
3. memory per idle long-poll, with 1,000 open (server RSS before and after, divided);
4. initial sync of a user in 40 rooms with 25 messages each.

Run: ``.venv/bin/python bench/bench_sync.py [--postgres URL] [--quick]``
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import httpx
import orjson
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _server import (
    V3,
    BenchUser,
    RawClient,
    Server,
    percentile,
    register_users,
    start_server,
)

FILTER = json.dumps({"room": {"timeline": {"limit": 10}}})


async def _create_room(c: httpx.AsyncClient, owner: BenchUser, **body: Any) -> str:
    r = await c.post(f"{V3}/createRoom", json=body, headers=owner.headers)
    r.raise_for_status()
    room_id: str = r.json()["room_id"]
    return room_id


async def _join(c: httpx.AsyncClient, user: BenchUser, room_id: str) -> None:
    r = await c.post(f"{V3}/join/{room_id}", json={}, headers=user.headers)
    r.raise_for_status()


async def _sync(
    c: httpx.AsyncClient, user: BenchUser, since: str | None = None, timeout: int = 0
) -> dict[str, Any]:
    params: dict[str, Any] = {"timeout": timeout, "filter": FILTER}
    if since:
        params["since"] = since
    r = await c.get(f"{V3}/sync", params=params, headers=user.headers, timeout=120)
    r.raise_for_status()
    body: dict[str, Any] = r.json()
    return body


def _is_empty(body: dict[str, Any]) -> bool:
    rooms = body["rooms"]
    return not (
        any(rooms[k] for k in ("join", "invite", "leave", "knock"))
        or body["presence"]["events"]
        or body["account_data"]["events"]
        or body["to_device"]["events"]
    )


async def _settled(c: httpx.AsyncClient, user: BenchUser, wait_ms: int = 0) -> str:
    """A token after which nothing is pending for ``user`` (its own presence coming online,
    other users' joins...), so a long-poll from it waits for the next real change.

    With ``wait_ms`` > 0 the check is a long-poll of that length, so presence changes that the
    server applies later (its flush runs every second) are waited for too."""
    body = await _sync(c, user)
    for _ in range(20):
        nxt = await _sync(c, user, body["next_batch"], timeout=wait_ms)
        if _is_empty(nxt):
            return str(nxt["next_batch"])
        body = nxt
    raise RuntimeError("sync does not settle")


async def bench_latency(srv: Server, messages: int, rate: float) -> dict[str, float]:
    """p50/p99 from the PUT starting to the receiver's long-poll returning the event."""
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=60) as c:
        alice, bob = await register_users(c, "lat", 2)
        room_id = await _create_room(c, alice, preset="public_chat")
        await _join(c, bob, room_id)
        await _settled(c, alice)
        since = await _settled(c, bob)
        poller = RawClient.to(srv.base_url, bob)
        sender = RawClient.to(srv.base_url, alice)
        latencies: list[float] = []
        for i in range(messages):
            sent_at: list[float] = []

            async def send(i: int = i, sent_at: list[float] = sent_at) -> None:
                await trio.sleep(0.01)  # the poll is parked by now
                sent_at.append(trio.current_time())
                answer = await sender.request(
                    "PUT",
                    f"{V3}/rooms/{quote(room_id)}/send/m.room.message/l{i}",
                    orjson.dumps({"msgtype": "m.text", "body": f"m{i}"}),
                )
                assert "event_id" in answer, answer

            async with trio.open_nursery() as nursery:
                nursery.start_soon(send)
                while True:  # other streams (presence) may answer first: poll until it is there
                    body = await poller.sync(since, 10_000, FILTER)
                    got_at = trio.current_time()
                    since = body["next_batch"]
                    room = body["rooms"]["join"].get(room_id, {})
                    events = room.get("timeline", {}).get("events", [])
                    if any(e.get("content", {}).get("body") == f"m{i}" for e in events):
                        break
            latencies.append((got_at - sent_at[0]) * 1000)
            await trio.sleep(max(0.0, 1 / rate - 0.01))
        await poller.aclose()
        await sender.aclose()
    return {
        "messages": messages,
        "rate_per_s": rate,
        "p50_ms": round(percentile(latencies, 50), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "max_ms": round(max(latencies), 2),
    }


async def bench_fanout(srv: Server, members: int, rounds: int) -> dict[str, float]:
    """One message, ``members`` long-polls; the time until the last of them has it."""
    limits = httpx.Limits(max_connections=members + 10, max_keepalive_connections=members + 10)
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=60, limits=limits) as c:
        users = await register_users(c, "fan", members)
        owner = users[0]
        room_id = await _create_room(c, owner, preset="public_chat")
        for u in users[1:]:
            await _join(c, u, room_id)
        for u in users:  # everyone online first: their presence changes are not the message
            await _sync(c, u)
        tokens = {u.user_id: await _settled(c, u) for u in users}
        pollers = {u.user_id: RawClient.to(srv.base_url, u) for u in users}
        try:
            results = [
                await _fanout_round(srv, c, users, pollers, room_id, tokens, f"f{r_i}")
                for r_i in range(rounds)
            ]
        finally:
            for poller in pollers.values():
                await poller.aclose()
        best = min(results)
    return {
        "members": members,
        "all_delivered_ms": round(best[0] * 1000, 1),
        "deliveries_per_s": round(members / best[0]),
        "server_cpu_ms_per_delivery": round(best[1] * 1000 / members, 3),
    }


async def _fanout_round(
    srv: Server,
    c: httpx.AsyncClient,
    users: list[BenchUser],
    pollers: dict[str, RawClient],
    room_id: str,
    tokens: dict[str, str],
    txn: str,
) -> tuple[float, float]:
    """Every user long-polls; one message; (seconds until the last has it, server CPU)."""
    done: list[float] = []
    parked = trio.Event()
    started = 0

    async def poll(u: BenchUser) -> None:
        nonlocal started
        started += 1
        if started == len(users):
            parked.set()
        while True:  # presence may wake the poll first: poll until the message is there
            body = await pollers[u.user_id].sync(tokens[u.user_id], 30_000, FILTER)
            tokens[u.user_id] = body["next_batch"]
            room = body["rooms"]["join"].get(room_id, {})
            if any(
                e.get("content", {}).get("body") == txn
                for e in room.get("timeline", {}).get("events", [])
            ):
                break
        done.append(trio.current_time())

    cpu0 = srv.cpu_seconds()
    async with trio.open_nursery() as nursery:
        for u in users:
            nursery.start_soon(poll, u)
        await parked.wait()
        await trio.sleep(1.0)  # let every poll reach the server and park
        t0 = trio.current_time()
        r = await c.put(
            f"{V3}/rooms/{room_id}/send/m.room.message/{txn}",
            json={"msgtype": "m.text", "body": txn},
            headers=users[0].headers,
        )
        r.raise_for_status()
    return max(done) - t0, srv.cpu_seconds() - cpu0


async def bench_idle_memory(srv: Server, polls: int) -> dict[str, float]:
    """Server RSS growth per idle long-poll: ``polls`` raw connections each send one
    ``GET /sync?since=…&timeout=60000`` and wait (nothing changes, so none is answered)."""
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=120) as c:
        (user,) = await register_users(c, "idle", 1)
        since = await _settled(c, user, wait_ms=2500)
    host, port = srv.base_url.removeprefix("http://").rsplit(":", 1)
    query = urlencode({"since": since, "timeout": 60_000, "filter": FILTER})
    request = (
        f"GET {V3}/sync?{query} HTTP/1.1\r\nHost: {host}\r\n"
        f"Authorization: Bearer {user.token}\r\n\r\n"
    ).encode()
    streams: list[trio.SocketStream] = []

    async def open_one() -> None:
        stream = await trio.open_tcp_stream(host, int(port))
        await stream.send_all(request)
        streams.append(stream)

    # warm-up: a few polls, so one-off allocations are not counted
    async with trio.open_nursery() as nursery:
        for _ in range(20):
            nursery.start_soon(open_one)
    await trio.sleep(1.0)
    gc.collect()
    before = srv.rss_bytes()
    try:
        limiter = trio.CapacityLimiter(50)

        async def limited() -> None:
            async with limiter:
                await open_one()

        async with trio.open_nursery() as nursery:
            for _ in range(polls):
                nursery.start_soon(limited)
        await trio.sleep(3)  # every request read and parked (none is answered)
        during = srv.rss_bytes()
        open_conns = len(
            [k for k in srv.process.net_connections("tcp") if k.status == "ESTABLISHED"]
        )
        answered = 0  # a poll that was answered is not an idle long-poll: the figure is void
        for stream in streams:
            with trio.move_on_after(0.001):
                if await stream.receive_some(1):
                    answered += 1
        if answered:
            raise RuntimeError(f"{answered} of the idle long-polls were answered")
    finally:
        for stream in streams:
            await stream.aclose()
    return {
        "idle_polls": polls,
        "server_connections_open": open_conns,
        "rss_before_mib": round(before / 2**20, 1),
        "rss_during_mib": round(during / 2**20, 1),
        "kib_per_poll": round((during - before) / polls / 1024, 1),
    }


async def bench_initial_sync(srv: Server, rooms: int, messages: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=srv.base_url, timeout=120) as c:
        (user,) = await register_users(c, "init", 1)
        for r_i in range(rooms):
            room_id = await _create_room(c, user, name=f"room {r_i}")
            for m in range(messages):
                r = await c.put(
                    f"{V3}/rooms/{room_id}/send/m.room.message/i{r_i}_{m}",
                    json={"msgtype": "m.text", "body": f"message {m}"},
                    headers=user.headers,
                )
                r.raise_for_status()
        times = []
        for _ in range(10):
            t0 = trio.current_time()
            body = await _sync(c, user)
            times.append(trio.current_time() - t0)
            assert len(body["rooms"]["join"]) == rooms
    return {
        "rooms": rooms,
        "messages_per_room": messages,
        "best_ms": round(min(times) * 1000, 1),
        "median_ms": round(percentile(times, 50) * 1000, 1),
    }


async def main(args: argparse.Namespace) -> None:
    quick = args.quick
    results: dict[str, Any] = {"database": "postgresql" if args.postgres else "sqlite"}
    async with start_server(args.postgres) as srv:
        results["latency"] = await bench_latency(srv, 40 if quick else 200, 5.0)
        print(json.dumps(results["latency"]), flush=True)
        results["fanout"] = await bench_fanout(srv, 50 if quick else 200, 3)
        print(json.dumps(results["fanout"]), flush=True)
        results["initial_sync"] = await bench_initial_sync(srv, 40, 25)
        print(json.dumps(results["initial_sync"]), flush=True)
    async with start_server(args.postgres) as srv:
        results["idle_memory"] = await bench_idle_memory(srv, 200 if quick else 1000)
        print(json.dumps(results["idle_memory"]), flush=True)
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--postgres", help="a PostgreSQL URL (default: SQLite in a temp dir)")
    parser.add_argument("--quick", action="store_true", help="smaller runs, for a smoke test")
    trio.run(main, parser.parse_args())
