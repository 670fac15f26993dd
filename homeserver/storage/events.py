"""The event graph: events, their edges, forward extremities, state groups and current state.

Design (docs/discussion/rooms_storage.md has the full argument and the growth bound):

- ``events`` holds each PDU's JSON exactly as built or received, plus server-local metadata:
  depth (topological ordering), ``stream_ordering`` (the EVENTS stream position), outlier and
  rejection flags, and ``state_group``: the group holding the room state *after* the event.
- Room state is stored as **state groups**: a group is either a full *snapshot* or a *delta*
  over a previous group. A new delta is taken while the rows in the deltas since the chain's
  snapshot stay within ``max(MIN_CHAIN_ROWS, snapshot size)``; past that, a new snapshot. Each
  snapshot is therefore paid for by at least as many delta rows written before it, so the rows
  grow linearly with the number of state changes (≤ 3 rows per change + one initial snapshot),
  and reading a group reads at most about twice the room's state.
- Non-state events do not create a group: they point at the group of the state before them.
- ``current_state`` mirrors the state after the room's newest event, membership denormalised.

:meth:`EventStore.persist_event` writes one event with all of that in one unit of work and
allocates its EVENTS stream position last (it serialises writers; see ``stream_ids.py``).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from sqlalchemy import (
    BigInteger,
    Text,
    and_,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    update,
)

from federation.core.canonicaljson import encode_canonical_json
from federation.core.events import Event, StateKey
from federation.core.redaction import redact
from federation.core.room_versions import RoomVersion, get_room_version
from homeserver.storage.db import Conn, Database, Row
from homeserver.storage.schema import (
    current_state,
    event_auth,
    event_edges,
    event_forward_extremities,
    event_redactions,
    event_relations,
    event_txn_ids,
    events,
    rooms,
    state_group_entries,
    state_groups,
)
from homeserver.storage.search import index_event_for_search
from homeserver.storage.stream_ids import next_position
from homeserver.streams import StreamName

__all__ = [
    "MIN_CHAIN_ROWS",
    "CreationContext",
    "EventStore",
    "Extremity",
    "NewEvent",
    "PersistResult",
    "PrefetchedStateResStore",
    "RoomRow",
    "StoredEvent",
    "TxnKey",
    "relation_of",
]

#: Delta rows a chain may always accumulate before a new snapshot (small rooms).
MIN_CHAIN_ROWS = 100

StateMap = Mapping[StateKey, str]


@dataclass(frozen=True, slots=True)
class RoomRow:
    room_id: str
    room_version: str
    creator: str
    is_public: bool
    created_ts: int


@dataclass(frozen=True, slots=True)
class StoredEvent:
    """An event and what this server knows beside it."""

    event: Event
    stream_ordering: int
    depth: int
    outlier: bool
    rejected_reason: str | None
    redacted: bool
    state_group: int | None


@dataclass(frozen=True, slots=True)
class TxnKey:
    """A client's transaction ID for a send, scoped to its device and the request path's room
    (spec: "the transaction ID is the same ... and the path of the HTTP request is the same")."""

    user_id: str
    device_id: str
    room_id: str
    txn_id: str


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to persist and the state before it.

    Attributes:
        event: the event (checked by the caller).
        state_before: the room state before the event; None means "the state of
            ``state_group_before``", read only if a new snapshot is due.
        state_group_before: a group whose state is exactly the state before, or None (the
            state came from state resolution); the new group is a delta over it when possible.
        txn: the client's transaction ID, for idempotent sends.
        new_room: for the create event of a room this server creates: the room's row.
    """

    event: Event
    state_before: StateMap | None
    state_group_before: int | None
    txn: TxnKey | None = None
    new_room: RoomRow | None = None


@dataclass(frozen=True, slots=True)
class PersistResult:
    event_id: str
    stream_ordering: int
    #: True when the transaction ID was already used: ``event_id`` is the earlier event.
    existing: bool = False


@dataclass(frozen=True, slots=True)
class Extremity:
    event_id: str
    depth: int
    state_group: int | None


@dataclass(frozen=True, slots=True)
class CreationContext:
    room: RoomRow | None
    extremities: list[Extremity]
    #: current state events by key (only the keys asked for, and the create event)
    current: dict[StateKey, StoredEvent]
    #: the event created by an earlier use of the transaction ID
    txn_event_id: str | None


# --- statements ---------------------------------------------------------------------------------

_INSERT_ROOM = insert(rooms).values({c.name: bindparam(c.name) for c in rooms.columns})
_GET_ROOM = select(
    rooms.c.room_id, rooms.c.room_version, rooms.c.creator, rooms.c.is_public, rooms.c.created_ts
).where(rooms.c.room_id == bindparam("room_id"))

_INSERT_EVENT = insert(events).values({c.name: bindparam(c.name) for c in events.columns})
_INSERT_EDGE = insert(event_edges).values(
    event_id=bindparam("event_id"), prev_event_id=bindparam("prev_event_id")
)
_INSERT_AUTH = insert(event_auth).values(
    event_id=bindparam("event_id"), auth_event_id=bindparam("auth_event_id")
)
_DELETE_EXTREMITY = delete(event_forward_extremities).where(
    event_forward_extremities.c.room_id == bindparam("room_id"),
    event_forward_extremities.c.event_id == bindparam("event_id"),
)
_INSERT_EXTREMITY = insert(event_forward_extremities).values(
    room_id=bindparam("room_id"), event_id=bindparam("event_id")
)
_GET_EXTREMITIES = (
    select(events.c.event_id, events.c.depth, events.c.state_group)
    .select_from(
        event_forward_extremities.join(
            events, events.c.event_id == event_forward_extremities.c.event_id
        )
    )
    .where(event_forward_extremities.c.room_id == bindparam("room_id"))
    .order_by(events.c.depth, events.c.stream_ordering)
)

_GET_GROUP = select(state_groups.c.base_size, state_groups.c.chain_rows).where(
    state_groups.c.id == bindparam("id", type_=BigInteger)
)
_INSERT_GROUP = insert(state_groups).values(
    {c.name: bindparam(c.name) for c in state_groups.columns}
)
_INSERT_ENTRY = insert(state_group_entries).values(
    {c.name: bindparam(c.name) for c in state_group_entries.columns}
)
# The group, then its prev_group, ... back to the snapshot; n = steps from the asked-for group.
_GROUP_STATE = text(
    "WITH RECURSIVE chain(id, n) AS ("
    " SELECT id, 0 FROM state_groups WHERE id = :group"
    " UNION ALL"
    " SELECT g.prev_group, chain.n + 1 FROM state_groups g JOIN chain ON g.id = chain.id"
    " WHERE g.prev_group IS NOT NULL"
    ") SELECT chain.n, e.type, e.state_key, e.event_id"
    " FROM chain JOIN state_group_entries e ON e.state_group = chain.id"
).bindparams(bindparam("group", type_=BigInteger))
_COUNT_STATE_ROWS = select(func.count()).select_from(state_group_entries)

_UPSERT_CURRENT = text(
    "INSERT INTO current_state (room_id, type, state_key, event_id, membership)"
    " VALUES (:room_id, :type, :state_key, :event_id, :membership)"
    " ON CONFLICT (room_id, type, state_key) DO UPDATE"
    " SET event_id = excluded.event_id, membership = excluded.membership"
).bindparams(
    bindparam("room_id", type_=Text),
    bindparam("type", type_=Text),
    bindparam("state_key", type_=Text),
    bindparam("event_id", type_=Text),
    bindparam("membership", type_=Text),
)
_CLEAR_CURRENT = delete(current_state).where(current_state.c.room_id == bindparam("room_id"))
_CURRENT_IDS = select(
    current_state.c.type, current_state.c.state_key, current_state.c.event_id
).where(current_state.c.room_id == bindparam("room_id"))
_ROOMS_FOR_USER = (
    select(current_state.c.room_id)
    .where(
        current_state.c.state_key == bindparam("user_id"),
        current_state.c.type == "m.room.member",
        current_state.c.membership == bindparam("membership"),
    )
    .order_by(current_state.c.room_id)
)
_MEMBERS = (
    select(current_state.c.state_key, current_state.c.membership, current_state.c.event_id)
    .where(current_state.c.room_id == bindparam("room_id"), current_state.c.type == "m.room.member")
    .order_by(current_state.c.state_key)
)

_GET_TXN = select(event_txn_ids.c.event_id).where(
    event_txn_ids.c.user_id == bindparam("user_id"),
    event_txn_ids.c.device_id == bindparam("device_id"),
    event_txn_ids.c.room_id == bindparam("room_id"),
    event_txn_ids.c.txn_id == bindparam("txn_id"),
)
_INSERT_TXN = insert(event_txn_ids).values(
    {c.name: bindparam(c.name) for c in event_txn_ids.columns}
)

_EVENT_COLUMNS = (
    events.c.event_id,
    rooms.c.room_version,
    events.c.json,
    events.c.stream_ordering,
    events.c.depth,
    events.c.outlier,
    events.c.rejected_reason,
    events.c.redacted,
    events.c.state_group,
)
_EVENTS_JOIN = events.join(rooms, rooms.c.room_id == events.c.room_id)
_GET_EVENT = (
    select(*_EVENT_COLUMNS)
    .select_from(_EVENTS_JOIN)
    .where(events.c.event_id == bindparam("event_id"))
)
_MARK_REDACTED = (
    update(events)
    .where(events.c.event_id == bindparam("event_id"), events.c.room_id == bindparam("room_id"))
    .values(redacted=True)
)
# relations (``/relations``, bundled aggregations, ``/threads``) and redactions' back-references
_INSERT_RELATION = insert(event_relations).values(
    {c.name: bindparam(c.name) for c in event_relations.columns}
)
_INSERT_REDACTION = insert(event_redactions).values(
    {c.name: bindparam(c.name) for c in event_redactions.columns}
)
# a redacted child loses its relation (its content, m.relates_to included, is gone)
_DELETE_RELATION = delete(event_relations).where(
    event_relations.c.event_id == bindparam("event_id"),
    event_relations.c.room_id == bindparam("room_id"),
)
_REDACTED_ALREADY = select(event_redactions.c.event_id).where(
    event_redactions.c.redacts == bindparam("event_id")
)
# one current state event, with the event, in one statement (the creation path's hot read)
_CURRENT_EVENT_ONE = (
    select(*_EVENT_COLUMNS)
    .select_from(_EVENTS_JOIN.join(current_state, current_state.c.event_id == events.c.event_id))
    .where(
        current_state.c.room_id == bindparam("room_id"),
        current_state.c.type == bindparam("type"),
        current_state.c.state_key == bindparam("state_key"),
    )
)
_STATE_GROUP_OF = select(events.c.state_group).where(events.c.event_id == bindparam("event_id"))
_CURRENT_EVENTS = (
    select(*_EVENT_COLUMNS)
    .select_from(_EVENTS_JOIN.join(current_state, current_state.c.event_id == events.c.event_id))
    .where(current_state.c.room_id == bindparam("room_id"))
)

_D = bindparam("depth", type_=BigInteger)
_S = bindparam("stream", type_=BigInteger)
_PAGE_BACK = (
    select(*_EVENT_COLUMNS)
    .select_from(_EVENTS_JOIN)
    .where(
        events.c.room_id == bindparam("room_id"),
        events.c.outlier.is_(False),
        or_(events.c.depth < _D, and_(events.c.depth == _D, events.c.stream_ordering < _S)),
    )
    .order_by(events.c.depth.desc(), events.c.stream_ordering.desc())
    .limit(bindparam("limit", type_=BigInteger))
)
_PAGE_FORWARD = (
    select(*_EVENT_COLUMNS)
    .select_from(_EVENTS_JOIN)
    .where(
        events.c.room_id == bindparam("room_id"),
        events.c.outlier.is_(False),
        or_(events.c.depth > _D, and_(events.c.depth == _D, events.c.stream_ordering > _S)),
    )
    .order_by(events.c.depth, events.c.stream_ordering)
    .limit(bindparam("limit", type_=BigInteger))
)
_TS = bindparam("ts", type_=BigInteger)
# timestamp_to_event: the nearest events at or after (f) / at or before (b) a time
_AT_OR_AFTER_TS = (
    select(*_EVENT_COLUMNS)
    .select_from(_EVENTS_JOIN)
    .where(
        events.c.room_id == bindparam("room_id"),
        events.c.outlier.is_(False),
        events.c.origin_server_ts >= _TS,
    )
    .order_by(events.c.origin_server_ts, events.c.stream_ordering)
    .limit(bindparam("limit", type_=BigInteger))
    .offset(bindparam("offset", type_=BigInteger))
)
_AT_OR_BEFORE_TS = (
    select(*_EVENT_COLUMNS)
    .select_from(_EVENTS_JOIN)
    .where(
        events.c.room_id == bindparam("room_id"),
        events.c.outlier.is_(False),
        events.c.origin_server_ts <= _TS,
    )
    .order_by(events.c.origin_server_ts.desc(), events.c.stream_ordering.desc())
    .limit(bindparam("limit", type_=BigInteger))
    .offset(bindparam("offset", type_=BigInteger))
)
_LAST_AT_STREAM = (
    select(*_EVENT_COLUMNS)
    .select_from(_EVENTS_JOIN)
    .where(
        events.c.room_id == bindparam("room_id"),
        events.c.outlier.is_(False),
        events.c.stream_ordering <= _S,
    )
    .order_by(events.c.stream_ordering.desc())
    .limit(1)
)
_TXN_OF_EVENT = select(event_txn_ids.c.txn_id).where(
    event_txn_ids.c.event_id == bindparam("event_id"),
    event_txn_ids.c.user_id == bindparam("user_id"),
    event_txn_ids.c.device_id == bindparam("device_id"),
)
# The auth chain of one event (the event itself is not in it).
_AUTH_CHAIN = text(
    "WITH RECURSIVE chain(event_id) AS ("
    " SELECT auth_event_id FROM event_auth WHERE event_id = :event_id"
    " UNION"
    " SELECT a.auth_event_id FROM event_auth a JOIN chain ON a.event_id = chain.event_id"
    ") SELECT event_id FROM chain"
).bindparams(bindparam("event_id", type_=Text))

#: A position in a room's topological order: (depth, stream_ordering).
TopoPosition = tuple[int, int]


def _stored(row: Row) -> StoredEvent:
    event_id, version, raw, stream, depth, outlier, rejected, redacted, group = row
    room_version = get_room_version(version)
    try:
        pdu = orjson.loads(raw)
    except orjson.JSONDecodeError:  # e.g. an integer beyond 64 bits in an old room version
        pdu = json.loads(raw)
    if redacted:
        pdu = redact(room_version, pdu)  # the stored JSON stays as signed; readers see this
    event = Event(room_version, pdu, event_id)
    return StoredEvent(event, int(stream), int(depth), outlier, rejected, redacted, group)


def relation_of(event: Event) -> tuple[str, str, str | None] | None:
    """``(parent event ID, rel_type, annotation key)`` of the event's ``m.relates_to``, or None
    when it has none with a ``rel_type`` (spec: Forming relationships between events; a rich
    reply's ``m.in_reply_to`` alone is not a relation here)."""
    relates = event.content.get("m.relates_to")
    if not isinstance(relates, Mapping):
        return None
    parent, rel_type = relates.get("event_id"), relates.get("rel_type")
    if not isinstance(parent, str) or not isinstance(rel_type, str):
        return None
    key = relates.get("key") if rel_type == "m.annotation" else None
    return parent, rel_type, key if isinstance(key, str) else None


async def _index_relations(conn: Conn, event: Event, room_id: str, stream: int) -> None:
    """Index a persisted event's relation and, for a redaction, what it redacts (and drop the
    redacted event's relation). An event whose redaction arrived before it gets no relation."""
    if event.type == "m.room.redaction" and event.redacts is not None:
        await conn.execute(
            _INSERT_REDACTION,
            {"event_id": event.event_id, "redacts": event.redacts, "room_id": room_id},
        )
        await conn.execute(_DELETE_RELATION, {"event_id": event.redacts, "room_id": room_id})
    relation = relation_of(event)
    if relation is None:
        return
    if await conn.fetch_one(_REDACTED_ALREADY, {"event_id": event.event_id}) is not None:
        return
    parent, rel_type, key = relation
    await conn.execute(
        _INSERT_RELATION,
        {
            "event_id": event.event_id,
            "relates_to_id": parent,
            "rel_type": rel_type,
            "aggregation_key": key,
            "room_id": room_id,
            "type": event.type,
            "sender": event.sender,
            "depth": event.depth,
            "stream_ordering": stream,
        },
    )


def _membership(event: Event) -> str | None:
    if event.type != "m.room.member":
        return None
    value = event.content.get("membership")
    return value if isinstance(value, str) else None


async def _group_state(conn: Conn, group: int) -> dict[StateKey, str]:
    rows = await conn.fetch_all(_GROUP_STATE, {"group": group})
    state: dict[StateKey, str | None] = {}
    # apply the snapshot first, then each delta towards the asked-for group
    for _n, typ, key, event_id in sorted(rows, key=lambda r: -int(r[0])):
        state[(typ, key)] = event_id
    return {k: v for k, v in state.items() if v is not None}


async def _auth_chain(conn: Conn, event_ids: Iterable[str]) -> set[str]:
    out: set[str] = set()
    for event_id in event_ids:
        out.update(r[0] for r in await conn.fetch_all(_AUTH_CHAIN, {"event_id": event_id}))
    return out


class PrefetchedStateResStore:
    """A :class:`~federation.core.stateres.StateResStore` over events loaded beforehand."""

    def __init__(
        self, events: Mapping[str, StoredEvent], auth_chains: Mapping[str, AbstractSet[str]]
    ) -> None:
        self._events = events
        self._chains = auth_chains

    def get_events(self, event_ids: Collection[str]) -> Mapping[str, Event]:
        return {e: self._events[e].event for e in event_ids if e in self._events}

    def get_rejected(self, event_ids: Collection[str]) -> AbstractSet[str]:
        return {
            e
            for e in event_ids
            if e in self._events and self._events[e].rejected_reason is not None
        }

    def get_auth_chain(self, event_ids: Collection[str]) -> AbstractSet[str]:
        out: set[str] = set()
        for e in event_ids:
            out |= self._chains.get(e, set())
        return out


class EventStore:
    """Events, the room graph and room state. One unit of work per method."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- writing --------------------------------------------------------------------------------

    async def persist_event(self, new: NewEvent) -> PersistResult:
        """Store ``new.event`` with its edges, state group, extremity and current-state updates
        and its stream position, atomically.

        With ``new.txn`` set and already used, nothing is written and the earlier event is
        returned (``existing=True``).
        """
        event = new.event
        room_version = event.room_version
        room_id = new.new_room.room_id if new.new_room is not None else event.room_id
        key = event.state_tuple
        membership = _membership(event)
        raw = encode_canonical_json(event.pdu, strict=room_version.strict_canonical_json).decode()
        auth_ids = _auth_edges(room_version, event, room_id)

        async def work(conn: Conn) -> PersistResult:
            if new.txn is not None:
                earlier = await conn.fetch_val(_GET_TXN, _txn_params(new.txn))
                if earlier is not None:
                    return PersistResult(str(earlier), 0, existing=True)
            if new.new_room is not None:
                await conn.execute(_INSERT_ROOM, _room_params(new.new_room))
            reuse_group = key is None and new.state_group_before is not None
            snapshot = True
            base_size = chain_rows = 0
            delta: dict[StateKey, str] = {key: event.event_id} if key is not None else {}
            if not reuse_group and new.state_group_before is not None:
                prev = await conn.fetch_one(_GET_GROUP, {"id": new.state_group_before})
                if prev is not None:
                    base_size, prev_rows = int(prev[0]), int(prev[1])
                    chain_rows = prev_rows + len(delta)
                    snapshot = chain_rows > max(MIN_CHAIN_ROWS, base_size)
            state_after: dict[StateKey, str] = {}
            if new.state_before is not None:
                state_after.update(new.state_before)
            elif snapshot and not reuse_group and new.state_group_before is not None:
                state_after.update(await _group_state(conn, new.state_group_before))
            state_after.update(delta)
            # Everything above reads; allocate the stream position last (it serialises writers).
            stream = await next_position(conn, StreamName.EVENTS)
            if reuse_group:
                group = new.state_group_before
            else:
                group = stream
                entries = state_after if snapshot else delta
                await conn.execute(
                    _INSERT_GROUP,
                    {
                        "id": group,
                        "room_id": room_id,
                        "event_id": event.event_id,
                        "prev_group": None if snapshot else new.state_group_before,
                        "base_size": len(state_after) if snapshot else base_size,
                        "chain_rows": 0 if snapshot else chain_rows,
                    },
                )
                if entries:
                    await conn.execute_many(
                        _INSERT_ENTRY,
                        [
                            {"state_group": group, "type": t, "state_key": k, "event_id": e}
                            for (t, k), e in entries.items()
                        ],
                    )
            await conn.execute(
                _INSERT_EVENT,
                {
                    "event_id": event.event_id,
                    "room_id": room_id,
                    "type": event.type,
                    "state_key": event.state_key,
                    "sender": event.sender,
                    "json": raw,
                    "depth": event.depth,
                    "origin_server_ts": event.origin_server_ts,
                    "stream_ordering": stream,
                    "outlier": False,
                    "rejected_reason": None,
                    "redacted": False,
                    "state_group": group,
                },
            )
            prevs = list(dict.fromkeys(event.prev_event_ids))
            if prevs:
                await conn.execute_many(
                    _INSERT_EDGE, [{"event_id": event.event_id, "prev_event_id": p} for p in prevs]
                )
                await conn.execute_many(
                    _DELETE_EXTREMITY, [{"room_id": room_id, "event_id": p} for p in prevs]
                )
            if auth_ids:
                await conn.execute_many(
                    _INSERT_AUTH,
                    [{"event_id": event.event_id, "auth_event_id": a} for a in auth_ids],
                )
            await conn.execute(_INSERT_EXTREMITY, {"room_id": room_id, "event_id": event.event_id})
            if new.state_group_before is None and new.new_room is None:
                # the state before came from resolution: the current state is all of it
                await conn.execute(_CLEAR_CURRENT, {"room_id": room_id})
                rows = state_after.items()
            else:
                rows = delta.items()
            for (t, k), e in rows:
                m = membership if e == event.event_id else None
                if t == "m.room.member" and e != event.event_id:
                    other = await conn.fetch_one(_GET_EVENT, {"event_id": e})
                    m = _membership(_stored(other).event) if other is not None else None
                await conn.execute(
                    _UPSERT_CURRENT,
                    {"room_id": room_id, "type": t, "state_key": k, "event_id": e, "membership": m},
                )
            if event.type == "m.room.redaction" and event.redacts is not None:
                # applied when read (the JSON column keeps what was signed)
                await conn.execute(_MARK_REDACTED, {"event_id": event.redacts, "room_id": room_id})
            await _index_relations(conn, event, room_id, stream)
            await index_event_for_search(conn, event, room_id, stream)
            if new.txn is not None:
                await conn.execute(
                    _INSERT_TXN,
                    {
                        **_txn_params(new.txn),
                        "event_id": event.event_id,
                        "created_ts": event.origin_server_ts,
                    },
                )
            return PersistResult(event.event_id, stream)

        return await self._db.run(work, name="persist_event")

    # --- reading --------------------------------------------------------------------------------

    async def get_room(self, room_id: str) -> RoomRow | None:
        async def work(conn: Conn) -> Row | None:
            return await conn.fetch_one(_GET_ROOM, {"room_id": room_id})

        row = await self._db.read(work, name="get_room")
        return None if row is None else RoomRow(*row)

    async def get_event(self, event_id: str) -> StoredEvent | None:
        return (await self.get_events([event_id])).get(event_id)

    async def get_events(self, event_ids: Iterable[str]) -> dict[str, StoredEvent]:
        """The known events among ``event_ids``."""
        ids = list(dict.fromkeys(event_ids))

        async def work(conn: Conn) -> list[Row]:
            rows = []
            for event_id in ids:
                row = await conn.fetch_one(_GET_EVENT, {"event_id": event_id})
                if row is not None:
                    rows.append(row)
            return rows

        return {row[0]: _stored(row) for row in await self._db.read(work, name="get_events")}

    async def get_creation_context(
        self, room_id: str, keys: Sequence[StateKey], txn: TxnKey | None
    ) -> CreationContext:
        """What building an event on the room's current tip needs, in one read: the room, its
        forward extremities, the current state events at ``keys`` (and the create event), and
        the event an earlier use of ``txn`` created."""
        wanted = list(dict.fromkeys([*keys, ("m.room.create", "")]))

        async def work(conn: Conn) -> CreationContext:
            earlier = None
            if txn is not None:
                earlier = await conn.fetch_val(_GET_TXN, _txn_params(txn))
            room_row = await conn.fetch_one(_GET_ROOM, {"room_id": room_id})
            rows = await conn.fetch_all(_GET_EXTREMITIES, {"room_id": room_id})
            found: dict[StateKey, StoredEvent] = {}
            for t, k in wanted:
                row = await conn.fetch_one(
                    _CURRENT_EVENT_ONE, {"room_id": room_id, "type": t, "state_key": k}
                )
                if row is not None:
                    found[(t, k)] = _stored(row)
            return CreationContext(
                None if room_row is None else RoomRow(*room_row),
                [Extremity(r[0], int(r[1]), r[2]) for r in rows],
                found,
                None if earlier is None else str(earlier),
            )

        return await self._db.read(work, name="get_creation_context")

    async def get_txn_event_id(self, txn: TxnKey) -> str | None:
        async def work(conn: Conn) -> Any:
            return await conn.fetch_val(_GET_TXN, _txn_params(txn))

        found = await self._db.read(work, name="get_txn_event_id")
        return None if found is None else str(found)

    async def get_forward_extremities(self, room_id: str) -> list[Extremity]:
        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_GET_EXTREMITIES, {"room_id": room_id})

        rows = await self._db.read(work, name="get_forward_extremities")
        return [Extremity(r[0], int(r[1]), r[2]) for r in rows]

    async def get_state_group_ids(self, group: int) -> dict[StateKey, str]:
        async def work(conn: Conn) -> dict[StateKey, str]:
            return await _group_state(conn, group)

        return await self._db.read(work, name="get_state_group_ids")

    async def get_state_ids_after(self, event_id: str) -> dict[StateKey, str] | None:
        """The room state after ``event_id`` (None: unknown event or an outlier)."""

        async def work(conn: Conn) -> dict[StateKey, str] | None:
            group = await conn.fetch_val(_STATE_GROUP_OF, {"event_id": event_id})
            return None if group is None else await _group_state(conn, int(group))

        return await self._db.read(work, name="get_state_ids_after")

    async def get_current_state_ids(self, room_id: str) -> dict[StateKey, str]:
        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_CURRENT_IDS, {"room_id": room_id})

        rows = await self._db.read(work, name="get_current_state_ids")
        return {(r[0], r[1]): r[2] for r in rows}

    async def get_current_state_events(self, room_id: str) -> dict[StateKey, StoredEvent]:
        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_CURRENT_EVENTS, {"room_id": room_id})

        out: dict[StateKey, StoredEvent] = {}
        for row in await self._db.read(work, name="get_current_state_events"):
            stored = _stored(row)
            key = stored.event.state_tuple
            if key is not None:
                out[key] = stored
        return out

    async def get_current_state_event(
        self, room_id: str, event_type: str, state_key: str
    ) -> StoredEvent | None:
        async def work(conn: Conn) -> Row | None:
            return await conn.fetch_one(
                _CURRENT_EVENT_ONE,
                {"room_id": room_id, "type": event_type, "state_key": state_key},
            )

        row = await self._db.read(work, name="get_current_state_event")
        return None if row is None else _stored(row)

    async def get_auth_chain(self, event_ids: Iterable[str]) -> set[str]:
        """The union of the auth chains of ``event_ids`` (v12: the create event included)."""
        ids = list(event_ids)

        async def work(conn: Conn) -> set[str]:
            return await _auth_chain(conn, ids)

        return await self._db.read(work, name="get_auth_chain")

    async def load_state_res_store(self, state_sets: Sequence[StateMap]) -> PrefetchedStateResStore:
        """Prefetch what resolving ``state_sets`` reads: their events, auth chains and those
        chains' events."""
        ids = {e for s in state_sets for e in s.values()}

        async def work(conn: Conn) -> tuple[dict[str, set[str]], list[Row]]:
            chains: dict[str, set[str]] = {}
            todo = list(ids)
            while todo:
                event_id = todo.pop()
                if event_id in chains:
                    continue
                chain = await _auth_chain(conn, [event_id])
                chains[event_id] = chain
                todo.extend(chain - chains.keys())
            rows = []
            for event_id in chains:
                row = await conn.fetch_one(_GET_EVENT, {"event_id": event_id})
                if row is not None:
                    rows.append(row)
            return chains, rows

        chains, rows = await self._db.read(work, name="load_state_res_store", slow=True)
        return PrefetchedStateResStore({r[0]: _stored(r) for r in rows}, chains)

    async def paginate(
        self,
        room_id: str,
        start: TopoPosition,
        direction: Literal["b", "f"],
        limit: int,
    ) -> list[StoredEvent]:
        """Up to ``limit`` events after ``start`` in topological order (before it for ``b``),
        nearest first."""
        stmt = _PAGE_BACK if direction == "b" else _PAGE_FORWARD

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(
                stmt, {"room_id": room_id, "depth": start[0], "stream": start[1], "limit": limit}
            )

        return [_stored(r) for r in await self._db.read(work, name="paginate")]

    async def rooms_for_user(self, user_id: str, membership: str = "join") -> list[str]:
        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(
                _ROOMS_FOR_USER, {"user_id": user_id, "membership": membership}
            )

        return [r[0] for r in await self._db.read(work, name="rooms_for_user")]

    async def get_members(self, room_id: str) -> list[tuple[str, str, str]]:
        """(user ID, membership, event ID) of every member event in the current state."""

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_MEMBERS, {"room_id": room_id})

        rows = await self._db.read(work, name="get_members")
        return [(r[0], r[1] or "", r[2]) for r in rows]

    async def get_state_events_after(self, event_id: str) -> dict[StateKey, StoredEvent] | None:
        """The room state after ``event_id`` as events (None: unknown event or an outlier)."""

        async def work(conn: Conn) -> list[Row] | None:
            group = await conn.fetch_val(_STATE_GROUP_OF, {"event_id": event_id})
            if group is None:
                return None
            rows = []
            for state_id in (await _group_state(conn, int(group))).values():
                row = await conn.fetch_one(_GET_EVENT, {"event_id": state_id})
                if row is not None:
                    rows.append(row)
            return rows

        rows = await self._db.read(work, name="get_state_events_after")
        if rows is None:
            return None
        out: dict[StateKey, StoredEvent] = {}
        for row in rows:
            stored = _stored(row)
            key = stored.event.state_tuple
            if key is not None:
                out[key] = stored
        return out

    async def events_near_timestamp(
        self,
        room_id: str,
        ts: int,
        direction: Literal["b", "f"],
        *,
        limit: int,
        offset: int = 0,
    ) -> list[StoredEvent]:
        """Events of ``room_id`` at or after ``ts`` (``f``, oldest first) or at or before it
        (``b``, newest first), skipping ``offset`` of them."""
        stmt = _AT_OR_AFTER_TS if direction == "f" else _AT_OR_BEFORE_TS

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(
                stmt, {"room_id": room_id, "ts": ts, "limit": limit, "offset": offset}
            )

        return [_stored(r) for r in await self._db.read(work, name="events_near_timestamp")]

    async def last_event_at_stream(self, room_id: str, stream: int) -> StoredEvent | None:
        """The newest event of ``room_id`` at or below stream position ``stream``."""

        async def work(conn: Conn) -> Row | None:
            return await conn.fetch_one(_LAST_AT_STREAM, {"room_id": room_id, "stream": stream})

        row = await self._db.read(work, name="last_event_at_stream")
        return None if row is None else _stored(row)

    async def get_transaction_ids(
        self, user_id: str, device_id: str, event_ids: Iterable[str]
    ) -> dict[str, str]:
        """The transaction IDs with which ``device_id`` of ``user_id`` sent ``event_ids``
        (only the events it sent; the stored form, e.g. ``redact/<txnId>``)."""
        ids = list(dict.fromkeys(event_ids))

        async def work(conn: Conn) -> dict[str, str]:
            out: dict[str, str] = {}
            for event_id in ids:
                txn = await conn.fetch_val(
                    _TXN_OF_EVENT,
                    {"event_id": event_id, "user_id": user_id, "device_id": device_id},
                )
                if txn is not None:
                    out[event_id] = str(txn)
            return out

        if not ids:
            return {}
        return await self._db.read(work, name="get_transaction_ids")

    async def count_state_rows(self) -> int:
        """Rows in ``state_group_entries`` (for tests and metrics)."""

        async def work(conn: Conn) -> int:
            return int(await conn.fetch_val(_COUNT_STATE_ROWS))

        return await self._db.read(work, name="count_state_rows")


def _auth_edges(room_version: RoomVersion, event: Event, room_id: str) -> list[str]:
    ids = list(dict.fromkeys(event.auth_event_ids))
    if not room_version.create_event_in_auth_events and event.type != "m.room.create":
        ids.append("$" + room_id[1:])  # v12: the create event is implied (ID = room ID with $)
    return ids


def _txn_params(txn: TxnKey) -> dict[str, str]:
    return {
        "user_id": txn.user_id,
        "device_id": txn.device_id,
        "room_id": txn.room_id,
        "txn_id": txn.txn_id,
    }


def _room_params(room: RoomRow) -> dict[str, object]:
    return {
        "room_id": room.room_id,
        "room_version": room.room_version,
        "creator": room.creator,
        "is_public": room.is_public,
        "created_ts": room.created_ts,
    }


# --- read helpers for other read-only stores (storage/sync.py) ----------------------------------

#: Decode a row selected with :func:`event_columns` into a :class:`StoredEvent`.
decode_event_row = _stored
#: The ``(type, state_key) → event_id`` map of a state group, in the caller's unit of work.
read_group_state = _group_state


def event_columns() -> tuple[Any, ...]:
    """The columns :func:`decode_event_row` decodes (select them from :func:`events_join`)."""
    return _EVENT_COLUMNS


def events_join() -> Any:
    """``events`` joined to ``rooms`` (for the room version)."""
    return _EVENTS_JOIN


# --- federation: what the received-events store shares with persist_event ----------------------

#: Index a stored event's relation (and a redaction's target), in the caller's unit of work:
#: every path that stores a timeline event calls it (``storage/federation_events.py`` too).
index_relations = _index_relations

# --- end federation: what the received-events store shares with persist_event ------------------
