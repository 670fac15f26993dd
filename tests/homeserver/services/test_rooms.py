"""The event creation pipeline and room creation, on SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio

from federation.core.auth_rules import check_auth_rules, check_state_independent_auth_rules
from federation.core.builder import build_event, check_received_event
from federation.core.events import Event
from federation.core.room_versions import get_room_version
from federation.core.signing import KnownKey, SigningKey
from homeserver.clock import FakeClock
from homeserver.errors import MatrixError
from homeserver.services.events import EventCreationService
from homeserver.services.notifier import InProcessNotifier
from homeserver.services.requester import Requester
from homeserver.services.rooms import CreateRoomRequest, RoomService, StateEventSpec
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage import Stores
from homeserver.storage.events import NewEvent

SERVER = "test.local"
ALICE = Requester("@alice:test.local", "ADEV")
BOB = Requester("@bob:test.local", "BDEV")
CAROL = Requester("@carol:test.local", "CDEV")


class Env:
    def __init__(self, stores: Stores) -> None:
        self.key = SigningKey.generate("v1")
        self.notifier = InProcessNotifier()
        self.creator = EventCreationService(
            stores.events, self.key, FakeClock(), self.notifier, server_name=SERVER
        )
        self.rooms = RoomService(
            stores.events,
            self.creator,
            visibility=HistoryVisibility(stores.room_access),
            clock=FakeClock(),
            server_name=SERVER,
            default_room_version="12",
        )
        self.events = stores.events


@pytest.fixture
def env(stores: Stores) -> Env:
    return Env(stores)


async def _all_events(env: Env, room_id: str) -> list[Any]:
    page = await env.rooms.history.messages(
        ALICE, room_id, direction="f", from_token=None, to_token=None, limit=1000
    )
    return page.chunk


@pytest.mark.parametrize("version", ["1", "10", "11", "12"])
@pytest.mark.parametrize("preset", ["private_chat", "trusted_private_chat", "public_chat"])
async def test_create_room_events_pass_auth_and_verify(env: Env, version: str, preset: str) -> None:
    room_id = await env.rooms.create_room(
        ALICE,
        CreateRoomRequest(
            preset=preset,  # type: ignore[arg-type]
            name="Room",
            topic="Topic",
            invite=[BOB.user_id],
            is_direct=True,
            room_version=version,
            initial_state=[StateEventSpec("m.room.encryption", "", {"algorithm": "x"})],
        ),
    )
    rv = get_room_version(version)
    if version == "12":
        assert ":" not in room_id
    else:
        assert room_id.endswith(":test.local")
    known = {
        SERVER: {env.key.key_id: KnownKey(verify_key=env.key.verify_key, valid_until_ts=2**60)}
    }
    ids = [e["event_id"] for e in await _all_events(env, room_id)]
    stored = await env.events.get_events(ids)
    types = [stored[i].event.type for i in ids]
    assert types[:3] == ["m.room.create", "m.room.member", "m.room.power_levels"]
    assert "m.room.name" in types and "m.room.topic" in types
    assert "m.room.encryption" in types
    by_id: dict[str, Event] = {}
    for event_id in ids:
        event = stored[event_id].event

        def lookup(server: str, key_id: str, ts: int) -> Any:
            k = known.get(server, {}).get(key_id)
            return None if k is None else k.verify_key

        checked, hash_ok = check_received_event(rv, dict(event.pdu), lookup)
        assert hash_ok and checked.event_id == event_id
        # every event is allowed by its own auth events
        auth = {by_id[a].state_tuple: by_id[a] for a in event.auth_event_ids}
        if not rv.create_event_in_auth_events and event.type != "m.room.create":
            create = by_id["$" + room_id[1:]]
            auth[create.state_tuple] = create
            assert create.event_id not in event.auth_event_ids
        check_state_independent_auth_rules(rv, event, by_id | {event.event_id: event})
        check_auth_rules(rv, event, auth)  # type: ignore[arg-type]
        by_id[event_id] = event
    # the graph is linear
    for prev, event_id in itertools.pairwise(ids):
        assert list(stored[event_id].event.prev_event_ids) == [prev]
    invite = await env.events.get_current_state_event(room_id, "m.room.member", BOB.user_id)
    assert invite is not None and invite.event.content == {
        "membership": "invite",
        "is_direct": True,
    }
    power = await env.events.get_current_state_event(room_id, "m.room.power_levels", "")
    assert power is not None
    users = power.event.content["users"]
    if version == "12":
        assert ALICE.user_id not in users  # privileged creator
    else:
        assert users[ALICE.user_id] == 100
    join_rule = await env.events.get_current_state_event(room_id, "m.room.join_rules", "")
    assert join_rule is not None
    assert join_rule.event.content["join_rule"] == (
        "public" if preset == "public_chat" else "invite"
    )


async def test_unsupported_room_version(env: Env) -> None:
    with pytest.raises(MatrixError) as e:
        await env.rooms.create_room(ALICE, CreateRoomRequest(room_version="99"))
    assert e.value.errcode == "M_UNSUPPORTED_ROOM_VERSION"


@pytest.mark.parametrize("version", ["1", "12"])
async def test_membership_flow(env: Env, version: str) -> None:
    room_id = await env.rooms.create_room(
        ALICE, CreateRoomRequest(preset="private_chat", room_version=version)
    )
    # not invited: cannot join
    with pytest.raises(MatrixError) as e:
        await env.rooms.set_membership(BOB, room_id, BOB.user_id, "join")
    assert e.value.status == 403 and "member.join" in e.value.msg
    await env.rooms.set_membership(ALICE, room_id, BOB.user_id, "invite")
    await env.rooms.set_membership(BOB, room_id, BOB.user_id, "join")
    assert await env.rooms.history.joined_rooms(BOB) == [room_id]
    joined = await env.rooms.history.joined_members(ALICE, room_id)
    assert sorted(m.event.state_key or "" for m in joined) == [ALICE.user_id, BOB.user_id]
    # bob (power 0) cannot kick alice
    with pytest.raises(MatrixError) as e:
        await env.rooms.set_membership(BOB, room_id, ALICE.user_id, "leave")
    assert e.value.status == 403
    await env.rooms.set_membership(ALICE, room_id, BOB.user_id, "ban", reason="spam")
    assert await env.rooms.history.joined_rooms(BOB) == []
    with pytest.raises(MatrixError):
        await env.rooms.set_membership(BOB, room_id, BOB.user_id, "join")
    await env.rooms.set_membership(ALICE, room_id, BOB.user_id, "leave", require_current="ban")
    with pytest.raises(MatrixError):  # not banned any more
        await env.rooms.set_membership(ALICE, room_id, BOB.user_id, "leave", require_current="ban")
    await env.rooms.set_membership(ALICE, room_id, ALICE.user_id, "leave")
    assert await env.rooms.history.joined_rooms(ALICE) == []


async def test_auth_failure_persists_nothing(env: Env) -> None:
    room_id = await env.rooms.create_room(
        ALICE, CreateRoomRequest(preset="public_chat", room_version="11")
    )
    before = await env.events.get_forward_extremities(room_id)
    position = env.notifier.position
    with pytest.raises(MatrixError) as e:
        await env.rooms.send(BOB, room_id, "m.room.message", {"body": "hi"}, txn_id="t1")
    assert e.value.status == 403 and e.value.errcode == "M_FORBIDDEN"
    assert await env.events.get_forward_extremities(room_id) == before
    assert env.notifier.position == position
    # a state event above the sender's power level
    await env.rooms.set_membership(BOB, room_id, BOB.user_id, "join")
    with pytest.raises(MatrixError) as e:
        await env.rooms.send(BOB, room_id, "m.room.name", {"name": "x"}, state_key="")
    assert e.value.status == 403
    state = await env.events.get_current_state_ids(room_id)
    assert ("m.room.name", "") not in state


async def test_idempotent_txn(env: Env) -> None:
    room_id = await env.rooms.create_room(ALICE, CreateRoomRequest())
    first = await env.rooms.send(ALICE, room_id, "m.room.message", {"body": "a"}, txn_id="x")
    again = await env.rooms.send(ALICE, room_id, "m.room.message", {"body": "a"}, txn_id="x")
    assert again.event_id == first.event_id
    other_device = Requester(ALICE.user_id, "OTHER")
    third = await env.rooms.send(other_device, room_id, "m.room.message", {"body": "a"}, txn_id="x")
    assert third.event_id != first.event_id
    bodies = [e["content"].get("body") for e in await _all_events(env, room_id)]
    assert bodies.count("a") == 2
    # the same transaction ID on another room's path is a new request (spec: same path)
    other_room = await env.rooms.create_room(ALICE, CreateRoomRequest())
    fourth = await env.rooms.send(ALICE, other_room, "m.room.message", {"body": "a"}, txn_id="x")
    assert fourth.event_id != first.event_id
    assert fourth.room_id == other_room


async def test_concurrent_sends_form_a_chain(env: Env) -> None:
    room_id = await env.rooms.create_room(
        ALICE, CreateRoomRequest(preset="public_chat", room_version="12")
    )
    users = [Requester(f"@u{i}:test.local", "D") for i in range(5)]
    for user in users:
        await env.rooms.set_membership(user, room_id, user.user_id, "join")
    sent: list[str] = []

    async def send(n: int) -> None:
        user = users[n % len(users)]
        result = await env.rooms.send(
            user, room_id, "m.room.message", {"body": str(n)}, txn_id=str(n)
        )
        sent.append(result.event_id)

    async with trio.open_nursery() as nursery:
        for n in range(20):
            nursery.start_soon(send, n)
    assert len(set(sent)) == 20
    assert len(env.creator.locks) == 0  # the lock map does not keep idle rooms
    extremities = await env.events.get_forward_extremities(room_id)
    assert len(extremities) == 1
    chunk = await _all_events(env, room_id)
    ids = [e["event_id"] for e in chunk]
    assert set(sent) <= set(ids)
    stored = await env.events.get_events(ids)
    for prev, event_id in itertools.pairwise(ids):
        assert list(stored[event_id].event.prev_event_ids) == [prev]
        assert stored[event_id].depth == stored[prev].depth + 1


async def test_messages_pagination_both_ways(env: Env) -> None:
    room_id = await env.rooms.create_room(ALICE, CreateRoomRequest())
    for n in range(25):
        await env.rooms.send(ALICE, room_id, "m.room.message", {"body": str(n)}, txn_id=str(n))
    seen: list[str] = []
    token: str | None = None
    while True:
        page = await env.rooms.history.messages(
            ALICE, room_id, direction="b", from_token=token, to_token=None, limit=7
        )
        seen += [e["event_id"] for e in page.chunk]
        if page.end is None:
            break
        token = page.end
    forward = [e["event_id"] for e in await _all_events(env, room_id)]
    assert seen == list(reversed(forward))
    assert len(forward) == len(set(forward)) == 25 + 6  # create, join, power, 2 rules, guest
    # forwards in pages, stopping at a `to` token
    page1 = await env.rooms.history.messages(
        ALICE, room_id, direction="f", from_token=None, to_token=None, limit=10
    )
    assert page1.end is not None
    page2 = await env.rooms.history.messages(
        ALICE, room_id, direction="f", from_token=page1.end, to_token=None, limit=10
    )
    assert [e["event_id"] for e in page1.chunk + page2.chunk] == forward[:20]
    # outsiders read nothing
    with pytest.raises(MatrixError) as e:
        await env.rooms.history.messages(
            BOB, room_id, direction="b", from_token=None, to_token=None, limit=5
        )
    assert e.value.status == 403


async def test_notifier_wakes_room_waiters(env: Env) -> None:
    room_id = await env.rooms.create_room(ALICE, CreateRoomRequest())
    woke = trio.Event()

    async def wait() -> None:
        await env.notifier.wait_for(room_id)
        woke.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        await env.rooms.send(ALICE, room_id, "m.room.message", {"body": "x"}, txn_id="1")
    assert woke.is_set()


@pytest.mark.parametrize("version", ["1", "10", "12"])
async def test_fork_is_merged_with_state_resolution(env: Env, version: str) -> None:
    """Two events on one tip (as federation can bring) are merged by the next local event."""
    rv = get_room_version(version)
    room_id = await env.rooms.create_room(
        ALICE, CreateRoomRequest(preset="public_chat", room_version=version)
    )
    [tip] = await env.events.get_forward_extremities(room_id)
    assert tip.state_group is not None
    state = await env.events.get_state_group_ids(tip.state_group)
    keys = [("m.room.power_levels", ""), ("m.room.member", ALICE.user_id)]
    if rv.create_event_in_auth_events:
        keys.insert(0, ("m.room.create", ""))
    forks = []
    for topic in ("one", "two"):
        event = build_event(
            rv,
            room_id=room_id,
            sender=ALICE.user_id,
            type="m.room.topic",
            content={"topic": topic},
            state_key="",
            prev_event_ids=[tip.event_id],
            auth_event_ids=[state[k] for k in keys],
            depth=tip.depth + 1,
            origin_server_ts=1,
            origin=SERVER,
            signing_key=env.key,
        )
        await env.events.persist_event(NewEvent(event, None, tip.state_group))
        env.creator.room_written_elsewhere(room_id)  # as the federation receiver will
        forks.append(event.event_id)
    assert {e.event_id for e in await env.events.get_forward_extremities(room_id)} == set(forks)
    sent = await env.rooms.send(ALICE, room_id, "m.room.message", {"body": "merge"}, txn_id="m")
    merged = await env.events.get_event(sent.event_id)
    assert merged is not None
    assert set(merged.event.prev_event_ids) == set(forks)
    assert [e.event_id for e in await env.events.get_forward_extremities(room_id)] == [
        sent.event_id
    ]
    after = await env.events.get_state_ids_after(sent.event_id)
    assert after is not None and after[("m.room.topic", "")] in forks
    assert await env.events.get_current_state_ids(room_id) == after
    # and the room keeps working on the merged state
    await env.rooms.set_membership(BOB, room_id, BOB.user_id, "join")
    assert BOB.user_id in [
        m.event.state_key for m in await env.rooms.history.joined_members(ALICE, room_id)
    ]


@pytest.mark.parametrize("version", ["1", "10", "11", "12"])
async def test_redaction(env: Env, version: str) -> None:
    room_id = await env.rooms.create_room(
        ALICE, CreateRoomRequest(preset="public_chat", room_version=version)
    )
    await env.rooms.set_membership(BOB, room_id, BOB.user_id, "join")
    await env.rooms.set_membership(CAROL, room_id, CAROL.user_id, "join")
    msg = await env.rooms.send(BOB, room_id, "m.room.message", {"body": "secret"}, txn_id="1")
    # carol (power 0) cannot redact bob's event; bob can redact his own
    with pytest.raises(MatrixError) as e:
        await env.rooms.redact(CAROL, room_id, msg.event_id, "r1")
    assert e.value.status == 403
    with pytest.raises(MatrixError) as e:
        await env.rooms.redact(BOB, room_id, "$unknown", "r2")
    assert e.value.status == 404
    redaction = await env.rooms.redact(BOB, room_id, msg.event_id, "r3", reason="oops")
    again = await env.rooms.redact(BOB, room_id, msg.event_id, "r3", reason="oops")
    assert again.event_id == redaction.event_id
    shown = await env.rooms.history.get_event(ALICE, room_id, msg.event_id)
    assert shown["content"] == {}
    stored_redaction = await env.rooms.history.get_event(ALICE, room_id, redaction.event_id)
    assert stored_redaction["redacts"] == msg.event_id
    # the admin can redact others' events
    other = await env.rooms.send(CAROL, room_id, "m.room.message", {"body": "x"}, txn_id="2")
    await env.rooms.redact(ALICE, room_id, other.event_id, "r4")
    assert (await env.rooms.history.get_event(BOB, room_id, other.event_id))["content"] == {}


async def test_room_tip_is_kept_between_sends_and_read_again_when_unsure(env: Env) -> None:
    """A send into an active room builds on the remembered tip (no read before the write);
    the graph stays linear and auth still uses the current state."""
    room_id = await env.rooms.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    reads = 0
    real = env.events.get_creation_context

    async def counting(*args: Any, **kwargs: Any) -> Any:
        nonlocal reads
        reads += 1
        return await real(*args, **kwargs)

    env.events.get_creation_context = counting  # type: ignore[method-assign]
    ids = [
        (
            await env.rooms.send(ALICE, room_id, "m.room.message", {"body": str(i)}, txn_id=f"t{i}")
        ).event_id
        for i in range(5)
    ]
    assert reads <= 1
    for earlier, later in itertools.pairwise(ids):
        stored = await env.events.get_event(later)
        assert stored is not None and stored.event.prev_event_ids == [earlier]
    [tip] = await env.events.get_forward_extremities(room_id)
    assert tip.event_id == ids[-1]
    # a retried transaction ID still returns the first event
    again = await env.rooms.send(ALICE, room_id, "m.room.message", {"body": "0"}, txn_id="t0")
    assert again.event_id == ids[0]
    # after a redaction the tip is read again
    reads = 0
    await env.rooms.redact(ALICE, room_id, ids[0], "r1")
    await env.rooms.send(ALICE, room_id, "m.room.message", {"body": "x"}, txn_id="x")
    assert reads == 1
