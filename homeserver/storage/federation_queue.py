"""The outbound federation queue: ``federation_outbox``, ``federation_destinations``,
``federation_sender_position``.

The outbox holds, per destination, the local PDUs it has not yet accepted, by stream position;
a row is deleted only after the destination answered the transaction that carried it, so a
crash or a restart loses none. Which local events have been put into the outbox is one
position (``federation_sender_position``), moved in the same transaction as the rows it covers:
events committed while the sender was down are picked up from there when it starts.

Reads of ``events`` and ``current_state`` (the local events after a position, a room's joined
members) are the sender's view of the room tables: read-only, by stream position, the same way
``/sync`` reads them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from sqlalchemy import BigInteger, Integer, bindparam, case, delete, func, select, text

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import current_state, events
from homeserver.storage.schema import federation_destinations as dest_t
from homeserver.storage.schema import federation_outbox as outbox
from homeserver.storage.schema import federation_sender_position as position_t

__all__ = [
    "DestinationState",
    "FederationQueueStore",
    "LocalEvent",
    "OutboxRow",
    "QueuedPdu",
]

_POSITION_NAME = "events"


@dataclass(frozen=True, slots=True)
class LocalEvent:
    """A local event to be queued for the room's other servers."""

    stream_ordering: int
    event_id: str
    room_id: str
    type: str
    state_key: str | None
    #: for ``m.room.member`` events, the membership they set
    membership: str | None = None


@dataclass(frozen=True, slots=True)
class OutboxRow:
    destination: str
    stream_ordering: int
    room_id: str
    event_id: str


@dataclass(frozen=True, slots=True)
class QueuedPdu:
    stream_ordering: int
    room_id: str
    event_id: str
    #: the PDU as stored (canonical JSON)
    pdu_json: str


@dataclass(frozen=True, slots=True)
class DestinationState:
    destination: str
    failures: int
    retry_interval_ms: int
    retry_at_ts: int
    last_success_ts: int | None


_GET_POSITION = select(position_t.c.stream_ordering).where(position_t.c.name == _POSITION_NAME)
_MAX_STREAM = select(func.max(events.c.stream_ordering))
_SET_POSITION = text(
    "INSERT INTO federation_sender_position (name, stream_ordering) VALUES (:name, :pos) "
    "ON CONFLICT (name) DO UPDATE SET stream_ordering = excluded.stream_ordering"
).bindparams(bindparam("name"), bindparam("pos", type_=BigInteger))
def _membership(raw: object) -> str | None:
    if not isinstance(raw, str):
        return None
    try:
        content = orjson.loads(raw).get("content")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    value = content.get("membership") if isinstance(content, dict) else None
    return value if isinstance(value, str) else None


_LOCAL_AFTER = (
    select(
        events.c.stream_ordering,
        events.c.event_id,
        events.c.room_id,
        events.c.type,
        events.c.state_key,
        # the PDU of member events only: the sender needs their membership
        case((events.c.type == "m.room.member", events.c.json), else_=None),
    )
    .where(
        events.c.stream_ordering > bindparam("after", type_=BigInteger),
        events.c.sender.like(bindparam("sender_pattern")),
        events.c.outlier == False,  # noqa: E712 - SQL comparison
        events.c.rejected_reason.is_(None),
    )
    .order_by(events.c.stream_ordering)
    .limit(bindparam("limit", type_=Integer))
)
_JOINED = select(current_state.c.state_key).where(
    current_state.c.room_id == bindparam("room_id"),
    current_state.c.type == "m.room.member",
    current_state.c.membership == "join",
)
_ENQUEUE = text(
    "INSERT INTO federation_outbox (destination, stream_ordering, room_id, event_id) "
    "VALUES (:destination, :stream_ordering, :room_id, :event_id) "
    "ON CONFLICT (destination, stream_ordering) DO NOTHING"
).bindparams(
    bindparam("destination"),
    bindparam("stream_ordering", type_=BigInteger),
    bindparam("room_id"),
    bindparam("event_id"),
)
_PENDING_DESTINATIONS = select(outbox.c.destination).distinct()
_BATCH = (
    select(outbox.c.stream_ordering, outbox.c.room_id, outbox.c.event_id, events.c.json)
    .select_from(outbox.outerjoin(events, events.c.event_id == outbox.c.event_id))
    .where(outbox.c.destination == bindparam("destination"))
    .order_by(outbox.c.stream_ordering)
    .limit(bindparam("limit", type_=Integer))
)
_COUNT = select(func.count()).where(outbox.c.destination == bindparam("destination"))
_REMOVE_UP_TO = delete(outbox).where(
    outbox.c.destination == bindparam("destination"),
    outbox.c.stream_ordering <= bindparam("up_to", type_=BigInteger),
)
_REMOVE_ALL = delete(outbox).where(outbox.c.destination == bindparam("destination"))
_LATEST_PER_ROOM = (
    select(func.max(outbox.c.stream_ordering))
    .where(outbox.c.destination == bindparam("destination"))
    .group_by(outbox.c.room_id)
)
_KEEP_LATEST = delete(outbox).where(
    outbox.c.destination == bindparam("destination"),
    outbox.c.stream_ordering.not_in(_LATEST_PER_ROOM.scalar_subquery()),
)
_GET_DEST = select(
    dest_t.c.destination,
    dest_t.c.failures,
    dest_t.c.retry_interval_ms,
    dest_t.c.retry_at_ts,
    dest_t.c.last_success_ts,
).where(dest_t.c.destination == bindparam("destination"))
_SET_BACKOFF = text(
    "INSERT INTO federation_destinations "
    "(destination, failures, retry_interval_ms, retry_at_ts, last_success_ts) "
    "VALUES (:destination, :failures, :interval, :retry_at, NULL) "
    "ON CONFLICT (destination) DO UPDATE SET failures = excluded.failures, "
    "retry_interval_ms = excluded.retry_interval_ms, retry_at_ts = excluded.retry_at_ts"
).bindparams(
    bindparam("destination"),
    bindparam("failures", type_=Integer),
    bindparam("interval", type_=BigInteger),
    bindparam("retry_at", type_=BigInteger),
)
_SET_SUCCESS = text(
    "INSERT INTO federation_destinations "
    "(destination, failures, retry_interval_ms, retry_at_ts, last_success_ts) "
    "VALUES (:destination, 0, 0, 0, :now) "
    "ON CONFLICT (destination) DO UPDATE SET failures = 0, retry_interval_ms = 0, "
    "retry_at_ts = 0, last_success_ts = excluded.last_success_ts"
).bindparams(bindparam("destination"), bindparam("now", type_=BigInteger))


class FederationQueueStore:
    """The outbound queue and per-destination back-off (one sender process uses it)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def start_position(self) -> int:
        """The position local events have been queued up to; on the very first start, the
        newest event (history before federation existed is not sent)."""

        async def work(conn: Conn) -> int:
            pos = await conn.fetch_val(_GET_POSITION)
            if pos is not None:
                return int(pos)
            newest = await conn.fetch_val(_MAX_STREAM)
            start = int(newest) if newest is not None else 0
            await conn.execute(_SET_POSITION, {"name": _POSITION_NAME, "pos": start})
            return start

        return await self._db.run(work, name="federation_start_position")

    async def local_events_after(
        self, position: int, server_name: str, limit: int
    ) -> list[LocalEvent]:
        """Accepted, non-outlier events sent by our users after ``position``, in order."""

        async def work(conn: Conn) -> list[LocalEvent]:
            rows = await conn.fetch_all(
                _LOCAL_AFTER,
                {"after": position, "sender_pattern": f"%:{server_name}", "limit": limit},
            )
            return [
                LocalEvent(int(r[0]), str(r[1]), str(r[2]), str(r[3]), r[4], _membership(r[5]))
                for r in rows
            ]

        return await self._db.read(work, name="federation_local_events_after")

    async def joined_servers(self, room_id: str) -> set[str]:
        """The server names of the room's joined members in the current state."""

        async def work(conn: Conn) -> set[str]:
            rows = await conn.fetch_all(_JOINED, {"room_id": room_id})
            return {str(r[0]).split(":", 1)[1] for r in rows if ":" in str(r[0])}

        return await self._db.read(work, name="federation_joined_servers")

    async def enqueue(self, rows: Sequence[OutboxRow], position: int) -> None:
        """Add ``rows`` to the outbox and move the queued-up-to position, in one transaction."""

        async def work(conn: Conn) -> None:
            if rows:
                await conn.execute_many(
                    _ENQUEUE,
                    [
                        {
                            "destination": r.destination,
                            "stream_ordering": r.stream_ordering,
                            "room_id": r.room_id,
                            "event_id": r.event_id,
                        }
                        for r in rows
                    ],
                )
            await conn.execute(_SET_POSITION, {"name": _POSITION_NAME, "pos": position})

        await self._db.run(work, name="federation_enqueue")

    async def pending_destinations(self) -> list[str]:
        """Destinations with something in the outbox."""

        async def work(conn: Conn) -> list[str]:
            return [str(r[0]) for r in await conn.fetch_all(_PENDING_DESTINATIONS)]

        return await self._db.read(work, name="federation_pending_destinations")

    async def next_batch(self, destination: str, limit: int) -> list[QueuedPdu]:
        """The oldest ``limit`` queued PDUs of ``destination`` (an event that has disappeared
        from ``events`` comes back with an empty ``pdu_json``)."""

        async def work(conn: Conn) -> list[QueuedPdu]:
            rows = await conn.fetch_all(_BATCH, {"destination": destination, "limit": limit})
            return [
                QueuedPdu(int(r[0]), str(r[1]), str(r[2]), str(r[3] or ""))  # type: ignore[call-overload]
                for r in rows
            ]

        return await self._db.read(work, name="federation_next_batch")

    async def count(self, destination: str) -> int:
        async def work(conn: Conn) -> int:
            return int(await conn.fetch_val(_COUNT, {"destination": destination}))

        return await self._db.read(work, name="federation_outbox_count")

    async def remove_up_to(self, destination: str, stream_ordering: int) -> None:
        """Forget ``destination``'s queued PDUs up to ``stream_ordering`` (they were sent)."""

        async def work(conn: Conn) -> None:
            await conn.execute(
                _REMOVE_UP_TO, {"destination": destination, "up_to": stream_ordering}
            )

        await self._db.run(work, name="federation_remove_sent")

    async def remove_all(self, destination: str) -> None:
        async def work(conn: Conn) -> None:
            await conn.execute(_REMOVE_ALL, {"destination": destination})

        await self._db.run(work, name="federation_remove_all")

    async def keep_latest_per_room(self, destination: str) -> int:
        """Catch-up: keep only the newest queued PDU of each room; return how many were
        dropped (the destination fetches them with ``get_missing_events``)."""

        async def work(conn: Conn) -> int:
            return await conn.execute(_KEEP_LATEST, {"destination": destination})

        return await self._db.run(work, name="federation_keep_latest")

    async def destination(self, destination: str) -> DestinationState | None:
        async def work(conn: Conn) -> DestinationState | None:
            r = await conn.fetch_one(_GET_DEST, {"destination": destination})
            if r is None:
                return None
            return DestinationState(
                str(r[0]),
                int(r[1]),  # type: ignore[call-overload]
                int(r[2]),  # type: ignore[call-overload]
                int(r[3]),  # type: ignore[call-overload]
                None if r[4] is None else int(r[4]),  # type: ignore[call-overload]
            )

        return await self._db.read(work, name="federation_destination")

    async def set_backoff(
        self, destination: str, failures: int, interval_ms: int, retry_at_ts: int
    ) -> None:
        async def work(conn: Conn) -> None:
            await conn.execute(
                _SET_BACKOFF,
                {
                    "destination": destination,
                    "failures": failures,
                    "interval": interval_ms,
                    "retry_at": retry_at_ts,
                },
            )

        await self._db.run(work, name="federation_set_backoff")

    async def record_success(self, destination: str, now_ts: int) -> None:
        """The destination answered: no back-off."""

        async def work(conn: Conn) -> None:
            await conn.execute(_SET_SUCCESS, {"destination": destination, "now": now_ts})

        await self._db.run(work, name="federation_record_success")
