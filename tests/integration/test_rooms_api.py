"""The room endpoints over real sockets (SQLite and PostgreSQL), and matrix-nio against them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import trio
from nio import (  # type: ignore[import-untyped]
    AsyncClient,
    AsyncClientConfig,
    JoinedMembersResponse,
    RoomCreateResponse,
    RoomMessagesResponse,
    RoomSendResponse,
)

from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
V3 = "/_matrix/client/v3"


class User:
    def __init__(self, server: RunningServer, login: dict[str, Any]) -> None:
        self.user_id: str = login["user_id"]
        self.client = server.client(headers={"Authorization": f"Bearer {login['access_token']}"})


async def _user(server: RunningServer, name: str) -> User:
    return User(server, await server.register(name))


async def test_room_lifecycle_over_http(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    carol = await _user(server, "carol")
    async with alice.client as a, bob.client as b, carol.client as c:
        r = await a.post(
            f"{V3}/createRoom",
            json={"preset": "private_chat", "name": "Group", "invite": [bob.user_id]},
        )
        assert r.status_code == 200, r.text
        room_id = r.json()["room_id"]

        # bob is invited; carol is not and cannot join or read
        assert (await c.post(f"{V3}/rooms/{room_id}/join", json={})).status_code == 403
        r = await c.get(f"{V3}/rooms/{room_id}/messages")
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        r = await b.post(f"{V3}/join/{room_id}", json={})
        assert r.status_code == 200 and r.json() == {"room_id": room_id}
        assert (await b.get(f"{V3}/joined_rooms")).json() == {"joined_rooms": [room_id]}
        r = await a.get(f"{V3}/rooms/{room_id}/joined_members")
        assert set(r.json()["joined"]) == {alice.user_id, bob.user_id}

        # idempotent send
        url = f"{V3}/rooms/{room_id}/send/m.room.message/txn1"
        first = await b.put(url, json={"msgtype": "m.text", "body": "hello"})
        again = await b.put(url, json={"msgtype": "m.text", "body": "hello"})
        assert first.status_code == 200, first.text
        assert first.json() == again.json()
        event_id = first.json()["event_id"]
        r = await a.get(f"{V3}/rooms/{room_id}/event/{event_id}")
        assert r.status_code == 200
        event = r.json()
        assert event["content"]["body"] == "hello" and event["sender"] == bob.user_id
        assert event["room_id"] == room_id
        assert (await a.get(f"{V3}/rooms/{room_id}/event/$nope")).status_code == 404

        # state: empty state key with and without the trailing slash; power levels enforced
        r = await a.put(f"{V3}/rooms/{room_id}/state/m.room.topic/", json={"topic": "T"})
        assert r.status_code == 200, r.text
        r = await a.get(f"{V3}/rooms/{room_id}/state/m.room.topic")
        assert r.json() == {"topic": "T"}
        r = await a.get(f"{V3}/rooms/{room_id}/state/m.room.topic/", params={"format": "event"})
        assert r.json()["content"] == {"topic": "T"} and r.json()["state_key"] == ""
        r = await b.put(f"{V3}/rooms/{room_id}/state/m.room.name", json={"name": "mine"})
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        r = await a.put(f"{V3}/rooms/{room_id}/state/org.example/a/b", json={"x": 1})
        assert r.status_code == 200
        r = await a.get(f"{V3}/rooms/{room_id}/state/org.example/a/b")
        assert r.json() == {"x": 1}
        state = (await a.get(f"{V3}/rooms/{room_id}/state")).json()
        assert {(e["type"], e["state_key"]) for e in state} >= {
            ("m.room.create", ""),
            ("m.room.name", ""),
            ("m.room.topic", ""),
            ("m.room.member", bob.user_id),
        }
        assert (await a.get(f"{V3}/rooms/{room_id}/state/m.room.avatar")).status_code == 404

        # admin-only sending: raise events_default above bob's level
        power = (await a.get(f"{V3}/rooms/{room_id}/state/m.room.power_levels/")).json()
        power["events_default"] = 50
        r = await a.put(f"{V3}/rooms/{room_id}/state/m.room.power_levels/", json=power)
        assert r.status_code == 200, r.text
        r = await b.put(f"{V3}/rooms/{room_id}/send/m.room.message/txn2", json={"body": "x"})
        assert r.status_code == 403
        r = await a.put(f"{V3}/rooms/{room_id}/send/m.room.message/txn2", json={"body": "ok"})
        assert r.status_code == 200

        # pagination backwards then forwards returns every event once
        back: list[str] = []
        token = None
        while True:
            params: dict[str, Any] = {"dir": "b", "limit": 3}
            if token:
                params["from"] = token
            page = (await a.get(f"{V3}/rooms/{room_id}/messages", params=params)).json()
            back += [e["event_id"] for e in page["chunk"]]
            token = page.get("end")
            if token is None:
                break
        page = (
            await a.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "f", "limit": 100})
        ).json()
        forward = [e["event_id"] for e in page["chunk"]]
        assert back == list(reversed(forward)) and len(set(forward)) == len(forward)
        assert event_id in forward

        # redaction: bob may no longer send anything (events_default 50), the admin redacts his
        # event; idempotent per txn ID; the content is stripped on read
        r = await b.put(f"{V3}/rooms/{room_id}/redact/{event_id}/r1", json={})
        assert r.status_code == 403
        r = await a.put(f"{V3}/rooms/{room_id}/redact/{event_id}/r1", json={"reason": "oops"})
        assert r.status_code == 200, r.text
        r2 = await a.put(f"{V3}/rooms/{room_id}/redact/{event_id}/r1", json={"reason": "oops"})
        assert r2.json() == r.json()
        assert (await a.get(f"{V3}/rooms/{room_id}/event/{event_id}")).json()["content"] == {}

        # kick, ban, unban, leave
        r = await a.post(f"{V3}/rooms/{room_id}/kick", json={"user_id": bob.user_id, "reason": "r"})
        assert r.status_code == 200, r.text
        assert (await b.get(f"{V3}/joined_rooms")).json() == {"joined_rooms": []}
        r = await a.post(f"{V3}/rooms/{room_id}/ban", json={"user_id": bob.user_id})
        assert r.status_code == 200
        r = await a.post(f"{V3}/rooms/{room_id}/invite", json={"user_id": bob.user_id})
        assert r.status_code == 403
        members = (
            await a.get(f"{V3}/rooms/{room_id}/members", params={"membership": "ban"})
        ).json()
        assert [m["state_key"] for m in members["chunk"]] == [bob.user_id]
        r = await a.post(f"{V3}/rooms/{room_id}/unban", json={"user_id": bob.user_id})
        assert r.status_code == 200
        r = await a.post(f"{V3}/rooms/{room_id}/unban", json={"user_id": bob.user_id})
        assert r.status_code == 403
        assert (await a.post(f"{V3}/rooms/{room_id}/leave", json={})).status_code == 200
        assert (await a.get(f"{V3}/joined_rooms")).json() == {"joined_rooms": []}


async def test_create_room_errors(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client as a:
        r = await a.post(f"{V3}/createRoom", json={"room_version": "99"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_UNSUPPORTED_ROOM_VERSION"
        r = await a.post(f"{V3}/createRoom", json={"preset": "nope"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
        r = await a.post(f"{V3}/createRoom", json={"invite": ["not-a-user"]})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        r = await a.post(f"{V3}/createRoom", json={"room_alias_name": ["x"]})
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
        r = await a.post(f"{V3}/rooms/!unknown:test.local/join", json={})
        assert r.status_code == 404
        r = await a.put(f"{V3}/rooms/!unknown:test.local/send/m.room.message/1", json={})
        assert r.status_code == 403
        r = await a.post(f"{V3}/createRoom", json={"room_version": "1"})
        assert r.status_code == 200
        room_id = r.json()["room_id"]
        big = {"body": "x" * 70_000}
        r = await a.put(f"{V3}/rooms/{room_id}/send/m.room.message/big", json=big)
        assert r.status_code == 413 and r.json()["errcode"] == "M_TOO_LARGE"
    async with server.client() as anonymous:
        assert (await anonymous.post(f"{V3}/createRoom", json={})).status_code == 401


async def test_concurrent_sends_over_http(server: RunningServer) -> None:
    users = [await _user(server, f"user{i}") for i in range(4)]
    owner = users[0]
    async with server.client(headers=owner.client.headers) as o:
        room_id = (await o.post(f"{V3}/createRoom", json={"preset": "public_chat"})).json()[
            "room_id"
        ]
    sent: list[str] = []

    async def run(user: User, n: int) -> None:
        async with user.client as client:
            if user is not owner:
                assert (await client.post(f"{V3}/rooms/{room_id}/join")).status_code == 200
            for i in range(n):
                r = await client.put(
                    f"{V3}/rooms/{room_id}/send/m.room.message/{i}", json={"body": str(i)}
                )
                assert r.status_code == 200, r.text
                sent.append(r.json()["event_id"])

    async with trio.open_nursery() as nursery:
        for user in users:
            nursery.start_soon(run, user, 5)
    assert len(set(sent)) == 20
    async with server.client(headers=users[1].client.headers) as client:
        page = (
            await client.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "f", "limit": 200})
        ).json()
    ids = [e["event_id"] for e in page["chunk"]]
    assert set(sent) <= set(ids) and len(ids) == len(set(ids))


async def test_matrix_nio_rooms(server: RunningServer) -> None:
    async def scenario(base_url: str) -> None:
        client = AsyncClient(base_url, "", config=AsyncClientConfig(store_sync_tokens=False))
        try:
            await client.register("nio", "correct horse battery")
            created = await client.room_create(name="nio room", topic="t")
            assert isinstance(created, RoomCreateResponse), created
            room_id = created.room_id
            sent = await client.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": "from nio"}
            )
            assert isinstance(sent, RoomSendResponse), sent
            messages = await client.room_messages(room_id, start="", limit=50)
            assert isinstance(messages, RoomMessagesResponse), messages
            assert sent.event_id in [e.event_id for e in messages.chunk]
            members = await client.joined_members(room_id)
            assert isinstance(members, JoinedMembersResponse), members
            assert [m.user_id for m in members.members] == ["@nio:test.local"]
        finally:
            await client.close()

    await trio.to_thread.run_sync(lambda: asyncio.run(scenario(server.base_url)))


async def test_idempotent_send_across_a_restart(homeserver_factory: Any) -> None:
    """The transaction ID map is in the database: a second server process on the same database
    (a restarted server) answers a repeated send with the same event ID."""
    first = await homeserver_factory()
    login = await first.register("alice")
    headers = {"Authorization": f"Bearer {login['access_token']}"}
    async with first.client(headers=headers) as c:
        room_id = (await c.post(f"{V3}/createRoom", json={})).json()["room_id"]
        url = f"{V3}/rooms/{room_id}/send/m.room.message/restart-1"
        event_id = (await c.put(url, json={"body": "once"})).json()["event_id"]
    second = await homeserver_factory()
    async with second.client(headers=headers) as c:
        again = await c.put(url, json={"body": "once"})
        assert again.status_code == 200 and again.json()["event_id"] == event_id
        page = (
            await c.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "b", "limit": 50})
        ).json()
    assert [e["content"].get("body") for e in page["chunk"]].count("once") == 1
