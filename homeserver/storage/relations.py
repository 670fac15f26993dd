"""Reads of the relations between events, the threads of a room and redactions' back-references.

The event store writes ``event_relations`` and ``event_redactions`` in the same unit of work as
each event (``EventStore.persist_event``: every path that stores an event indexes it there);
this store only reads them, with the child events, each method in one unit of work.

- :meth:`RelationStore.children`: one page of an event's children (``/relations``), by position
  in the room's topological order (depth, stream ordering), through the index on
  ``(relates_to_id, rel_type, depth, stream_ordering)``;
- :meth:`RelationStore.aggregations`: what the bundled aggregations of a page of events need:
  one grouped count per 16 parents, then only for the relation types a parent has: the newest
  edits by its sender, the thread's newest event and the user's participation, the references;
- :meth:`RelationStore.thread_roots`: a room's thread roots by their newest reply (``/threads``);
- :meth:`RelationStore.redactions`: the redaction event of each redacted event.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Literal

from sqlalchemy import BigInteger, Text, and_, bindparam, func, or_, select, text

from homeserver.storage.db import Conn, Database, Row
from homeserver.storage.events import (
    StoredEvent,
    decode_event_row,
    event_columns,
    events_join,
)
from homeserver.storage.schema import event_redactions, event_relations, events

__all__ = ["Aggregation", "RelationStore", "ThreadRoot"]

#: Relation types the server aggregates (spec v1.7+: ``m.annotation`` is not bundled).
AGGREGATED = ("m.replace", "m.thread", "m.reference")
#: Edits read per parent to find the newest valid one (an edit without ``m.new_content`` is
#: invalid and skipped; more than this many invalid newest edits in a row is not worth reading).
_EDIT_CANDIDATES = 5
#: References listed per parent.
_MAX_REFERENCES = 100

_D = bindparam("depth", type_=BigInteger)
_S = bindparam("stream", type_=BigInteger)
_PARENT = bindparam("parent", type_=Text)
_ROOM = bindparam("room_id", type_=Text)
#: the children of a parent: only those in its room count (spec: "Relationships which ... break
#: the rules of a relationship, are simply ignored. An example might be the parent and child
#: being in different rooms")
_OF_PARENT = and_(event_relations.c.relates_to_id == _PARENT, event_relations.c.room_id == _ROOM)

_CHILD_IDS = select(
    event_relations.c.event_id,
    event_relations.c.rel_type,
    event_relations.c.type,
    event_relations.c.depth,
    event_relations.c.stream_ordering,
).where(_OF_PARENT)

_CHILDREN_JOIN = events_join().join(
    event_relations, event_relations.c.event_id == events.c.event_id
)
_PAGE_BASE = select(*event_columns()).select_from(_CHILDREN_JOIN).where(_OF_PARENT)
_BEFORE = or_(
    event_relations.c.depth < _D,
    and_(event_relations.c.depth == _D, event_relations.c.stream_ordering < _S),
)
_AFTER = or_(
    event_relations.c.depth > _D,
    and_(event_relations.c.depth == _D, event_relations.c.stream_ordering > _S),
)
_NEWEST_FIRST = (event_relations.c.depth.desc(), event_relations.c.stream_ordering.desc())
_OLDEST_FIRST = (event_relations.c.depth, event_relations.c.stream_ordering)

#: Parents whose children are counted per statement (unused slots get an ID no event has).
_COUNT_BATCH = 16
_COUNTS = (
    select(
        event_relations.c.relates_to_id,
        event_relations.c.room_id,
        event_relations.c.rel_type,
        func.count(),
    )
    .where(
        event_relations.c.relates_to_id.in_(
            [bindparam(f"p{i}", type_=Text) for i in range(_COUNT_BATCH)]
        )
    )
    .group_by(
        event_relations.c.relates_to_id, event_relations.c.room_id, event_relations.c.rel_type
    )
)
_EDITS = (
    select(*event_columns())
    .select_from(_CHILDREN_JOIN)
    .where(
        _OF_PARENT,
        event_relations.c.rel_type == "m.replace",
        event_relations.c.sender == bindparam("sender", type_=Text),
        event_relations.c.type == bindparam("type", type_=Text),
        events.c.state_key.is_(None),
    )
    .order_by(events.c.origin_server_ts.desc(), events.c.event_id.desc())
    .limit(_EDIT_CANDIDATES)
)
_THREAD_LATEST = (
    select(*event_columns())
    .select_from(_CHILDREN_JOIN)
    .where(_OF_PARENT, event_relations.c.rel_type == "m.thread")
    .order_by(*_NEWEST_FIRST)
    .limit(1)
)
_PARTICIPATED = (
    select(event_relations.c.event_id)
    .where(
        _OF_PARENT,
        event_relations.c.rel_type == "m.thread",
        event_relations.c.sender == bindparam("user_id", type_=Text),
    )
    .limit(1)
)
_REFERENCES = (
    select(event_relations.c.event_id, event_relations.c.sender)
    .where(_OF_PARENT, event_relations.c.rel_type == "m.reference")
    .order_by(*_OLDEST_FIRST)
    .limit(_MAX_REFERENCES)
)
# a thread's events, newest first (only read when the user ignores someone)
_THREAD_CHILDREN = (
    select(event_relations.c.event_id, event_relations.c.sender)
    .where(_OF_PARENT, event_relations.c.rel_type == "m.thread")
    .order_by(*_NEWEST_FIRST)
)
_EVENT = select(*event_columns()).select_from(events_join()).where(events.c.event_id == _PARENT)
_REDACTION_OF = (
    select(*event_columns())
    .select_from(
        events_join().join(event_redactions, event_redactions.c.event_id == events.c.event_id)
    )
    .where(
        event_redactions.c.redacts == bindparam("event_id", type_=Text),
        event_redactions.c.room_id == _ROOM,
    )
    .order_by(events.c.stream_ordering)
    .limit(1)
)

# Thread roots by their newest reply, newest first, below a stream position; ``user`` (when not
# NULL) keeps the threads that user started or replied in.
_THREADS = text(
    "SELECT r.relates_to_id, MAX(r.stream_ordering) AS latest FROM event_relations r"
    " WHERE r.room_id = :room_id AND r.rel_type = 'm.thread'"
    " AND (CAST(:user_id AS TEXT) IS NULL"
    "  OR EXISTS (SELECT 1 FROM event_relations p WHERE p.relates_to_id = r.relates_to_id"
    "   AND p.rel_type = 'm.thread' AND p.sender = :user_id)"
    "  OR EXISTS (SELECT 1 FROM events e WHERE e.event_id = r.relates_to_id"
    "   AND e.sender = :user_id))"
    " GROUP BY r.relates_to_id"
    " HAVING MAX(r.stream_ordering) < :before"
    " ORDER BY latest DESC"
    " LIMIT :limit"
).bindparams(
    bindparam("room_id", type_=Text),
    bindparam("user_id", type_=Text),
    bindparam("before", type_=BigInteger),
    bindparam("limit", type_=BigInteger),
)


@dataclass(slots=True)
class Aggregation:
    """What is aggregated over one parent's children (before validity and visibility checks).

    Attributes:
        edits: ``m.replace`` children by the parent's sender with its type, newest first.
        thread_count: ``m.thread`` children.
        thread_latest: the newest ``m.thread`` child (topologically).
        participated: the user sent an ``m.thread`` child.
        references: ``m.reference`` children's IDs, oldest first.
    """

    edits: list[StoredEvent] = field(default_factory=list)
    thread_count: int = 0
    thread_latest: StoredEvent | None = None
    participated: bool = False
    references: list[str] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ThreadRoot:
    root_id: str
    #: the stream position of the thread's newest event (the ``/threads`` page token)
    latest_stream: int


@dataclass(frozen=True, slots=True)
class _ChildRow:
    event_id: str
    rel_type: str
    type: str
    depth: int
    stream: int


def _room_of(stored: StoredEvent) -> str:
    """The event's room (a v12 create event names none: its room ID is derived from its ID)."""
    room_id = stored.event.pdu.get("room_id")
    return room_id if isinstance(room_id, str) else "!" + stored.event.event_id[1:]


class RelationStore:
    """Reads of ``event_relations`` and ``event_redactions``. One unit of work per method."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def children(
        self,
        parent_id: str,
        *,
        room_id: str,
        rel_type: str | None,
        event_type: str | None,
        start: tuple[int, int] | None,
        direction: Literal["b", "f"],
        limit: int,
    ) -> list[StoredEvent]:
        """Up to ``limit`` direct children of ``parent_id`` (in ``room_id``) past ``start``
        (depth, stream) in ``direction`` (``b``: newest first; None: from the end the direction
        starts at)."""
        stmt = _PAGE_BASE
        if rel_type is not None:
            stmt = stmt.where(event_relations.c.rel_type == bindparam("rel_type", type_=Text))
        if event_type is not None:
            stmt = stmt.where(event_relations.c.type == bindparam("event_type", type_=Text))
        if start is not None:
            stmt = stmt.where(_BEFORE if direction == "b" else _AFTER)
        stmt = stmt.order_by(*(_NEWEST_FIRST if direction == "b" else _OLDEST_FIRST)).limit(
            bindparam("limit", type_=BigInteger)
        )
        params: dict[str, object] = {"parent": parent_id, "room_id": room_id, "limit": limit}
        if rel_type is not None:
            params["rel_type"] = rel_type
        if event_type is not None:
            params["event_type"] = event_type
        if start is not None:
            params["depth"], params["stream"] = start

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(stmt, params)

        return [decode_event_row(r) for r in await self._db.read(work, name="relation_children")]

    async def descendants(
        self,
        parent_id: str,
        *,
        room_id: str,
        rel_type: str | None,
        event_type: str | None,
        max_depth: int,
        max_events: int,
    ) -> list[tuple[str, int, int]]:
        """``(event ID, depth, stream)`` of the children of ``parent_id`` and of theirs, down
        ``max_depth`` levels, only through children that match ``rel_type`` and ``event_type``
        (spec: "Events that would match the filter, but whose only relation to the original
        given event is through a non-matching intermediate event, will not be included"); at
        most ``max_events``."""

        async def work(conn: Conn) -> list[tuple[str, int, int]]:
            found: dict[str, tuple[str, int, int]] = {}
            level = [parent_id]
            for _ in range(max_depth):
                following: list[str] = []
                for parent in level:
                    rows = await conn.fetch_all(_CHILD_IDS, {"parent": parent, "room_id": room_id})
                    for r in rows:
                        child = _ChildRow(r[0], r[1], r[2], int(r[3]), int(r[4]))
                        if rel_type is not None and child.rel_type != rel_type:
                            continue
                        if event_type is not None and child.type != event_type:
                            continue
                        if child.event_id in found or child.event_id == parent_id:
                            continue
                        found[child.event_id] = (child.event_id, child.depth, child.stream)
                        following.append(child.event_id)
                        if len(found) >= max_events:
                            return list(found.values())
                if not following:
                    break
                level = following
            return list(found.values())

        return await self._db.read(work, name="relation_descendants")

    async def aggregations(
        self,
        parents: Sequence[StoredEvent],
        user_id: str,
        *,
        ignored: AbstractSet[str] = frozenset(),
    ) -> dict[str, Aggregation]:
        """The raw aggregations of ``parents`` that have aggregated children, for ``user_id``,
        leaving out the children sent by ``ignored`` users (spec: "Servers must additionally
        ensure they do not consider child events from ignored users when preparing an
        aggregation")."""
        wanted = [(p.event.event_id, _room_of(p), p.event.sender, p.event.type) for p in parents]

        async def thread(conn: Conn, key: dict[str, str], agg: Aggregation) -> None:
            if not ignored:
                row = await conn.fetch_one(_THREAD_LATEST, key)
                agg.thread_latest = None if row is None else decode_event_row(row)
                participated = await conn.fetch_one(_PARTICIPATED, {**key, "user_id": user_id})
                agg.participated = participated is not None
                return
            rows = [r for r in await conn.fetch_all(_THREAD_CHILDREN, key) if r[1] not in ignored]
            agg.thread_count = len(rows)
            agg.participated = any(r[1] == user_id for r in rows)
            if rows:
                row = await conn.fetch_one(_EVENT, {"parent": rows[0][0]})
                agg.thread_latest = None if row is None else decode_event_row(row)

        async def work(conn: Conn) -> dict[str, Aggregation]:
            # one statement per batch of parents finds which have aggregated children
            all_counts: dict[tuple[str, str], dict[str, int]] = {}
            ids = list(dict.fromkeys(w[0] for w in wanted))
            for i in range(0, len(ids), _COUNT_BATCH):
                batch = ids[i : i + _COUNT_BATCH]
                params = {f"p{j}": batch[j] if j < len(batch) else "" for j in range(_COUNT_BATCH)}
                for parent, room, rel_type, count in await conn.fetch_all(_COUNTS, params):
                    if rel_type in AGGREGATED:
                        counted = all_counts.setdefault((str(parent), str(room)), {})
                        counted[str(rel_type)] = int(count)
            out: dict[str, Aggregation] = {}
            for event_id, room_id, sender, typ in wanted:
                counts = all_counts.get((event_id, room_id))  # children in the parent's room
                if not counts or event_id in out:
                    continue
                agg = out[event_id] = Aggregation()
                key = {"parent": event_id, "room_id": room_id}
                if counts.get("m.replace"):
                    rows = await conn.fetch_all(_EDITS, {**key, "sender": sender, "type": typ})
                    agg.edits = [decode_event_row(r) for r in rows]
                if counts.get("m.thread"):
                    agg.thread_count = counts["m.thread"]
                    await thread(conn, key, agg)
                if counts.get("m.reference"):
                    rows = await conn.fetch_all(_REFERENCES, key)
                    agg.references = [str(r[0]) for r in rows if r[1] not in ignored]
            return out

        if not wanted:
            return {}
        return await self._db.read(work, name="relation_aggregations")

    async def thread_roots(
        self, room_id: str, *, participant: str | None, before_stream: int, limit: int
    ) -> list[ThreadRoot]:
        """A room's thread roots by their newest ``m.thread`` child, newest first, whose newest
        child is below ``before_stream``; with ``participant``, only threads that user started
        or sent a threaded event in."""

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(
                _THREADS,
                {
                    "room_id": room_id,
                    "user_id": participant,
                    "before": before_stream,
                    "limit": limit,
                },
            )

        rows = await self._db.read(work, name="thread_roots")
        return [ThreadRoot(str(r[0]), int(r[1])) for r in rows]

    async def redactions(self, redacted: Iterable[StoredEvent]) -> dict[str, StoredEvent]:
        """The (first) redaction event, in the event's room, of each of ``redacted``."""
        ids = list(dict.fromkeys((s.event.event_id, _room_of(s)) for s in redacted))

        async def work(conn: Conn) -> dict[str, StoredEvent]:
            out: dict[str, StoredEvent] = {}
            for event_id, room_id in ids:
                params = {"event_id": event_id, "room_id": room_id}
                row = await conn.fetch_one(_REDACTION_OF, params)
                if row is not None:
                    out[event_id] = decode_event_row(row)
            return out

        if not ids:
            return {}
        return await self._db.read(work, name="redactions")
