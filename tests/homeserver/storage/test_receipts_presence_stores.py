"""The receipts and presence stores, on SQLite and PostgreSQL."""

from __future__ import annotations

import trio

from homeserver.storage import Stores
from homeserver.storage.presence import PRIVACY_TYPE, PresenceChange
from homeserver.storage.receipts import UNTHREADED
from homeserver.streams import StreamName
from tests.homeserver._live_env import RoomsEnv, uid

ALICE, BOB, CAROL = uid("alice"), uid("bob"), uid("carol")


async def test_receipts_move_forward_only(stores: Stores) -> None:
    env = RoomsEnv(stores)
    room = await env.room(ALICE, BOB)
    first = await env.send(ALICE, room, "one")
    second = await env.send(ALICE, room, "two")
    r = stores.receipts

    w = await r.put_receipt(room, "m.read", BOB, UNTHREADED, first, 10)
    assert w.outcome == "written" and w.position is not None
    assert await stores.streams.current_position(StreamName.RECEIPTS) == w.position
    w2 = await r.put_receipt(room, "m.read", BOB, UNTHREADED, second, 11)
    assert w2.outcome == "written" and w2.position == w.position + 1
    # back to an older event, or the same one: nothing written, no position taken
    assert (await r.put_receipt(room, "m.read", BOB, UNTHREADED, first, 12)).outcome == "not_newer"
    assert (await r.put_receipt(room, "m.read", BOB, UNTHREADED, second, 12)).outcome == (
        "not_newer"
    )
    assert await stores.streams.current_position(StreamName.RECEIPTS) == w2.position
    row = await r.get_receipt(room, "m.read", BOB)
    assert row is not None and (row.event_id, row.ts, row.stream_id) == (second, 11, w2.position)

    # other keys are separate: private, threaded
    assert (await r.put_receipt(room, "m.read.private", BOB, UNTHREADED, first, 1)).position
    assert (await r.put_receipt(room, "m.read", BOB, "main", first, 1)).position
    assert (await r.put_receipt(room, "m.read", BOB, "$root", first, 1)).position


async def test_receipt_checks(stores: Stores) -> None:
    env = RoomsEnv(stores)
    room = await env.room(ALICE, BOB)
    other = await env.room(CAROL)
    event = await env.send(ALICE, room)
    elsewhere = await env.send(CAROL, other)
    r = stores.receipts
    assert (await r.put_receipt(room, "m.read", CAROL, "", event, 1)).outcome == "not_joined"
    assert (await r.put_receipt(room, "m.read", BOB, "", "$nope", 1)).outcome == "unknown_event"
    assert (await r.put_receipt(room, "m.read", BOB, "", elsewhere, 1)).outcome == ("unknown_event")
    assert await stores.streams.current_position(StreamName.RECEIPTS) == 0
    assert await r.is_joined(room, BOB) and not await r.is_joined(room, CAROL)
    await env.leave(BOB, room)
    assert not await r.is_joined(room, BOB)
    order = await r.event_order(event)
    assert order is not None and order.room_id == room
    assert await r.event_order("$nope") is None


async def test_receipts_by_room_and_window(stores: Stores) -> None:
    env = RoomsEnv(stores)
    room1 = await env.room(ALICE, BOB)
    room2 = await env.room(ALICE, BOB)
    e1 = await env.send(ALICE, room1)
    e2 = await env.send(ALICE, room2)
    r = stores.receipts
    p1 = (await r.put_receipt(room1, "m.read", BOB, "", e1, 1)).position
    p2 = (await r.put_receipt(room2, "m.read", BOB, "", e2, 2)).position
    p3 = (await r.put_receipt(room1, "m.read", ALICE, "", e1, 3)).position
    assert p1 is not None and p2 is not None and p3 is not None
    rows = await r.receipts_in_rooms([room1], p3)
    assert {(x.user_id, x.room_id) for x in rows} == {(BOB, room1), (ALICE, room1)}
    assert [x.stream_id for x in await r.receipts_in_rooms([room1, room2], p2)] == [p1, p2]
    assert [x.stream_id for x in await r.receipts_between(p1, p3)] == [p2, p3]
    assert await r.receipts_between(p3, p3) == []


async def test_concurrent_receipts_keep_the_newest(stores: Stores) -> None:
    env = RoomsEnv(stores)
    room = await env.room(ALICE, BOB)
    events = [await env.send(ALICE, room, str(i)) for i in range(6)]

    async with trio.open_nursery() as nursery:
        for event in reversed(events):
            nursery.start_soon(stores.receipts.put_receipt, room, "m.read", BOB, "", event, 1)
    row = await stores.receipts.get_receipt(room, "m.read", BOB)
    assert row is not None and row.event_id == events[-1]


async def test_presence_writes_positions_and_rooms(stores: Stores) -> None:
    env = RoomsEnv(stores)
    room = await env.room(ALICE, BOB)
    p = stores.presence
    writes = await p.write_changes(
        [
            PresenceChange(ALICE, "online", "hi", 1000, True),
            PresenceChange(BOB, "unavailable", None, 900, False, privacy_changed=True),
        ]
    )
    assert [w.row.user_id for w in writes] == [ALICE, BOB]
    pa, pb = writes[0].row.stream_id, writes[1].row.stream_id
    assert pb == pa + 1 and writes[0].room_ids == [room] and writes[1].room_ids == [room]
    assert writes[0].row.privacy_stream_id == 0 and writes[1].row.privacy_stream_id == pb
    assert await stores.streams.current_position(StreamName.PRESENCE) == pb

    # a later change keeps the privacy position unless it changes it
    (w,) = await p.write_changes([PresenceChange(BOB, "online", None, 950, True)])
    assert w.row.privacy_stream_id == pb
    stored = await p.get(BOB)
    assert stored is not None
    assert (stored.state, stored.currently_active, stored.privacy_stream_id) == (
        "online",
        True,
        pb,
    )
    # last active without a position, never backwards
    await p.write_last_active([(BOB, 2000), (ALICE, 10)])
    assert (await p.get(BOB)).last_active_ts == 2000  # type: ignore[union-attr]
    assert (await p.get(ALICE)).last_active_ts == 1000  # type: ignore[union-attr]
    assert await stores.streams.current_position(StreamName.PRESENCE) == w.row.stream_id
    assert {r.user_id for r in await p.not_offline()} == {ALICE, BOB}
    assert set(await p.get_many([ALICE, CAROL])) == {ALICE}
    assert await p.write_changes([]) == []


async def test_presence_changes_for_shared_rooms_with_privacy(stores: Stores) -> None:
    for user in (ALICE, BOB, CAROL):
        await stores.users.create_user(user, password_hash=None, created_ts=1)
    env = RoomsEnv(stores)
    await env.room(ALICE, BOB)
    dave = uid("dave")
    p = stores.presence
    writes = await p.write_changes(
        [
            PresenceChange(ALICE, "online", None, 1, True),
            PresenceChange(BOB, "online", None, 1, True),
            PresenceChange(CAROL, "online", None, 1, True),  # shares no room with alice
            PresenceChange(dave, "online", None, 1, True),
        ]
    )
    first, last = writes[0].row.stream_id, writes[-1].row.stream_id
    await stores.account_data.put(BOB, "", PRIVACY_TYPE, {"last_seen": "nobody"})

    initial = await p.changes_for(ALICE, None, last)
    assert [(row.user_id, privacy) for row, privacy in initial] == [
        (ALICE, None),
        (BOB, {"last_seen": "nobody"}),
    ]
    assert [r.user_id for r, _ in await p.changes_for(ALICE, first, last)] == [BOB]
    assert await p.changes_for(ALICE, last, last) == []
    assert [r.user_id for r, _ in await p.changes_for(CAROL, None, last)] == [CAROL]

    assert await p.share_a_room(ALICE, BOB) and await p.share_a_room(BOB, ALICE)
    assert not await p.share_a_room(ALICE, CAROL)
    row, privacy = await p.get_with_privacy(BOB)
    assert row is not None and privacy == {"last_seen": "nobody"}
    await stores.account_data.put(CAROL, "", PRIVACY_TYPE, {"last_seen": "everyone"})
    assert await p.get_with_privacy(uid("nobody")) == (None, None)
    await p.write_changes([])
    assert (await p.get_with_privacy(CAROL))[1] == {"last_seen": "everyone"}
    assert len(await p.joined_rooms(ALICE)) == 1
