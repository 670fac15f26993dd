"""Typing, receipts, read markers and presence over real sockets (SQLite and PostgreSQL).

What a request did is checked through the HTTP API where one exists (read markers are room
account data, presence has ``GET``) and otherwise in the server's database.
"""

from __future__ import annotations

from typing import Any

import httpx

from homeserver.storage import Database, open_stores
from homeserver.storage.presence import PRIVACY_TYPE
from tests.integration.conftest import RunningServer

V3 = "/_matrix/client/v3"


async def _client(server: RunningServer, name: str) -> tuple[str, httpx.AsyncClient]:
    login = await server.register(name)
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    return login["user_id"], server.client(headers=headers)


async def _room(a: httpx.AsyncClient, *joiners: httpx.AsyncClient) -> str:
    r = await a.post(f"{V3}/createRoom", json={"preset": "public_chat"})
    assert r.status_code == 200, r.text
    room_id: str = r.json()["room_id"]
    for client in joiners:
        assert (await client.post(f"{V3}/join/{room_id}", json={})).status_code == 200
    return room_id


async def _send(client: httpx.AsyncClient, room_id: str, txn: str) -> str:
    r = await client.put(
        f"{V3}/rooms/{room_id}/send/m.room.message/{txn}", json={"msgtype": "m.text", "body": txn}
    )
    assert r.status_code == 200, r.text
    event_id: str = r.json()["event_id"]
    return event_id


def _err(r: httpx.Response) -> tuple[int, Any]:
    return r.status_code, r.json().get("errcode")


async def test_typing(server: RunningServer) -> None:
    alice, a = await _client(server, "alice")
    bob, b = await _client(server, "bob")
    async with a, b:
        room = await _room(a)
        url = f"{V3}/rooms/{room}/typing/{alice}"
        assert (await a.put(url, json={"typing": True, "timeout": 30000})).json() == {}
        assert (await a.put(url, json={"typing": True})).status_code == 200  # default timeout
        assert (await a.put(url, json={"typing": False})).json() == {}
        # someone else's typing, a room bob is not in, bad bodies
        assert _err(await b.put(url, json={"typing": True, "timeout": 1})) == (403, "M_FORBIDDEN")
        r = await b.put(f"{V3}/rooms/{room}/typing/{bob}", json={"typing": True, "timeout": 1})
        assert _err(r) == (403, "M_FORBIDDEN")
        for body in ({}, {"typing": "yes"}, {"typing": True, "timeout": "1"}):
            assert _err(await a.put(url, json=body)) == (400, "M_BAD_JSON"), body
        assert _err(await a.put(url, json={"typing": True, "timeout": -5})) == (400, "M_BAD_JSON")
        assert _err(await a.put(url, content=b"{nope")) == (400, "M_NOT_JSON")
        r = await a.put(f"{V3}/rooms/not-a-room/typing/{alice}", json={"typing": False})
        assert _err(r) == (400, "M_INVALID_PARAM")
        r = await server.client().put(url, json={"typing": True})
        assert _err(r) == (401, "M_MISSING_TOKEN")


async def test_receipts_and_read_markers(server: RunningServer) -> None:
    alice, a = await _client(server, "alice")
    bob, b = await _client(server, "bob")
    _, c = await _client(server, "carol")
    async with a, b, c:
        room = await _room(a, b)
        e1 = await _send(a, room, "one")
        e2 = await _send(a, room, "two")

        def receipt(kind: str, event_id: str) -> str:
            return f"{V3}/rooms/{room}/receipt/{kind}/{event_id}"

        assert (await b.post(receipt("m.read", e2), json={})).json() == {}
        assert (await b.post(receipt("m.read", e1), json={"thread_id": "main"})).json() == {}
        assert (await b.post(receipt("m.read.private", e2))).status_code == 200  # no body
        assert (await b.post(receipt("m.read", e1), json={})).status_code == 200  # backwards: ok
        assert (await b.post(receipt("m.fully_read", e1), json={})).status_code == 200

        # bad input
        cases = [
            (b, receipt("m.bogus", e1), {}, (400, "M_INVALID_PARAM")),
            (b, receipt("m.read", e1), {"thread_id": ""}, (400, "M_INVALID_PARAM")),
            (b, receipt("m.read", e1), {"thread_id": 5}, (400, "M_INVALID_PARAM")),
            (b, receipt("m.read", e1), {"thread_id": "nope"}, (400, "M_INVALID_PARAM")),
            (b, receipt("m.fully_read", e1), {"thread_id": "main"}, (400, "M_INVALID_PARAM")),
            (b, receipt("m.read", "$unknown"), {}, (404, "M_NOT_FOUND")),
            (c, receipt("m.read", e1), {}, (403, "M_FORBIDDEN")),
            (c, f"{V3}/rooms/{room}/read_markers", {"m.fully_read": e1}, (403, "M_FORBIDDEN")),
            (b, f"{V3}/rooms/{room}/read_markers", {"m.fully_read": 5}, (400, "M_BAD_JSON")),
            (b, f"{V3}/rooms/{room}/read_markers", {"m.read": "x"}, (400, "M_INVALID_PARAM")),
            (b, f"{V3}/rooms/{room}/read_markers", {"m.read": "$nope"}, (404, "M_NOT_FOUND")),
        ]
        for client, url, body, expected in cases:
            assert _err(await client.post(url, json=body)) == expected, (url, body)
        assert _err(await b.post(receipt("m.read", e1), content=b"[1]")) == (400, "M_BAD_JSON")

        # read markers: m.fully_read is room account data, moved forward only
        r = await b.post(
            f"{V3}/rooms/{room}/read_markers",
            json={"m.fully_read": e2, "m.read": e2, "m.read.private": e2},
        )
        assert r.status_code == 200, r.text
        marker = f"{V3}/user/{bob}/rooms/{room}/account_data/m.fully_read"
        assert (await b.get(marker)).json() == {"event_id": e2}
        await b.post(f"{V3}/rooms/{room}/read_markers", json={"m.fully_read": e1})
        assert (await b.get(marker)).json() == {"event_id": e2}
        assert _err(await b.put(marker, json={"event_id": e1})) == (405, "M_BAD_JSON")

    async with Database.open(server.config.database_url, pool_size=1) as db:
        stores = open_stores(db)
        public = await stores.receipts.get_receipt(room, "m.read", bob)
        threaded = await stores.receipts.get_receipt(room, "m.read", bob, "main")
        private = await stores.receipts.get_receipt(room, "m.read.private", bob)
        assert public is not None and public.event_id == e2
        assert threaded is not None and threaded.event_id == e1
        assert private is not None and private.event_id == e2
        assert await stores.receipts.get_receipt(room, "m.read", alice) is None


async def test_presence_and_privacy(server: RunningServer) -> None:
    alice, a = await _client(server, "alice")
    bob, b = await _client(server, "bob")
    carol, c = await _client(server, "carol")
    async with a, b, c:
        await _room(a, b)
        status = f"{V3}/presence/{alice}/status"
        r = await a.put(status, json={"presence": "online", "status_msg": "hi"})
        assert r.status_code == 200 and r.json() == {}
        own = (await a.get(status)).json()
        assert own["presence"] == "online" and own["status_msg"] == "hi"
        assert own["currently_active"] is True and own["last_active_ago"] >= 0
        assert (await b.get(status)).json()["presence"] == "online"
        assert _err(await c.get(status)) == (403, "M_FORBIDDEN")  # shares no room

        privacy = f"{V3}/user/{alice}/account_data/{PRIVACY_TYPE}"
        assert (await a.put(privacy, json={"last_seen": "everyone"})).status_code == 200
        assert (await c.get(status)).json()["presence"] == "online"
        assert (await a.put(privacy, json={"last_seen": "nobody"})).status_code == 200
        assert _err(await b.get(status)) == (403, "M_FORBIDDEN")
        assert _err(await c.get(status)) == (403, "M_FORBIDDEN")
        assert (await a.get(status)).status_code == 200

        # bad input
        assert _err(await b.put(status, json={"presence": "online"})) == (403, "M_FORBIDDEN")
        mine = f"{V3}/presence/{bob}/status"
        assert _err(await b.put(mine, json={"presence": "away"})) == (400, "M_INVALID_PARAM")
        assert _err(await b.put(mine, json={})) == (400, "M_MISSING_PARAM")
        assert _err(await b.put(mine, json={"presence": 1})) == (400, "M_BAD_JSON")
        r = await b.put(mine, json={"presence": "online", "status_msg": 5})
        assert _err(r) == (400, "M_BAD_JSON")
        assert _err(await b.put(mine, content=b"nope")) == (400, "M_NOT_JSON")
        r = await b.get(f"{V3}/presence/@nobody:test.local/status")
        assert _err(r) == (404, "M_NOT_FOUND")
        assert _err(await b.get(f"{V3}/presence/garbage/status")) == (400, "M_INVALID_PARAM")
        assert (await b.get(f"{V3}/presence/{carol}/status")).status_code == 403
