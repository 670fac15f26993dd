"""Read receipts: the ``receipts`` table, and the membership and event-order reads they need.

One row per ``(room, receipt type, user, thread)`` (``thread_id = ''`` for an unthreaded
receipt) holding the event it points at, the client's ``ts`` and the RECEIPTS stream position of
its last write. ``/sync`` reads "receipts written after position N" through the ``stream_id``
index, and the current receipts of a room through the primary key.

Receipts only move forward. :meth:`ReceiptStore.put_receipt` checks membership and the event
first, then allocates the stream position *before* reading the current receipt: the stream
row's lock serialises receipt writers (see ``stream_ids.py``), so two concurrent receipts for one
key cannot both read the old row and let the older event win. A write that would move a
receipt backwards raises internally and rolls back, which gives the position back.

Events are ordered by ``(depth, stream_ordering)``, the room's topological order as
``/messages`` walks it.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import BigInteger, Text, bindparam, select, text

from homeserver.storage.db import Conn, Database, Row
from homeserver.storage.schema import current_state, events, receipts
from homeserver.storage.stream_ids import next_position
from homeserver.streams import StreamName

__all__ = ["UNTHREADED", "EventOrder", "ReceiptRow", "ReceiptStore", "ReceiptWrite"]

#: The stored ``thread_id`` of an unthreaded receipt.
UNTHREADED = ""


@dataclass(frozen=True, slots=True)
class ReceiptRow:
    room_id: str
    receipt_type: str
    user_id: str
    #: :data:`UNTHREADED`, ``"main"`` or a thread root's event ID
    thread_id: str
    event_id: str
    ts: int
    stream_id: int


@dataclass(frozen=True, slots=True)
class EventOrder:
    """Where an event sits in its room's topological order."""

    room_id: str
    depth: int
    stream_ordering: int

    @property
    def key(self) -> tuple[int, int]:
        return (self.depth, self.stream_ordering)


@dataclass(frozen=True, slots=True)
class ReceiptWrite:
    """What :meth:`ReceiptStore.put_receipt` did.

    ``written``: stored at ``position``; ``not_newer``: the current receipt is at the same event
    or a later one (nothing stored); ``not_joined``: the user is not joined to the room;
    ``unknown_event``: no such event in that room.
    """

    outcome: Literal["written", "not_newer", "not_joined", "unknown_event"]
    position: int | None = None
    #: the stream position of the receipt's event (when written)
    event_position: int | None = None


_MEMBERSHIP = select(current_state.c.membership).where(
    current_state.c.room_id == bindparam("room_id"),
    current_state.c.type == "m.room.member",
    current_state.c.state_key == bindparam("user_id"),
)
_EVENT_ORDER = select(
    events.c.room_id, events.c.depth, events.c.stream_ordering, events.c.outlier
).where(events.c.event_id == bindparam("event_id"))
_CURRENT_ORDER = text(
    "SELECT e.depth, e.stream_ordering FROM receipts r JOIN events e ON e.event_id = r.event_id"
    " WHERE r.room_id = :room_id AND r.receipt_type = :receipt_type AND r.user_id = :user_id"
    " AND r.thread_id = :thread_id"
).bindparams(
    bindparam("room_id", type_=Text),
    bindparam("receipt_type", type_=Text),
    bindparam("user_id", type_=Text),
    bindparam("thread_id", type_=Text),
)
_READ_POSITIONS = text(
    "SELECT r.thread_id, MAX(e.stream_ordering) FROM receipts r"
    " JOIN events e ON e.event_id = r.event_id"
    " WHERE r.room_id = :room_id AND r.user_id = :user_id"
    " AND r.receipt_type IN ('m.read', 'm.read.private') GROUP BY r.thread_id"
).bindparams(bindparam("room_id", type_=Text), bindparam("user_id", type_=Text))
# The same SQL runs on both databases (UPSERT with ``excluded``).
_UPSERT = text(
    "INSERT INTO receipts (room_id, receipt_type, user_id, thread_id, event_id, ts, stream_id)"
    " VALUES (:room_id, :receipt_type, :user_id, :thread_id, :event_id, :ts, :stream_id)"
    " ON CONFLICT (room_id, receipt_type, user_id, thread_id) DO UPDATE SET"
    " event_id = excluded.event_id, ts = excluded.ts, stream_id = excluded.stream_id"
).bindparams(
    bindparam("room_id", type_=Text),
    bindparam("receipt_type", type_=Text),
    bindparam("user_id", type_=Text),
    bindparam("thread_id", type_=Text),
    bindparam("event_id", type_=Text),
    bindparam("ts", type_=BigInteger),
    bindparam("stream_id", type_=BigInteger),
)
_COLUMNS = (
    receipts.c.room_id,
    receipts.c.receipt_type,
    receipts.c.user_id,
    receipts.c.thread_id,
    receipts.c.event_id,
    receipts.c.ts,
    receipts.c.stream_id,
)
_IN_ROOM = (
    select(*_COLUMNS)
    .where(
        receipts.c.room_id == bindparam("room_id"),
        receipts.c.stream_id <= bindparam("upto", type_=BigInteger),
    )
    .order_by(receipts.c.stream_id)
)
_BETWEEN = (
    select(*_COLUMNS)
    .where(
        receipts.c.stream_id > bindparam("since", type_=BigInteger),
        receipts.c.stream_id <= bindparam("upto", type_=BigInteger),
    )
    .order_by(receipts.c.stream_id)
)
_ONE = select(*_COLUMNS).where(
    receipts.c.room_id == bindparam("room_id"),
    receipts.c.receipt_type == bindparam("receipt_type"),
    receipts.c.user_id == bindparam("user_id"),
    receipts.c.thread_id == bindparam("thread_id"),
)


def _row(r: Row) -> ReceiptRow:
    return ReceiptRow(r[0], r[1], r[2], r[3], r[4], int(r[5]), int(r[6]))


async def _event_order(conn: Conn, event_id: str) -> EventOrder | None:
    row = await conn.fetch_one(_EVENT_ORDER, {"event_id": event_id})
    if row is None or row[3]:  # unknown, or an outlier (not in the room's timeline)
        return None
    return EventOrder(str(row[0]), int(row[1]), int(row[2]))


class _NotNewer(Exception):
    """Internal: the receipt would not move forward; roll back to give the position back."""


class ReceiptStore:
    """Read and write receipts; membership and event-order reads for the live layer."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def is_joined(self, room_id: str, user_id: str) -> bool:
        """Whether ``user_id``'s current membership of ``room_id`` is ``join``."""

        async def work(conn: Conn) -> bool:
            membership = await conn.fetch_val(_MEMBERSHIP, {"room_id": room_id, "user_id": user_id})
            return bool(membership == "join")

        return await self._db.read(work, name="receipts_is_joined")

    async def event_order(self, event_id: str) -> EventOrder | None:
        """The room and topological position of a (non-outlier) event, or None."""

        async def work(conn: Conn) -> EventOrder | None:
            return await _event_order(conn, event_id)

        return await self._db.read(work, name="event_order")

    async def put_receipt(
        self,
        room_id: str,
        receipt_type: str,
        user_id: str,
        thread_id: str,
        event_id: str,
        ts: int,
    ) -> ReceiptWrite:
        """Move the receipt forward to ``event_id`` (checks membership and the event first)."""
        key = {
            "room_id": room_id,
            "receipt_type": receipt_type,
            "user_id": user_id,
            "thread_id": thread_id,
        }

        async def work(conn: Conn) -> ReceiptWrite:
            membership = await conn.fetch_val(_MEMBERSHIP, {"room_id": room_id, "user_id": user_id})
            if membership != "join":
                return ReceiptWrite("not_joined")
            order = await _event_order(conn, event_id)
            if order is None or order.room_id != room_id:
                return ReceiptWrite("unknown_event")
            position = await next_position(conn, StreamName.RECEIPTS)
            current = await conn.fetch_one(_CURRENT_ORDER, key)
            if current is not None and (int(current[0]), int(current[1])) >= order.key:
                raise _NotNewer()
            await conn.execute(
                _UPSERT, {**key, "event_id": event_id, "ts": ts, "stream_id": position}
            )
            return ReceiptWrite("written", position, order.stream_ordering)

        try:
            return await self._db.run(work, name="put_receipt")
        except _NotNewer:
            return ReceiptWrite("not_newer")

    async def get_receipt(
        self, room_id: str, receipt_type: str, user_id: str, thread_id: str = UNTHREADED
    ) -> ReceiptRow | None:
        async def work(conn: Conn) -> Row | None:
            return await conn.fetch_one(
                _ONE,
                {
                    "room_id": room_id,
                    "receipt_type": receipt_type,
                    "user_id": user_id,
                    "thread_id": thread_id,
                },
            )

        row = await self._db.read(work, name="get_receipt")
        return None if row is None else _row(row)

    async def read_positions(self, user_id: str, room_id: str) -> dict[str, int]:
        """Where the user has read up to in the room, per thread ID (:data:`UNTHREADED`,
        ``"main"`` or a thread root): the stream position of the newer of its ``m.read`` and
        ``m.read.private`` receipts (spec: "the receipt which is more recent/ahead must be
        used")."""

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_READ_POSITIONS, {"room_id": room_id, "user_id": user_id})

        rows = await self._db.read(work, name="receipt_read_positions")
        return {str(r[0]): int(r[1]) for r in rows if r[1] is not None}

    async def receipts_in_rooms(self, room_ids: Collection[str], upto: int) -> list[ReceiptRow]:
        """Every receipt of ``room_ids`` written at or before position ``upto`` (initial sync)."""
        ids = list(dict.fromkeys(room_ids))

        async def work(conn: Conn) -> list[Row]:
            rows: list[Row] = []
            for room_id in ids:
                rows.extend(await conn.fetch_all(_IN_ROOM, {"room_id": room_id, "upto": upto}))
            return rows

        return [_row(r) for r in await self._db.read(work, name="receipts_in_rooms")]

    async def receipts_between(self, since: int, upto: int) -> list[ReceiptRow]:
        """Every receipt written in ``(since, upto]``, oldest first (incremental sync).

        Reads the ``stream_id`` index: the cost follows the receipts written in the window,
        not the number of rooms anyone is in.
        """

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_BETWEEN, {"since": since, "upto": upto})

        return [_row(r) for r in await self._db.read(work, name="receipts_between")]
