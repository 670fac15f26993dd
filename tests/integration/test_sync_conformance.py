"""``/sync`` conformance details over real sockets, on SQLite and PostgreSQL: typing, newly
joined rooms, history visibility in timelines, lazy-loaded members, presence, ignored users."""

from __future__ import annotations

import json
from typing import Any

import trio

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


# --- newly joined rooms, membership changes ----------------------------------------------------


async def test_display_name_change_is_not_a_new_join(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client:
        room_id = await alice.create_room()
        await _state(alice, room_id, "a.test.state", "", {"k": 1})
        since = (await alice.sync())["next_batch"]
        renamed = await _state(
            alice,
            room_id,
            "m.room.member",
            alice.user_id,
            {"membership": "join", "displayname": "B"},
        )
        sent = await alice.send(room_id, "after")
        room = (await alice.sync(since=since))["rooms"]["join"][room_id]
        assert [e["event_id"] for e in room["timeline"]["events"]] == [renamed, sent]
        assert room["timeline"]["limited"] is False
        assert room["state"]["events"] == []  # not the room's whole state again
        # a filter that hides both: the room is left out of the response altogether
        only_state = await _filter(
            alice,
            {"room": {"timeline": {"types": ["a.none"]}, "state": {"types": ["a.test.state"]}}},
        )
        since = (await alice.sync(filter=only_state))["next_batch"]
        await _state(
            alice,
            room_id,
            "m.room.member",
            alice.user_id,
            {"membership": "join", "displayname": "C"},
        )
        await alice.send(room_id, "hidden")
        assert (await alice.sync(since=since, filter=only_state))["rooms"]["join"] == {}


async def test_newly_joined_room_is_limited_with_full_state(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client, bob.client:
        room_id = await alice.create_room(preset="public_chat")
        await _state(alice, room_id, "a.test.state", "", {"k": 1})
        since = (await bob.sync())["next_batch"]
        for i in range(3):
            await alice.send(room_id, f"m{i}")
        await bob.join(room_id)
        only_messages = await _filter(bob, {"room": {"timeline": {"types": ["m.room.message"]}}})
        room = (await bob.sync(since=since, filter=only_messages))["rooms"]["join"][room_id]
        assert _bodies(room) == ["m0", "m1", "m2"]
        assert room["timeline"]["limited"] is True
        state = {(e["type"], e["state_key"]) for e in room["state"]["events"]}
        assert {
            ("m.room.create", ""),
            ("a.test.state", ""),
            ("m.room.member", bob.user_id),
        } <= state


async def test_join_and_leave_in_one_range_gives_the_state(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client, bob.client:
        room_id = await alice.create_room(preset="public_chat")
        await _state(alice, room_id, "a.test.state", "", {"k": 1})
        flt = await _filter(
            bob,
            {
                "room": {
                    "timeline": {"types": []},
                    "state": {"types": ["a.test.state"]},
                    "include_leave": True,
                }
            },
        )
        since = (await bob.sync(filter=flt))["next_batch"]
        await bob.join(room_id)
        r = await bob.client.post(f"{V3}/rooms/{room_id}/leave", json={})
        assert r.status_code == 200, r.text
        room = (await bob.sync(since=since, filter=flt))["rooms"]["leave"][room_id]
        assert [(e["type"], e["content"]) for e in room["state"]["events"]] == [
            ("a.test.state", {"k": 1})
        ]


async def test_current_state_shown_in_private_history(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    carol = await _user(server, "carol")
    async with alice.client, bob.client, carol.client:
        room_id = await alice.create_room(preset="public_chat")
        await bob.join(room_id)
        await _state(
            alice, room_id, "m.room.history_visibility", "", {"history_visibility": "joined"}
        )
        since = (await bob.sync())["next_batch"]
        r = await bob.client.post(f"{V3}/rooms/{room_id}/leave", json={})
        assert r.status_code == 200
        await alice.send(room_id, "while bob was away")
        await carol.join(room_id)
        await bob.join(room_id)
        room = (await bob.sync(since=since))["rooms"]["join"][room_id]
        timeline = room["timeline"]["events"]
        # carol's join is the room's current state: shown although bob could not see it then
        assert any(
            e["type"] == "m.room.member" and e["state_key"] == carol.user_id for e in timeline
        )
        # the message sent while bob was out stays hidden
        assert "while bob was away" not in _bodies(room)


async def test_a_sparse_filter_reaches_its_limit(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client:
        room_id = await alice.create_room()
        wanted = await alice.send(room_id, "the one")
        for i in range(30):
            r = await alice.client.put(f"{V3}/rooms/{room_id}/send/a.filler/f{i}", json={"n": i})
            assert r.status_code == 200
        flt = json.dumps({"room": {"timeline": {"limit": 1, "types": ["m.room.message"]}}})
        room = (await alice.sync(filter=flt))["rooms"]["join"][room_id]
        assert [e["event_id"] for e in room["timeline"]["events"]] == [wanted]
        assert room["timeline"]["limited"] is False
        await alice.send(room_id, "another")
        room = (await alice.sync(filter=flt))["rooms"]["join"][room_id]
        assert _bodies(room) == ["another"] and room["timeline"]["limited"] is True


# --- ignored users ---------------------------------------------------------------------------


async def _ignore(user: User, *others: str, content: Any = None) -> None:
    body = {"ignored_users": {o: {} for o in others}} if content is None else content
    r = await user.client.put(
        f"{V3}/user/{user.user_id}/account_data/m.ignored_user_list", json=body
    )
    assert r.status_code == 200, r.text


async def test_ignored_users_in_timelines_and_invites(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    carol = await _user(server, "carol")
    async with alice.client, bob.client, carol.client:
        room_id = await bob.create_room(preset="public_chat")
        await alice.join(room_id)
        await carol.join(room_id)
        await bob.send(room_id, "from bob")
        await carol.send(room_id, "from carol")
        assert _bodies((await alice.sync())["rooms"]["join"][room_id]) == [
            "from bob",
            "from carol",
        ]
        await _ignore(alice, bob.user_id)
        initial = await alice.sync()
        room = initial["rooms"]["join"][room_id]
        assert _bodies(room) == ["from carol"]
        # bob's state (his membership) is still there
        members = {
            e["state_key"]
            for e in room["state"]["events"] + room["timeline"]["events"]
            if e["type"] == "m.room.member"
        }
        assert bob.user_id in members
        since = initial["next_batch"]
        await bob.send(room_id, "bob again")
        assert (await alice.sync(since=since))["rooms"]["join"] == {}
        # invites from an ignored user are not sent, initial or incremental
        private = await bob.create_room()
        r = await bob.client.post(f"{V3}/rooms/{private}/invite", json={"user_id": alice.user_id})
        assert r.status_code == 200
        assert (await alice.sync())["rooms"]["invite"] == {}
        assert (await alice.sync(since=since))["rooms"]["invite"] == {}
        # malformed lists ignore nobody; un-ignoring shows bob again
        await _ignore(alice, content={"ignored_users": ["not", "an", "object"]})
        assert private in (await alice.sync())["rooms"]["invite"]
        await _ignore(alice)
        assert "bob again" in _bodies((await alice.sync())["rooms"]["join"][room_id])


# --- lazy-loaded members, room summary -----------------------------------------------------------


def _members(room: dict[str, Any]) -> set[str]:
    return {e["state_key"] for e in room["state"]["events"] if e["type"] == "m.room.member"}


async def _filler(user: User, room_id: str, n: int) -> None:
    for i in range(n):
        r = await user.client.put(
            f"{V3}/rooms/{room_id}/send/a.filler/{user.user_id}{trio.current_time()}{i}",
            json={"n": i},
        )
        assert r.status_code == 200, r.text


async def test_lazy_loaded_members(server: RunningServer) -> None:
    alice, bob, carol, dave = [await _user(server, n) for n in ("alice", "bob", "carol", "dave")]
    async with alice.client, bob.client, carol.client, dave.client:
        room_id = await alice.create_room(preset="public_chat", name="Lazy")
        await bob.join(room_id)
        await carol.join(room_id)
        await _filler(bob, room_id, 10)
        lazy = {"room": {"state": {"lazy_load_members": True}, "timeline": {"limit": 10}}}
        flt = await _filter(alice, lazy)
        first = await alice.sync(filter=flt)
        room = first["rooms"]["join"][room_id]
        # the timeline's only sender, and the user herself
        assert _members(room) == {alice.user_id, bob.user_id}
        assert "m.heroes" not in room["summary"]  # named room: no heroes
        assert room["summary"]["m.joined_member_count"] == 3
        # carol speaks: only her member event is new
        await carol.send(room_id, "hi")
        inc = await alice.sync(since=first["next_batch"], filter=flt)
        assert _members(inc["rooms"]["join"][room_id]) == {carol.user_id}
        # bob and carol again: already sent to this device, not repeated
        await bob.send(room_id, "b")
        await carol.send(room_id, "c")
        inc = await alice.sync(since=inc["next_batch"], filter=flt)
        assert _members(inc["rooms"]["join"][room_id]) == set()
        # ... unless the filter asks for redundant members
        redundant = await _filter(
            alice,
            {
                "room": {
                    "state": {"lazy_load_members": True, "include_redundant_members": True},
                    "timeline": {"limit": 10},
                }
            },
        )
        await bob.send(room_id, "b2")
        again = await alice.sync(since=inc["next_batch"], filter=redundant)
        assert _members(again["rooms"]["join"][room_id]) == {bob.user_id}
        # a gap: dave joined in it without speaking, carol fills the timeline
        since = again["next_batch"]
        await dave.join(room_id)
        await _filler(carol, room_id, 12)
        gapped = await alice.sync(since=since, filter=flt)
        room = gapped["rooms"]["join"][room_id]
        assert room["timeline"]["limited"] is True
        assert _members(room) == {dave.user_id}  # carol was sent before: not repeated


async def test_summary_heroes_only_for_unnamed_rooms(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client, bob.client:
        unnamed = await alice.create_room(preset="public_chat")
        await bob.join(unnamed)
        lazy = await _filter(alice, {"room": {"state": {"lazy_load_members": True}}})
        room = (await alice.sync(filter=lazy))["rooms"]["join"][unnamed]
        assert room["summary"] == {
            "m.heroes": [bob.user_id],
            "m.joined_member_count": 2,
            "m.invited_member_count": 0,
        }
        # the hero's member event comes with it under lazy-loading
        members = _members(room) | {
            e["state_key"] for e in room["timeline"]["events"] if e["type"] == "m.room.member"
        }
        assert bob.user_id in members
        since = (await alice.sync(filter=lazy))["next_batch"]
        await _state(alice, unnamed, "m.room.name", "", {"name": "Now named"})
        await bob.client.post(f"{V3}/rooms/{unnamed}/leave", json={})
        room = (await alice.sync(since=since, filter=lazy))["rooms"]["join"][unnamed]
        assert room["summary"] == {"m.joined_member_count": 1, "m.invited_member_count": 0}


# --- presence of users who newly share a room ---------------------------------------------------


def _presence(body: dict[str, Any], sender: str) -> list[dict[str, Any]]:
    return [e["content"] for e in body["presence"]["events"] if e["sender"] == sender]


async def test_presence_of_newly_shared_users(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client, bob.client:
        room_id = await alice.create_room(preset="public_chat")
        r = await alice.client.put(
            f"{V3}/presence/{alice.user_id}/status", json={"presence": "online"}
        )
        assert r.status_code == 200
        # wait until alice's presence is written (the writer runs in the background)
        since = None
        for _ in range(50):
            body = await alice.sync(
                set_presence="offline", timeout=1000, **({"since": since} if since else {})
            )
            since = body["next_batch"]
            if _presence(body, alice.user_id):
                break
        else:
            raise AssertionError("alice's presence was never written")
        bob_since = (await bob.sync(set_presence="offline"))["next_batch"]
        alice_since = (await alice.sync(set_presence="offline"))["next_batch"]
        await bob.join(room_id)
        # bob newly shares a room with alice: her presence, although it did not change
        inc = await bob.sync(since=bob_since, set_presence="offline")
        assert [c["presence"] for c in _presence(inc, alice.user_id)] == ["online"]
        # and the next sync does not repeat it
        again = await bob.sync(since=inc["next_batch"], set_presence="offline")
        assert _presence(again, alice.user_id) == []
        # alice sees bob, who never published presence: offline
        inc = await alice.sync(since=alice_since, set_presence="offline")
        assert _presence(inc, bob.user_id) == [{"presence": "offline"}]
        again = await alice.sync(since=inc["next_batch"], set_presence="offline")
        assert _presence(again, bob.user_id) == [], again


async def test_set_presence_unavailable_from_sync(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client:
        r = await alice.client.get(f"{V3}/sync", params={"set_presence": "away"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"
        await alice.sync(set_presence="unavailable")
        status = (await alice.client.get(f"{V3}/presence/{alice.user_id}/status")).json()
        assert status["presence"] == "unavailable" and status["last_active_ago"] >= 0


async def test_federation_event_format(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client:
        room_id = await alice.create_room()
        event_id = await alice.send(room_id, "as servers see it")
        flt = await _filter(
            alice, {"event_format": "federation", "room": {"timeline": {"limit": 1}}}
        )
        room = (await alice.sync(filter=flt))["rooms"]["join"][room_id]
        (event,) = room["timeline"]["events"]
        assert event["event_id"] == event_id and event["room_id"] == room_id
        assert event["content"]["body"] == "as servers see it"
        for key in ("prev_events", "auth_events", "depth", "hashes", "signatures"):
            assert key in event
        assert event["unsigned"]["age"] >= 0
        r = await alice.client.post(
            f"{V3}/user/{alice.user_id}/filter", json={"event_format": "xml"}
        )
        assert r.status_code == 400


async def test_messages_forward_from_next_batch(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client:
        room_id = await alice.create_room()
        next_batch = (await alice.sync())["next_batch"]
        event_id = await alice.send(room_id, "later")
        messages = f"{V3}/rooms/{room_id}/messages"
        r = await alice.client.get(messages, params={"dir": "f", "from": next_batch})
        assert r.status_code == 200, r.text
        page = r.json()
        # a page with events always has an ``end`` (Synapse's behaviour), even a short one
        assert [e["event_id"] for e in page["chunk"]] == [event_id] and page["end"]
        r = await alice.client.get(messages, params={"dir": "f", "from": page["end"]})
        assert r.json()["chunk"] == [] and "end" not in r.json()
        r = await alice.client.get(messages, params={"dir": "sideways", "from": next_batch})
        assert r.status_code == 400


async def test_ignored_users_in_messages_and_to_device(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    carol = await _user(server, "carol")
    async with alice.client, bob.client, carol.client:
        room_id = await bob.create_room(preset="public_chat")
        await alice.join(room_id)
        await carol.join(room_id)
        await bob.send(room_id, "from bob")
        await carol.send(room_id, "from carol")
        since = (await alice.sync())["next_batch"]
        await _ignore(alice, bob.user_id)
        r = await alice.client.get(f"{V3}/rooms/{room_id}/messages", params={"dir": "b"})
        chunk = r.json()["chunk"]
        bodies = [e["content"].get("body") for e in chunk if e["type"] == "m.room.message"]
        assert bodies == ["from carol"]
        # bob's state events are still there
        assert any(e["type"] == "m.room.member" and e["sender"] == bob.user_id for e in chunk)
        for sender, txn in ((bob, "b1"), (carol, "c1")):
            r = await sender.client.put(
                f"{V3}/sendToDevice/m.test/{txn}",
                json={"messages": {alice.user_id: {alice.device_id: {"from": sender.user_id}}}},
            )
            assert r.status_code == 200, r.text
        body = await alice.sync(since=since)
        assert [m["sender"] for m in body["to_device"]["events"]] == [carol.user_id]


async def test_prev_batch_of_a_whole_room_timeline(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    async with alice.client:
        room_id = await alice.create_room()
        sent = await alice.send(room_id, "the newest")
        room = (await alice.sync())["rooms"]["join"][room_id]
        assert room["timeline"]["limited"] is False
        assert room["timeline"]["events"][0]["type"] == "m.room.create"
        # as Synapse: paging back from prev_batch of a whole-room timeline starts at its end
        r = await alice.client.get(
            f"{V3}/rooms/{room_id}/messages",
            params={"dir": "b", "from": room["timeline"]["prev_batch"]},
        )
        page = r.json()
        assert page["chunk"][0]["event_id"] == sent and page["end"]
        # a limited timeline's prev_batch is just before its first event (the gap)
        flt = json.dumps({"room": {"timeline": {"limit": 1}}})
        room = (await alice.sync(filter=flt))["rooms"]["join"][room_id]
        assert room["timeline"]["limited"] is True
        r = await alice.client.get(
            f"{V3}/rooms/{room_id}/messages",
            params={"dir": "b", "from": room["timeline"]["prev_batch"], "limit": 1},
        )
        assert r.json()["chunk"][0]["event_id"] != sent
