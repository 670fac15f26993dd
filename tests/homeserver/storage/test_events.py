"""The event store: state groups (snapshots plus bounded deltas), their growth, and reads."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from federation.core.signing import SigningKey
from homeserver.clock import FakeClock
from homeserver.services.events import EventCreationService
from homeserver.services.notifier import InProcessNotifier
from homeserver.services.requester import Requester
from homeserver.services.rooms import CreateRoomRequest, RoomService
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage import Conn, Database, Stores
from homeserver.storage.events import MIN_CHAIN_ROWS
from homeserver.storage.schema import state_groups

ALICE = Requester("@alice:test.local", "ADEV")
_SNAPSHOTS = (
    select(func.count()).select_from(state_groups).where(state_groups.c.prev_group.is_(None))
)
_GROUPS = select(func.count()).select_from(state_groups)


async def _count(db: Database, stmt: object) -> int:
    async def work(conn: Conn) -> int:
        return int(await conn.fetch_val(stmt))  # type: ignore[arg-type]

    return await db.read(work, name="test_count")


def _rooms(stores: Stores) -> RoomService:
    creator = EventCreationService(
        stores.events,
        SigningKey.generate("v1"),
        FakeClock(),
        InProcessNotifier(),
        server_name="test.local",
    )
    return RoomService(
        stores.events,
        creator,
        visibility=HistoryVisibility(stores.room_access),
        clock=FakeClock(),
        server_name="test.local",
        default_room_version="12",
    )


@pytest.mark.parametrize("distinct_keys", [True, False])
async def test_state_rows_grow_linearly(db: Database, stores: Stores, distinct_keys: bool) -> None:
    rooms = _rooms(stores)
    room_id = await rooms.create_room(ALICE, CreateRoomRequest(preset="private_chat"))
    base_rows = await stores.events.count_state_rows()
    changes = 1000
    ids: list[str] = []
    for i in range(changes):
        key = str(i) if distinct_keys else ""
        sent = await rooms.send(ALICE, room_id, "org.example.s", {"i": i}, state_key=key)
        ids.append(sent.event_id)
        if i % 100 == 0:  # non-state events never add state rows
            await rooms.send(ALICE, room_id, "m.room.message", {"body": "x"}, txn_id=str(i))
    rows = await stores.events.count_state_rows() - base_rows
    # each change writes one delta row, and each snapshot is paid for by as many delta rows
    assert changes <= rows <= 3 * changes + 2 * MIN_CHAIN_ROWS
    snapshots = await _count(db, _SNAPSHOTS)
    assert snapshots > 1  # chains do end in new snapshots
    if not distinct_keys:
        # small state: a snapshot at most every MIN_CHAIN_ROWS changes
        assert snapshots >= changes // (MIN_CHAIN_ROWS + 1)
    # the state after any event is exact, whether it is a snapshot or a delta
    current = await stores.events.get_current_state_ids(room_id)
    for i in (0, 1, 99, 100, 101, 500, 998, 999):
        state = await stores.events.get_state_ids_after(ids[i])
        assert state is not None
        if distinct_keys:
            assert {k for (t, k) in state if t == "org.example.s"} == {str(j) for j in range(i + 1)}
        else:
            assert state[("org.example.s", "")] == ids[i]
    assert await stores.events.get_state_ids_after(ids[-1]) == current


async def test_auth_chain_and_state_res_store(stores: Stores) -> None:
    rooms = _rooms(stores)
    room_id = await rooms.create_room(ALICE, CreateRoomRequest(room_version="12"))
    sent = await rooms.send(ALICE, room_id, "m.room.message", {"body": "x"}, txn_id="1")
    event = await stores.events.get_event(sent.event_id)
    assert event is not None
    chain = await stores.events.get_auth_chain([sent.event_id])
    create_id = "$" + room_id[1:]
    assert create_id in chain  # implied in v12, though not listed
    assert create_id not in event.event.auth_event_ids
    assert set(event.event.auth_event_ids) <= chain
    state = await stores.events.get_current_state_ids(room_id)
    store = await stores.events.load_state_res_store([state])
    assert set(store.get_events(list(state.values()))) == set(state.values())
    assert store.get_rejected(list(state.values())) == set()
    assert create_id in store.get_auth_chain([state[("m.room.power_levels", "")]])


async def test_rooms_for_user_and_members(stores: Stores) -> None:
    rooms = _rooms(stores)
    a = await rooms.create_room(ALICE, CreateRoomRequest(invite=["@bob:test.local"]))
    b = await rooms.create_room(ALICE, CreateRoomRequest())
    assert sorted(await stores.events.rooms_for_user(ALICE.user_id)) == sorted([a, b])
    assert await stores.events.rooms_for_user("@bob:test.local", "invite") == [a]
    members = await stores.events.get_members(a)
    assert [(u, m) for u, m, _ in members] == [
        (ALICE.user_id, "join"),
        ("@bob:test.local", "invite"),
    ]
