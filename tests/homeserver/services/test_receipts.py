"""The receipts service: public, private and threaded receipts, read markers, /sync events."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from homeserver.clock import FakeClock
from homeserver.errors import MatrixError
from homeserver.services.notifier import InProcessNotifier
from homeserver.services.receipts import ReceiptsService
from homeserver.storage import Stores
from homeserver.streams import StreamName
from tests.homeserver._live_env import RoomsEnv, uid

ALICE, BOB, CAROL = uid("alice"), uid("bob"), uid("carol")


class Env:
    def __init__(self, stores: Stores) -> None:
        self.stores = stores
        self.clock = FakeClock()
        self.notifier = InProcessNotifier()
        self.rooms = RoomsEnv(stores, self.notifier, self.clock)
        self.svc = ReceiptsService(stores.receipts, stores.account_data, self.notifier, self.clock)

    def pos(self, stream: StreamName = StreamName.RECEIPTS) -> int:
        return self.notifier.position(stream)


@pytest.fixture
async def env(stores: Stores) -> Env:
    for user in (ALICE, BOB, CAROL):
        await stores.users.create_user(user, password_hash=None, created_ts=1)
    return Env(stores)


async def test_public_private_and_threaded(env: Env) -> None:
    room = await env.rooms.room(ALICE, BOB)
    e1 = await env.rooms.send(ALICE, room, "one")
    e2 = await env.rooms.send(ALICE, room, "two")
    svc = env.svc
    await svc.post_receipt(BOB, room, "m.read", e1, None, ts=5)
    await svc.post_receipt(BOB, room, "m.read.private", e2, None, ts=6)
    await svc.post_receipt(BOB, room, "m.read", e2, "main", ts=7)
    await svc.post_receipt(ALICE, room, "m.read", e2, None)
    top = env.pos()
    assert top == 4

    # bob sees his private receipt; alice does not
    bob_view = await svc.receipt_events(BOB, [room], None, top)
    assert bob_view[room] == {
        "type": "m.receipt",
        "content": {
            e1: {"m.read": {BOB: {"ts": 5}}},
            e2: {
                "m.read.private": {BOB: {"ts": 6}},
                "m.read": {BOB: {"ts": 7, "thread_id": "main"}, ALICE: {"ts": env.clock.time_ms()}},
            },
        },
    }
    alice_view = await svc.receipt_events(ALICE, [room], None, top)
    assert "m.read.private" not in alice_view[room]["content"][e2]
    # incremental: only what changed in the window
    assert await svc.receipt_events(ALICE, [room], top, top) == {}
    inc = await svc.receipt_events(ALICE, {room}, 2, 3)
    assert inc[room]["content"] == {e2: {"m.read": {BOB: {"ts": 7, "thread_id": "main"}}}}
    # a window with only someone else's private receipt gives nothing
    assert await svc.receipt_events(ALICE, [room], 1, 2) == {}
    # rooms not asked for are left out
    assert await svc.receipt_events(ALICE, ["!other:test.local"], 0, top) == {}

    # receipts only move forward
    await svc.post_receipt(BOB, room, "m.read", e1, "main")
    await svc.post_receipt(ALICE, room, "m.read", e1, None)
    assert env.pos() == top


async def test_private_receipts_wake_only_their_owner(env: Env) -> None:
    room = await env.rooms.room(ALICE, BOB)
    event = await env.rooms.send(ALICE, room)
    woken: list[str] = []

    async def wait(key: str) -> None:
        await env.notifier.wait_for(key)
        woken.append(key)

    async with trio.open_nursery() as nursery:
        for key in (room, BOB):
            nursery.start_soon(wait, key)
        await trio.testing.wait_all_tasks_blocked()
        await env.svc.post_receipt(BOB, room, "m.read.private", event, None)
        await trio.testing.wait_all_tasks_blocked()
        assert woken == [BOB]
        await env.svc.post_receipt(BOB, room, "m.read", event, None)
    assert woken == [BOB, room]


async def test_errors(env: Env) -> None:
    room = await env.rooms.room(ALICE, BOB)
    other = await env.rooms.room(CAROL)
    event = await env.rooms.send(ALICE, room)
    elsewhere = await env.rooms.send(CAROL, other)
    cases = [
        ((BOB, room, "m.unknown", event, None), 400, "M_INVALID_PARAM"),
        ((BOB, room, "m.read", "not-an-event", None), 400, "M_INVALID_PARAM"),
        ((BOB, "not-a-room", "m.read", event, None), 400, "M_INVALID_PARAM"),
        ((BOB, room, "m.read", event, "not-a-thread"), 400, "M_INVALID_PARAM"),
        ((BOB, room, "m.fully_read", event, "main"), 400, "M_INVALID_PARAM"),
        ((CAROL, room, "m.read", event, None), 403, "M_FORBIDDEN"),
        ((CAROL, room, "m.fully_read", event, None), 403, "M_FORBIDDEN"),
        ((BOB, room, "m.read", "$unknown", None), 404, "M_NOT_FOUND"),
        ((BOB, room, "m.read", elsewhere, None), 404, "M_NOT_FOUND"),
        ((BOB, room, "m.fully_read", elsewhere, None), 404, "M_NOT_FOUND"),
    ]
    for args, status, errcode in cases:
        with pytest.raises(MatrixError) as e:
            await env.svc.post_receipt(*args)
        assert (e.value.status, e.value.errcode) == (status, errcode), args
    with pytest.raises(MatrixError) as e:
        await env.svc.set_read_markers(CAROL, room, event, None, None)
    assert e.value.errcode == "M_FORBIDDEN"
    with pytest.raises(MatrixError) as e:
        await env.svc.set_read_markers(BOB, room, None, "bad", None)
    assert e.value.errcode == "M_INVALID_PARAM"
    assert env.pos() == 0 and env.pos(StreamName.ACCOUNT_DATA) == 0


async def test_read_markers(env: Env) -> None:
    room = await env.rooms.room(ALICE, BOB)
    e1 = await env.rooms.send(ALICE, room, "one")
    e2 = await env.rooms.send(ALICE, room, "two")
    svc, ad = env.svc, env.stores.account_data

    await svc.set_read_markers(BOB, room, fully_read=e2, read=e1, read_private=e2)
    assert await ad.get(BOB, room, "m.fully_read") == {"event_id": e2}
    assert env.pos(StreamName.ACCOUNT_DATA) > 0
    content = (await svc.receipt_events(BOB, [room], None, env.pos()))[room]["content"]
    assert set(content[e1]) == {"m.read"} and set(content[e2]) == {"m.read.private"}
    # the marker does not move back, through either API
    before = env.pos(StreamName.ACCOUNT_DATA)
    await svc.set_read_markers(BOB, room, fully_read=e1, read=None, read_private=None)
    await svc.post_receipt(BOB, room, "m.fully_read", e1, None)
    await svc.post_receipt(BOB, room, "m.fully_read", e2, None)
    assert await ad.get(BOB, room, "m.fully_read") == {"event_id": e2}
    assert env.pos(StreamName.ACCOUNT_DATA) == before
    # an empty body changes nothing
    await svc.set_read_markers(BOB, room, None, None, None)
    # and forward again through /receipt/m.fully_read
    e3 = await env.rooms.send(ALICE, room, "three")
    await svc.post_receipt(BOB, room, "m.fully_read", e3, None)
    assert await ad.get(BOB, room, "m.fully_read") == {"event_id": e3}
    assert env.pos(StreamName.ACCOUNT_DATA) == before + 1
