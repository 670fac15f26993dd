"""The reads ``/sync`` makes, each answering "what changed for this user" in proportion to the
answer rather than to the user's room count.

- :meth:`SyncStore.current_memberships`: the user's membership in every room it has one in (one
  indexed scan of ``current_state``; initial syncs and the set of rooms a long-poll listens on).
- :meth:`SyncStore.membership_changes`: the user's membership events in a stream range, through
  the partial index on ``events (state_key, stream_ordering)`` for member events.
- :meth:`SyncStore.joined_rooms_with_events`: rooms the user is joined to that have events in a
  stream range: a range scan of the stream, joined to the user's membership row.
- :meth:`SyncStore.load_room`: everything one room's entry needs (timeline window, state at its
  start, state at the since position) in one unit of work.

The event store owns writing; this module only reads the same tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy import BigInteger, Text, bindparam, func, select

from federation.core.events import StateKey
from homeserver.storage.db import Conn, Database
from homeserver.storage.events import (
    StoredEvent,
    decode_event_row,
    event_columns,
    events_join,
    read_group_state,
)
from homeserver.storage.schema import current_state, event_txn_ids, events
from homeserver.storage.stream_ids import current_positions
from homeserver.streams import StreamName

__all__ = ["MembershipRow", "RoomWindow", "SyncSnapshot", "SyncStore"]

_FROM = bindparam("from_pos", type_=BigInteger)
_TO = bindparam("to_pos", type_=BigInteger)


@dataclass(frozen=True, slots=True)
class MembershipRow:
    """The user's membership in one room as of an event."""

    room_id: str
    membership: str
    event_id: str
    stream_ordering: int


@dataclass(frozen=True, slots=True)
class SyncSnapshot:
    """What one ``/sync`` pass starts from, read in one unit of work.

    Attributes:
        positions: the committed position of every stream.
        memberships: the user's current membership in every room it has one in.
        changes: the user's membership events after ``since`` (empty without ``since``).
        changed_rooms: joined rooms with events after ``since`` (empty without ``since``).
        joined_at_since: of the rooms with a join among ``changes``, those where the user was
            already joined at ``since`` (a display name or avatar change, not a join).
    """

    positions: dict[StreamName, int]
    memberships: list[MembershipRow]
    changes: list[MembershipRow]
    changed_rooms: set[str]
    joined_at_since: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RoomWindow:
    """The newest events of a room in a stream range.

    Attributes:
        timeline: newest first, at most ``limit`` + 1 (one more than asked tells the caller the
            range was cut).
        exhausted: no event of the range is older than the last in ``timeline``.
    """

    timeline: list[StoredEvent]
    exhausted: bool


_CURRENT_MEMBERSHIPS = (
    select(
        current_state.c.room_id,
        current_state.c.membership,
        current_state.c.event_id,
        events.c.stream_ordering,
    )
    .select_from(current_state.join(events, events.c.event_id == current_state.c.event_id))
    .where(
        current_state.c.state_key == bindparam("user_id", type_=Text),
        current_state.c.type == "m.room.member",
    )
)

_MEMBERSHIP_CHANGES = (
    select(events.c.room_id, events.c.json, events.c.event_id, events.c.stream_ordering)
    .where(
        events.c.state_key == bindparam("user_id", type_=Text),
        events.c.type == "m.room.member",
        events.c.stream_ordering > _FROM,
        events.c.stream_ordering <= _TO,
        events.c.outlier.is_(False),
        events.c.rejected_reason.is_(None),
    )
    .order_by(events.c.stream_ordering)
)

# The user's newest membership event in one room at or before a position.
_MEMBERSHIP_AT = (
    select(events.c.json)
    .where(
        events.c.state_key == bindparam("user_id", type_=Text),
        events.c.type == "m.room.member",
        events.c.room_id == bindparam("room_id", type_=Text),
        events.c.stream_ordering <= _TO,
        events.c.outlier.is_(False),
        events.c.rejected_reason.is_(None),
    )
    .order_by(events.c.stream_ordering.desc())
    .limit(1)
)

_JOINED_ROOMS_WITH_EVENTS = (
    select(events.c.room_id)
    .select_from(
        events.join(
            current_state,
            (current_state.c.room_id == events.c.room_id)
            & (current_state.c.type == "m.room.member")
            & (current_state.c.state_key == bindparam("user_id", type_=Text)),
        )
    )
    .where(
        events.c.stream_ordering > _FROM,
        events.c.stream_ordering <= _TO,
        current_state.c.membership == "join",
    )
    .group_by(events.c.room_id)
)

_WINDOW = (
    select(*event_columns())
    .select_from(events_join())
    .where(
        events.c.room_id == bindparam("room_id", type_=Text),
        events.c.stream_ordering > _FROM,
        events.c.stream_ordering <= _TO,
        events.c.outlier.is_(False),
        events.c.rejected_reason.is_(None),
    )
    .order_by(events.c.stream_ordering.desc())
    .limit(bindparam("limit", type_=BigInteger))
)

# The state group after the room's newest event at or before a position.
_GROUP_AT = (
    select(events.c.state_group)
    .where(
        events.c.room_id == bindparam("room_id", type_=Text),
        events.c.stream_ordering <= _TO,
        events.c.outlier.is_(False),
        events.c.state_group.is_not(None),
    )
    .order_by(events.c.stream_ordering.desc())
    .limit(1)
)

_MEMBER_COUNTS = (
    select(current_state.c.membership, func.count())
    .where(
        current_state.c.room_id == bindparam("room_id", type_=Text),
        current_state.c.type == "m.room.member",
    )
    .group_by(current_state.c.membership)
)

_HERO_CANDIDATES = (
    select(current_state.c.state_key, current_state.c.membership)
    .where(
        current_state.c.room_id == bindparam("room_id", type_=Text),
        current_state.c.type == "m.room.member",
        current_state.c.state_key != bindparam("user_id", type_=Text),
    )
    .order_by(current_state.c.state_key)
    .limit(bindparam("limit", type_=BigInteger))
)

_JOINED_MEMBERS = select(current_state.c.state_key).where(
    current_state.c.room_id == bindparam("room_id", type_=Text),
    current_state.c.type == "m.room.member",
    current_state.c.membership == "join",
)

# The room's name and canonical alias events (whether the summary needs heroes).
_NAMING_STATE = (
    select(events.c.type, events.c.json)
    .select_from(current_state.join(events, events.c.event_id == current_state.c.event_id))
    .where(
        current_state.c.room_id == bindparam("room_id", type_=Text),
        (current_state.c.type == "m.room.name")
        | (current_state.c.type == "m.room.canonical_alias"),
        current_state.c.state_key == "",
    )
)

# The user's own member event and the power levels: what push rules read of room state.
_PUSH_STATE = (
    select(*event_columns())
    .select_from(events_join().join(current_state, current_state.c.event_id == events.c.event_id))
    .where(
        current_state.c.room_id == bindparam("room_id", type_=Text),
        (
            (current_state.c.type == "m.room.member")
            & (current_state.c.state_key == bindparam("user_id", type_=Text))
        )
        | (
            (
                (current_state.c.type == "m.room.power_levels")
                | (current_state.c.type == "m.room.create")
            )
            & (current_state.c.state_key == "")
        ),
    )
)

_TXN_ID = select(event_txn_ids.c.txn_id).where(
    event_txn_ids.c.user_id == bindparam("user_id", type_=Text),
    event_txn_ids.c.device_id == bindparam("device_id", type_=Text),
    event_txn_ids.c.room_id == bindparam("room_id", type_=Text),
    event_txn_ids.c.event_id == bindparam("event_id", type_=Text),
)


async def _state_at(conn: Conn, room_id: str, position: int) -> dict[StateKey, str] | None:
    group = await conn.fetch_val(_GROUP_AT, {"room_id": room_id, "to_pos": position})
    return None if group is None else await read_group_state(conn, int(group))


class SyncStore:
    """Reads for ``/sync``."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def snapshot(self, user_id: str, since_events: int | None) -> SyncSnapshot:
        """The stream positions, the user's memberships, and (with ``since_events``) its
        membership changes and the joined rooms with events in (since_events, now]."""

        async def work(conn: Conn) -> SyncSnapshot:
            positions = await current_positions(conn)
            rows = await conn.fetch_all(_CURRENT_MEMBERSHIPS, {"user_id": user_id})
            memberships = [MembershipRow(r[0], r[1] or "", r[2], int(r[3])) for r in rows]
            now = positions[StreamName.EVENTS]
            if since_events is None or since_events >= now:
                return SyncSnapshot(positions, memberships, [], set())
            window = {"user_id": user_id, "from_pos": since_events, "to_pos": now}
            changes = [
                MembershipRow(room_id, _membership_of(raw), event_id, int(stream))
                for room_id, raw, event_id, stream in await conn.fetch_all(
                    _MEMBERSHIP_CHANGES, window
                )
            ]
            rooms = {r[0] for r in await conn.fetch_all(_JOINED_ROOMS_WITH_EVENTS, window)}
            joined_before: set[str] = set()
            for room_id in sorted({c.room_id for c in changes if c.membership == "join"}):
                raw = await conn.fetch_val(
                    _MEMBERSHIP_AT,
                    {"user_id": user_id, "room_id": room_id, "to_pos": since_events},
                )
                if raw is not None and _membership_of(str(raw)) == "join":
                    joined_before.add(room_id)
            return SyncSnapshot(positions, memberships, changes, rooms, frozenset(joined_before))

        return await self._db.read(work, name="sync_snapshot")

    async def current_memberships(self, user_id: str) -> list[MembershipRow]:
        """The user's current membership in every room where it has a member event."""

        async def work(conn: Conn) -> list[MembershipRow]:
            rows = await conn.fetch_all(_CURRENT_MEMBERSHIPS, {"user_id": user_id})
            return [MembershipRow(r[0], r[1] or "", r[2], int(r[3])) for r in rows]

        return await self._db.read(work, name="sync_current_memberships")

    async def membership_changes(
        self, user_id: str, from_pos: int, to_pos: int
    ) -> list[MembershipRow]:
        """The user's membership events with stream position in (from_pos, to_pos], oldest first."""

        async def work(conn: Conn) -> list[MembershipRow]:
            rows = await conn.fetch_all(
                _MEMBERSHIP_CHANGES, {"user_id": user_id, "from_pos": from_pos, "to_pos": to_pos}
            )
            out = []
            for room_id, raw, event_id, stream in rows:
                membership = _membership_of(raw)
                out.append(MembershipRow(room_id, membership, event_id, int(stream)))
            return out

        return await self._db.read(work, name="sync_membership_changes")

    async def joined_rooms_with_events(self, user_id: str, from_pos: int, to_pos: int) -> set[str]:
        """Rooms the user is joined to now that have events in (from_pos, to_pos]."""

        async def work(conn: Conn) -> set[str]:
            rows = await conn.fetch_all(
                _JOINED_ROOMS_WITH_EVENTS,
                {"user_id": user_id, "from_pos": from_pos, "to_pos": to_pos},
            )
            return {r[0] for r in rows}

        return await self._db.read(work, name="sync_rooms_with_events")

    async def load_room(
        self, room_id: str, *, from_pos: int | None, to_pos: int, limit: int
    ) -> RoomWindow:
        """The newest ``limit`` + 1 events of the room in (from_pos, to_pos] (from the room's
        start when ``from_pos`` is None)."""
        lower = -1 if from_pos is None else from_pos

        async def work(conn: Conn) -> RoomWindow:
            rows = await conn.fetch_all(
                _WINDOW,
                {"room_id": room_id, "from_pos": lower, "to_pos": to_pos, "limit": limit + 1},
            )
            timeline = [decode_event_row(r) for r in rows]
            return RoomWindow(timeline, len(timeline) <= limit)

        return await self._db.read(work, name="sync_load_room")

    async def states_at(
        self, room_id: str, positions: Sequence[int]
    ) -> list[dict[StateKey, str] | None]:
        """The room state after its newest event at or before each of ``positions`` (None: no
        event yet), in one unit of work."""

        async def work(conn: Conn) -> list[dict[StateKey, str] | None]:
            return [await _state_at(conn, room_id, p) for p in positions]

        return await self._db.read(work, name="sync_states_at")

    async def older_events(
        self, room_id: str, *, from_pos: int | None, before_pos: int, limit: int
    ) -> list[StoredEvent]:
        """Up to ``limit`` events of the room in (from_pos, before_pos), newest first (for
        filling a filtered timeline)."""
        lower = -1 if from_pos is None else from_pos

        async def work(conn: Conn) -> list[StoredEvent]:
            rows = await conn.fetch_all(
                _WINDOW,
                {"room_id": room_id, "from_pos": lower, "to_pos": before_pos - 1, "limit": limit},
            )
            return [decode_event_row(r) for r in rows]

        return await self._db.read(work, name="sync_older_events")

    async def joined_members(self, room_id: str) -> list[str]:
        """The users joined to the room now."""

        async def work(conn: Conn) -> list[str]:
            return [str(r[0]) for r in await conn.fetch_all(_JOINED_MEMBERS, {"room_id": room_id})]

        return await self._db.read(work, name="sync_joined_members")

    async def summary(self, room_id: str, user_id: str) -> tuple[dict[str, int], list[str] | None]:
        """Member counts by membership, and up to 5 hero candidates (other joined or invited
        members, by user ID) for the room summary; no heroes (None) when the room has a name or
        a canonical alias (spec: ``m.heroes`` is for rooms without either)."""

        async def work(conn: Conn) -> tuple[dict[str, int], list[str] | None]:
            counts = {
                str(m): int(n)
                for m, n in await conn.fetch_all(_MEMBER_COUNTS, {"room_id": room_id})
            }
            for event_type, raw in await conn.fetch_all(_NAMING_STATE, {"room_id": room_id}):
                content = orjson.loads(raw).get("content")
                key = "name" if event_type == "m.room.name" else "alias"
                if isinstance(content, dict) and content.get(key):
                    return counts, None
            rows = await conn.fetch_all(
                _HERO_CANDIDATES, {"room_id": room_id, "user_id": user_id, "limit": 50}
            )
            heroes = [r[0] for r in rows if r[1] in ("join", "invite")][:5]
            if not heroes:  # everyone left: name the room after those who were there
                heroes = [r[0] for r in rows][:5]
            return counts, heroes

        return await self._db.read(work, name="sync_summary")

    async def push_state(self, room_id: str, user_id: str) -> tuple[int, dict[str, StoredEvent]]:
        """What push rules read of the room's current state: the joined member count, and by
        type the user's own member event, the power levels and the create event."""

        async def work(conn: Conn) -> tuple[int, dict[str, StoredEvent]]:
            joined = 0
            for m, n in await conn.fetch_all(_MEMBER_COUNTS, {"room_id": room_id}):
                if m == "join":
                    joined = int(n)
            found: dict[str, StoredEvent] = {}
            for row in await conn.fetch_all(_PUSH_STATE, {"room_id": room_id, "user_id": user_id}):
                stored = decode_event_row(row)
                found[stored.event.type] = stored
            return joined, found

        return await self._db.read(work, name="sync_push_state")

    async def transaction_ids(
        self, user_id: str, device_id: str, room_id: str, event_ids: Sequence[str]
    ) -> dict[str, str]:
        """The client transaction IDs of those of ``event_ids`` the device sent."""
        if not event_ids:
            return {}

        async def work(conn: Conn) -> dict[str, str]:
            out: dict[str, str] = {}
            for event_id in event_ids:
                txn = await conn.fetch_val(
                    _TXN_ID,
                    {
                        "user_id": user_id,
                        "device_id": device_id,
                        "room_id": room_id,
                        "event_id": event_id,
                    },
                )
                if txn is not None:
                    out[event_id] = str(txn)
            return out

        return await self._db.read(work, name="sync_transaction_ids")


def _membership_of(raw: str) -> str:
    content = orjson.loads(raw).get("content")
    value = content.get("membership") if isinstance(content, dict) else None
    return value if isinstance(value, str) else ""
