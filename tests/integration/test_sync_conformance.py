"""``/sync`` conformance details over real sockets, on SQLite and PostgreSQL: typing, newly
joined rooms, history visibility in timelines, lazy-loaded members, presence, ignored users."""

from __future__ import annotations

from typing import Any

from tests.integration.conftest import RunningServer
from tests.integration.test_sync_api import User, _bodies, _user

V3 = "/_matrix/client/v3"


async def _typing(user: User, room_id: str, typing: bool = True) -> None:
    r = await user.client.put(
        f"{V3}/rooms/{room_id}/typing/{user.user_id}", json={"typing": typing, "timeout": 30000}
    )
    assert r.status_code == 200, r.text


def _typing_users(room: dict[str, Any]) -> list[list[str]]:
    return [
        e["content"]["user_ids"]
        for e in room.get("ephemeral", {}).get("events", [])
        if e["type"] == "m.typing"
    ]


async def _filter(user: User, body: dict[str, Any]) -> str:
    r = await user.client.post(f"{V3}/user/{user.user_id}/filter", json=body)
    assert r.status_code == 200, r.text
    filter_id: str = r.json()["filter_id"]
    return filter_id


async def _state(user: User, room_id: str, event_type: str, key: str, content: Any) -> str:
    r = await user.client.put(f"{V3}/rooms/{room_id}/state/{event_type}/{key}", json=content)
    assert r.status_code == 200, r.text
    event_id: str = r.json()["event_id"]
    return event_id


# --- typing ---------------------------------------------------------------------------------------


async def test_sending_a_message_does_not_stop_typing(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client:
        room_id = await alice.create_room()
        await _typing(alice, room_id)
        since = (await alice.sync())["next_batch"]
        await alice.send(room_id, "hello")
        # initial sync after the message: still typing
        initial = await alice.sync()
        assert _typing_users(initial["rooms"]["join"][room_id]) == [[alice.user_id]]
        # incremental: the message, and no typing change (the set did not change)
        inc = await alice.sync(since=since)
        room = inc["rooms"]["join"][room_id]
        assert _bodies(room) == ["hello"] and _typing_users(room) == []
        # typing: false ends it, and the change reaches incremental syncs
        await _typing(alice, room_id, typing=False)
        inc = await alice.sync(since=inc["next_batch"])
        assert _typing_users(inc["rooms"]["join"][room_id]) == [[]]
        assert (await alice.sync())["rooms"]["join"][room_id]["ephemeral"]["events"] == []


async def test_typing_in_gapped_sync(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client:
        room_id = await alice.create_room()
        since = (await alice.sync())["next_batch"]
        await _typing(alice, room_id)
        for i in range(12):
            await alice.send(room_id, f"m{i}")
        inc = await alice.sync(since=since, filter='{"room": {"timeline": {"limit": 5}}}')
        room = inc["rooms"]["join"][room_id]
        assert room["timeline"]["limited"] is True
        assert _typing_users(room) == [[alice.user_id]]
