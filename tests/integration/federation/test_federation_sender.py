"""Two of our servers over TLS: local events reach the other server's room at once through the
sender (both ways), and events for a server that is down survive a restart of the sender's
server and all arrive when the other is back and contacts us."""

from __future__ import annotations

import time
from functools import partial
from typing import Any
from urllib.parse import quote

import httpx
import trio

from homeserver.app import serve_homeserver
from tests.integration.federation.conftest import FederatedServer

V3 = "/_matrix/client/v3"


async def _user(server: FederatedServer, name: str) -> tuple[str, str]:
    account = await server.register(name)
    return account["user_id"], account["access_token"]


def _client(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _bodies(client: httpx.AsyncClient, room_id: str) -> list[str]:
    page = await _ok(
        await client.get(f"{V3}/rooms/{quote(room_id)}/messages", params={"dir": "b", "limit": 100})
    )
    return [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"][::-1]


async def _wait_for_bodies(
    client: httpx.AsyncClient, room_id: str, wanted: list[str], timeout: float = 30
) -> float:
    """Seconds until every body in ``wanted`` is in the room's timeline."""
    start = time.monotonic()
    with trio.fail_after(timeout):
        while not set(wanted) <= set(await _bodies(client, room_id)):
            await trio.sleep(0.02)
    return time.monotonic() - start


async def _shared_room(a: FederatedServer, b: FederatedServer, ta: str, tb: str) -> str:
    async with _client(a.client_url, ta) as ca, _client(b.client_url, tb) as cb:
        room_id = (await _ok(await ca.post(f"{V3}/createRoom", json={"preset": "public_chat"})))[
            "room_id"
        ]
        await _ok(
            await cb.post(f"{V3}/join/{quote(room_id)}?server_name={quote(a.server_name)}", json={})
        )
    return room_id


async def _send(client: httpx.AsyncClient, room_id: str, body: str) -> None:
    await _ok(
        await client.put(
            f"{V3}/rooms/{quote(room_id)}/send/m.room.message/{body}",
            json={"msgtype": "m.text", "body": body},
        )
    )


async def test_messages_cross_at_once_both_ways(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    _alice, ta = await _user(a, "alice")
    _bob, tb = await _user(b, "bob")
    room_id = await _shared_room(a, b, ta, tb)
    async with _client(a.client_url, ta) as ca, _client(b.client_url, tb) as cb:
        await _send(ca, room_id, "from-a")
        took = await _wait_for_bodies(cb, room_id, ["from-a"])
        assert took < 5  # pushed by the sender, not found by a timer
        await _send(cb, room_id, "from-b")
        await _wait_for_bodies(ca, room_id, ["from-b"])
        for i in range(60):  # more than one transaction's worth, in order
            await _send(ca, room_id, f"burst-{i}")
        wanted = [f"burst-{i}" for i in range(60)]
        await _wait_for_bodies(cb, room_id, wanted)
        bodies = await _bodies(cb, room_id)
        assert [x for x in bodies if x.startswith("burst-")] == wanted


async def test_queued_events_survive_restarts_and_arrive_when_the_server_is_back(
    two_servers: tuple[FederatedServer, FederatedServer], nursery: trio.Nursery
) -> None:
    a, b = two_servers
    _alice, ta = await _user(a, "alice")
    _bob, tb = await _user(b, "bob")
    room_id = await _shared_room(a, b, ta, tb)
    # B goes down
    assert b.stop is not None
    b.stop.set()
    await trio.sleep(1.5)  # its listeners are closed
    async with _client(a.client_url, ta) as ca:
        for i in range(3):
            await _send(ca, room_id, f"while-down-{i}")
        await trio.sleep(1)  # A tried, failed and backs off
    # A restarts (same database): the queue is in the database
    assert a.stop is not None
    a.stop.set()
    await trio.sleep(1.5)
    a_stop = trio.Event()
    bound = await nursery.start(partial(serve_homeserver, a.config, shutdown_trigger=a_stop.wait))
    a_client_url = bound[0].urls[0]
    async with _client(a_client_url, ta) as ca:
        await _send(ca, room_id, "after-restart")
    # B comes back and talks to A, which ends A's back-off at once
    b_stop = trio.Event()
    bound_b = await nursery.start(partial(serve_homeserver, b.config, shutdown_trigger=b_stop.wait))
    try:
        async with _client(bound_b[0].urls[0], tb) as cb:
            await _send(cb, room_id, "b-is-back")
            wanted = [f"while-down-{i}" for i in range(3)] + ["after-restart"]
            took = await _wait_for_bodies(cb, room_id, wanted)
            assert took < 4, took  # not A's back-off timer (8-12 s after the first failure)
            bodies = await _bodies(cb, room_id)
            assert [x for x in bodies if x in wanted] == wanted
    finally:
        a_stop.set()
        b_stop.set()
