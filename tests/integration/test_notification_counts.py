"""Unread notification counts in ``/sync`` over real HTTP (SQLite and PostgreSQL).

Spec: client-server-api/modules/push.md › Receiving notifications, Marking notifications as
read; sync.yaml ``unread_notifications`` / ``unread_thread_notifications``.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import trio

from tests.integration.conftest import RunningServer, ServerFactory

V3 = "/_matrix/client/v3"


class User:
    def __init__(self, server: RunningServer, login: dict[str, Any]) -> None:
        self.user_id: str = login["user_id"]
        self.token: str = login["access_token"]
        self.server = server
        self.since: str | None = None

    async def call(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        async with self.server.client(headers={"Authorization": f"Bearer {self.token}"}) as c:
            r = await c.request(method, path, json=body, params=params or None)
        assert r.status_code == 200, r.text
        return r.json()

    async def send(self, room_id: str, body: str, **content: Any) -> str:
        txn = f"t{trio.current_time()}-{body}"
        answer = await self.call(
            "PUT",
            f"{V3}/rooms/{quote(room_id)}/send/m.room.message/{quote(txn)}",
            {"msgtype": "m.text", "body": body, **content},
        )
        event_id: str = answer["event_id"]
        return event_id

    async def sync_room(self, room_id: str, **filter_: Any) -> dict[str, Any] | None:
        """Sync from the last token; the room's entry (None: not in this response)."""
        params: dict[str, Any] = {"timeout": 0}
        if self.since is not None:
            params["since"] = self.since
        if filter_:
            params["filter"] = json.dumps(filter_)
        body = await self.call("GET", f"{V3}/sync", **params)
        self.since = body["next_batch"]
        room: dict[str, Any] | None = body["rooms"]["join"].get(room_id)
        return room

    async def receipt(self, room_id: str, event_id: str, kind: str = "m.read", **body: Any) -> None:
        await self.call(
            "POST", f"{V3}/rooms/{quote(room_id)}/receipt/{kind}/{quote(event_id)}", body
        )


async def _pair(server: RunningServer, preset: str = "private_chat") -> tuple[User, User, str]:
    alice = User(server, await server.register("alice"))
    bob = User(server, await server.register("bob"))
    room_id = (
        await alice.call("POST", f"{V3}/createRoom", {"preset": preset, "invite": [bob.user_id]})
    )["room_id"]
    await bob.call("POST", f"{V3}/join/{quote(room_id)}", {})
    return alice, bob, room_id


def _counts(room: dict[str, Any] | None) -> tuple[int, int]:
    assert room is not None
    unread = room["unread_notifications"]
    return unread["notification_count"], unread["highlight_count"]


async def test_messages_count_until_read_and_sending_reads(server: RunningServer) -> None:
    alice, bob, room_id = await _pair(server)
    await alice.sync_room(room_id)
    first = await bob.send(room_id, "one")
    await bob.send(room_id, "two")
    third = await bob.send(room_id, "three")
    # the count arrives with the events themselves
    room = await alice.sync_room(room_id)
    assert _counts(room) == (3, 0)
    assert room is not None and len(room["timeline"]["events"]) == 3
    # the sender's own messages never count for them
    assert _counts(await bob.sync_room(room_id)) == (0, 0)

    await alice.receipt(room_id, first)
    assert _counts(await alice.sync_room(room_id)) == (2, 0)
    await alice.receipt(room_id, third, "m.read.private")
    assert _counts(await alice.sync_room(room_id)) == (0, 0)

    await bob.send(room_id, "four")
    await bob.send(room_id, "five")
    assert _counts(await alice.sync_room(room_id)) == (2, 0)
    await alice.send(room_id, "my answer")  # sending reads everything before it
    assert _counts(await alice.sync_room(room_id)) == (0, 0)

    # an initial sync (a new device) has the same counts
    await bob.send(room_id, "six")
    alice.since = None
    assert _counts(await alice.sync_room(room_id)) == (1, 0)


async def test_mentions_highlight_and_a_muted_room_counts_nothing(server: RunningServer) -> None:
    alice, bob, room_id = await _pair(server, "public_chat")
    for name in ("carol", "dave"):  # a group: not a one-to-one room
        other = User(server, await server.register(name))
        await other.call("POST", f"{V3}/join/{quote(room_id)}", {})
    await alice.sync_room(room_id)
    await bob.send(room_id, "hey alice", **{"m.mentions": {"user_ids": [alice.user_id]}})
    await bob.send(room_id, "just chatting")
    assert _counts(await alice.sync_room(room_id)) == (2, 1)

    # mute the room: a room rule with no actions
    await alice.call("PUT", f"{V3}/pushrules/global/room/{quote(room_id)}", {"actions": []})
    await bob.send(room_id, "you will not hear this")
    assert _counts(await alice.sync_room(room_id)) == (2, 1)
    await alice.call("DELETE", f"{V3}/pushrules/global/room/{quote(room_id)}")
    await bob.send(room_id, "back again")
    assert _counts(await alice.sync_room(room_id)) == (3, 1)


async def test_thread_counts_when_the_filter_asks(server: RunningServer) -> None:
    alice, bob, room_id = await _pair(server)
    await alice.sync_room(room_id)
    root = await bob.send(room_id, "root")
    in_thread = {"m.relates_to": {"rel_type": "m.thread", "event_id": root}}
    reply = await bob.send(room_id, "in the thread", **in_thread)
    await bob.send(room_id, "again in the thread", **in_thread)
    threaded = {"room": {"timeline": {"unread_thread_notifications": True}}}

    room = await alice.sync_room(room_id, **threaded)
    assert room is not None
    assert room["unread_notifications"]["notification_count"] == 1  # the main timeline: root
    assert room["unread_thread_notifications"] == {
        root: {"notification_count": 2, "highlight_count": 0}
    }
    # a threaded receipt clears only its thread, up to its event
    await alice.receipt(room_id, reply, thread_id=root)
    room = await alice.sync_room(room_id, **threaded)
    assert room is not None
    assert room["unread_notifications"]["notification_count"] == 1
    assert room["unread_thread_notifications"][root]["notification_count"] == 1
    # without the filter flag: one total over the room
    await bob.send(room_id, "main again")
    assert _counts(await alice.sync_room(room_id)) == (3, 0)
    # a "main" receipt clears the main timeline only
    last_main = await bob.send(room_id, "main once more")
    await alice.receipt(room_id, last_main, thread_id="main")
    room = await alice.sync_room(room_id, **threaded)
    assert room is not None
    assert room["unread_notifications"]["notification_count"] == 0
    assert room["unread_thread_notifications"][root]["notification_count"] == 1


async def test_counts_survive_a_restart(homeserver_factory: ServerFactory, tmp_path: Any) -> None:
    srv = await homeserver_factory()
    alice, bob, room_id = await _pair(srv)
    first = await bob.send(room_id, "one")
    await bob.send(room_id, "two")
    await alice.receipt(room_id, first)
    assert _counts(await alice.sync_room(room_id)) == (1, 0)
    # a second server on the same database and keys: nothing of the counts is in memory there
    again = await homeserver_factory(
        data_dir=str(srv.directory / "data"),
        signing_key_path=str(srv.directory / "data/signing.key"),
    )
    alice.server = again
    alice.since = None
    assert _counts(await alice.sync_room(room_id)) == (1, 0)


async def test_a_room_mention_by_the_creator_of_a_v12_room_highlights(
    server: RunningServer,
) -> None:
    """In room version 12 creators are not in the power levels' users map: they outrank every
    level, so their ``@room`` passes ``sender_notification_permission``."""
    alice, bob, room_id = await _pair(server)  # alice created the room (version 12)
    carol = User(server, await server.register("carol"))
    await alice.call("POST", f"{V3}/rooms/{quote(room_id)}/invite", {"user_id": carol.user_id})
    await carol.call("POST", f"{V3}/join/{quote(room_id)}", {})
    await bob.sync_room(room_id)
    await alice.send(room_id, "@room hello all", **{"m.mentions": {"room": True}})
    assert _counts(await bob.sync_room(room_id)) == (1, 1)
    # bob (power level 0) may not notify the room: counted, not highlighted
    await carol.sync_room(room_id)
    await bob.send(room_id, "@room me too", **{"m.mentions": {"room": True}})
    assert _counts(await carol.sync_room(room_id)) == (2, 1)
