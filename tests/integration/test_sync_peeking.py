"""Peeking into world-readable rooms through ``/sync`` (MSC2753), on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import RunningServer
from tests.integration.test_sync_api import User, _bodies, _user
from tests.integration.test_sync_conformance import _state

V3 = "/_matrix/client/v3"


async def _peek(user: User, target: str) -> Any:
    return await user.client.post(f"{V3}/peek/{target}", json={})


async def test_peek_into_a_world_readable_room(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client, bob.client:
        room_id = await alice.create_room(room_alias_name="peekable")
        await _state(
            alice, room_id, "m.room.history_visibility", "", {"history_visibility": "joined"}
        )
        r = await _peek(bob, room_id)
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        await _state(
            alice,
            room_id,
            "m.room.history_visibility",
            "",
            {"history_visibility": "world_readable"},
        )
        pre = (await bob.sync())["next_batch"]
        # by alias
        r = await _peek(bob, "%23peekable:test.local")
        assert r.status_code == 200 and r.json() == {"room_id": room_id}
        await alice.send(room_id, "hello peekers")
        first = await bob.sync()
        room = first["rooms"]["peek"][room_id]
        events = room["timeline"]["events"]
        assert events[0]["type"] == "m.room.create" and _bodies(room) == ["hello peekers"]
        assert first["rooms"]["join"] == {}
        # unchanged: not repeated; a new message: only the change
        again = await bob.sync(since=first["next_batch"])
        assert room_id not in again["rooms"].get("peek", {})
        await alice.send(room_id, "more")
        later = await bob.sync(since=again["next_batch"])
        assert _bodies(later["rooms"]["peek"][room_id]) == ["more"]
        assert later["rooms"]["peek"][room_id]["timeline"]["limited"] is False
        # a token from before the first full delivery gets the room in full again
        retried = await bob.sync(since=pre, filter='{"room": {"timeline": {"limit": 50}}}')
        events = retried["rooms"]["peek"][room_id]["timeline"]["events"]
        assert events[0]["type"] == "m.room.create" and _bodies(
            retried["rooms"]["peek"][room_id]
        ) == ["hello peekers", "more"]
        # another device of bob's does not see the peek
        other = await server.register("bob2")
        async with server.client(headers={"Authorization": f"Bearer {other['access_token']}"}) as c:
            assert "peek" not in (await c.get(f"{V3}/sync")).json()["rooms"]
        # unpeek ends it; unknown rooms and aliases are 404
        r = await bob.client.post(f"{V3}/unpeek/{room_id}", json={})
        assert r.status_code == 200
        assert "peek" not in (await bob.sync())["rooms"]
        assert (await _peek(bob, "!nope:test.local")).status_code == 404
        assert (await _peek(bob, "%23nope:test.local")).status_code == 404
        assert (await _peek(bob, "not-a-room")).status_code == 400


async def test_joining_ends_a_peek(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client, bob.client:
        room_id = await alice.create_room(preset="public_chat")
        await _state(
            alice,
            room_id,
            "m.room.history_visibility",
            "",
            {"history_visibility": "world_readable"},
        )
        assert (await _peek(bob, room_id)).status_code == 200
        assert room_id in (await bob.sync())["rooms"]["peek"]
        await bob.join(room_id)
        body = await bob.sync()
        assert room_id in body["rooms"]["join"] and "peek" not in body["rooms"]
