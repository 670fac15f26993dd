"""Events received over federation: timeline events, outliers, rejected and soft-failed events,
and the inbound transaction log.

Spec: server-server-api.md › PDUs (Checks performed on receipt of a PDU, Rejection, Soft
failure) and Transactions.

How each kind is stored (one ``events`` row each, so every event is stored once and auth
chains and ``/event`` find it whatever happened to it):

===============  ========  ===============  ===============  ==========  ==============
kind             outlier   rejected_reason  state_group      extremity   current state
===============  ========  ===============  ===============  ==========  ==============
``timeline``     false     NULL             state after      yes         the caller's
``outlier``      true      NULL             NULL             no          untouched
``rejected``     true      the reason       state *before*†  no          untouched
``soft_failed``  true      NULL             state after      no          untouched
===============  ========  ===============  ===============  ==========  ==============

† NULL for an event fetched as an outlier (auth chain, state at a gap) and rejected then.

Rejected and soft-failed events are flagged ``outlier`` so that no client read path (sync,
``/messages``, ``/context``, receipts...) ever returns them; they still have a state group
because later events may name them as ``prev_events`` (the state after a rejected event is the
state before it, spec: Rejection). Soft-failed events are also listed in
``soft_failed_events``. An event first stored as an outlier (e.g. an auth event) that later
arrives as part of the timeline is rewritten in place with a new stream position.

The state group of a timeline event follows the same growth rule as local events
(``storage/events.py``): no group for a non-state event whose state before is one known group,
a delta over that group for a state event while the chain stays short, else a snapshot.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import orjson
from sqlalchemy import BigInteger, Text, bindparam, delete, func, insert, select, text, update

from federation.core.canonicaljson import encode_canonical_json
from federation.core.events import Event, StateKey
from homeserver.storage.db import Conn, Database, Row
from homeserver.storage.events import MIN_CHAIN_ROWS, RoomRow, index_relations, read_group_state
from homeserver.storage.schema import (
    current_state,
    event_auth,
    event_edges,
    event_forward_extremities,
    events,
    federation_inbound_txns,
    rooms,
    soft_failed_events,
    state_group_entries,
    state_groups,
)
from homeserver.storage.search import index_event_for_search
from homeserver.storage.stream_ids import next_position
from homeserver.streams import StreamName

__all__ = ["EventKind", "FederationEventStore", "RemoteEvent"]

EventKind = Literal["timeline", "outlier", "rejected", "soft_failed"]
StateMap = Mapping[StateKey, str]


@dataclass(frozen=True, slots=True)
class RemoteEvent:
    """A received event to store.

    Attributes:
        event: the event (its JSON as received, or the redacted copy after a content hash
            mismatch).
        kind: how it is stored (module docstring).
        state_before: the room state before the event (None for an outlier).
        state_group_before: a group whose state is exactly ``state_before``, if known: the new
            group is then a delta over it (or it is reused).
        rejected_reason: why a ``rejected`` event was rejected, or why a ``soft_failed`` one
            failed.
        new_current_state: for a ``timeline`` event, the room's current state after it (the
            state after the new forward extremities, resolved); None leaves it untouched.
        redacts: the event this (accepted) redaction redacts, flagged in the same unit of work.
    """

    event: Event
    kind: EventKind
    state_before: StateMap | None = None
    state_group_before: int | None = None
    rejected_reason: str | None = None
    new_current_state: StateMap | None = None
    redacts: str | None = None


_EXISTING = select(events.c.outlier, events.c.stream_ordering).where(
    events.c.event_id == bindparam("event_id")
)
_DELETE_EVENT = delete(events).where(events.c.event_id == bindparam("event_id"))
_DELETE_EDGES = delete(event_edges).where(event_edges.c.event_id == bindparam("event_id"))
_DELETE_AUTH = delete(event_auth).where(event_auth.c.event_id == bindparam("event_id"))
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
_GET_GROUP = select(state_groups.c.base_size, state_groups.c.chain_rows).where(
    state_groups.c.id == bindparam("id", type_=BigInteger)
)
_INSERT_GROUP = insert(state_groups).values(
    {c.name: bindparam(c.name) for c in state_groups.columns}
)
_INSERT_ENTRY = insert(state_group_entries).values(
    {c.name: bindparam(c.name) for c in state_group_entries.columns}
)
_CURRENT_IDS = select(
    current_state.c.type, current_state.c.state_key, current_state.c.event_id
).where(current_state.c.room_id == bindparam("room_id"))
_DELETE_CURRENT = delete(current_state).where(
    current_state.c.room_id == bindparam("room_id"),
    current_state.c.type == bindparam("type"),
    current_state.c.state_key == bindparam("state_key"),
)
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
_SET_EVENT_JSON = (
    update(events).where(events.c.event_id == bindparam("event_id")).values(json=bindparam("json"))
)
_LOWEST_STREAM = select(func.min(events.c.stream_ordering))
_ROOM_EXISTS = select(rooms.c.room_id).where(rooms.c.room_id == bindparam("room_id"))
_INSERT_ROOM = insert(rooms).values({c.name: bindparam(c.name) for c in rooms.columns})
_EVENT_JSON = select(events.c.json).where(events.c.event_id == bindparam("event_id"))
_MARK_REDACTED = (
    update(events)
    .where(events.c.event_id == bindparam("event_id"), events.c.room_id == bindparam("room_id"))
    .values(redacted=True)
)
_INSERT_SOFT_FAILED = insert(soft_failed_events).values(
    event_id=bindparam("event_id"), room_id=bindparam("room_id"), reason=bindparam("reason")
)
_IS_SOFT_FAILED = select(soft_failed_events.c.event_id).where(
    soft_failed_events.c.event_id == bindparam("event_id")
)
_GET_TXN = select(federation_inbound_txns.c.response).where(
    federation_inbound_txns.c.origin == bindparam("origin"),
    federation_inbound_txns.c.txn_id == bindparam("txn_id"),
)
_INSERT_TXN = text(
    "INSERT INTO federation_inbound_txns (origin, txn_id, response, received_ts)"
    " VALUES (:origin, :txn_id, :response, :received_ts)"
    " ON CONFLICT (origin, txn_id) DO NOTHING"
).bindparams(
    bindparam("origin", type_=Text),
    bindparam("txn_id", type_=Text),
    bindparam("response", type_=Text),
    bindparam("received_ts", type_=BigInteger),
)
# a joined member of a server: state keys ending in ":<server>" (LIKE, wildcards escaped)
_SERVER_JOINED = (
    select(current_state.c.state_key)
    .where(
        current_state.c.room_id == bindparam("room_id"),
        current_state.c.type == "m.room.member",
        current_state.c.membership == "join",
        current_state.c.state_key.like(bindparam("pattern"), escape="\\"),
    )
    .limit(50)
)
_DELETE_TXNS_BEFORE = delete(federation_inbound_txns).where(
    federation_inbound_txns.c.received_ts < bindparam("before", type_=BigInteger)
)


def _auth_edges(event: Event) -> list[str]:
    ids = list(dict.fromkeys(event.auth_event_ids))
    version = event.room_version
    if not version.create_event_in_auth_events and event.type != "m.room.create":
        ids.append("$" + event.room_id[1:])  # v12: the create event is implied
    return ids


async def _membership_of(conn: Conn, event_id: str) -> str | None:
    raw = await conn.fetch_val(_EVENT_JSON, {"event_id": event_id})
    if raw is None:
        return None
    try:
        pdu = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    content = pdu.get("content") if isinstance(pdu, dict) else None
    value = content.get("membership") if isinstance(content, dict) else None
    return value if isinstance(value, str) else None


class FederationEventStore:
    """Storage of received events and transactions. One unit of work per method."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- transactions -------------------------------------------------------------------------

    async def get_txn_response(self, origin: str, txn_id: str) -> dict[str, Any] | None:
        """The answer given to ``origin``'s transaction ``txn_id``, if it was processed."""

        async def work(conn: Conn) -> Any:
            return await conn.fetch_val(_GET_TXN, {"origin": origin, "txn_id": txn_id})

        raw = await self._db.read(work, name="get_txn_response")
        if raw is None:
            return None
        answer = orjson.loads(raw)
        return answer if isinstance(answer, dict) else None

    async def store_txn_response(
        self, origin: str, txn_id: str, response: Mapping[str, Any], received_ts: int
    ) -> None:
        """Remember the answer to a transaction (the first one stored wins)."""
        params = {
            "origin": origin,
            "txn_id": txn_id,
            "response": orjson.dumps(response).decode(),
            "received_ts": received_ts,
        }

        async def work(conn: Conn) -> None:
            await conn.execute(_INSERT_TXN, params)

        await self._db.run(work, name="store_txn_response")

    async def delete_txns_before(self, before_ts: int) -> None:
        """Forget transactions received before ``before_ts`` (a sender retries for minutes,
        not days)."""

        async def work(conn: Conn) -> None:
            await conn.execute(_DELETE_TXNS_BEFORE, {"before": before_ts})

        await self._db.run(work, name="delete_txns_before")

    # --- rooms --------------------------------------------------------------------------------

    async def server_in_room(self, room_id: str, server_name: str) -> bool:
        """Whether a user of ``server_name`` is joined to ``room_id`` (current state), without
        reading the member list."""
        escaped = server_name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        params = {"room_id": room_id, "pattern": f"%:{escaped}"}

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_SERVER_JOINED, params)

        rows = await self._db.read(work, name="server_in_room")
        # the LIKE suffix is exact, but a user ID's server part starts after its first colon
        return any(str(r[0]).partition(":")[2] == server_name for r in rows)

    # --- events -------------------------------------------------------------------------------

    async def soft_failed(self, event_ids: list[str]) -> set[str]:
        """Which of ``event_ids`` were soft-failed."""

        async def work(conn: Conn) -> set[str]:
            out = set()
            for event_id in event_ids:
                if await conn.fetch_val(_IS_SOFT_FAILED, {"event_id": event_id}) is not None:
                    out.add(event_id)
            return out

        if not event_ids:
            return set()
        return await self._db.read(work, name="soft_failed")

    async def persist(self, new: RemoteEvent) -> int | None:
        """Store a received event as ``new.kind`` in one unit of work.

        Returns:
            The event's stream position, or None when nothing was written (the event was
            already stored, other than as an outlier now arriving in the timeline).
        """
        event = new.event
        # a v12 create event has no room_id: the room ID is its event ID's hash
        room_id = str(event.pdu.get("room_id") or "!" + event.event_id[1:])
        version = event.room_version
        raw = encode_canonical_json(event.pdu, strict=version.strict_canonical_json).decode()
        key = event.state_tuple
        kind = new.kind

        async def work(conn: Conn) -> int | None:
            existing = await conn.fetch_one(_EXISTING, {"event_id": event.event_id})
            if existing is not None:
                if not existing[0] or kind == "outlier":
                    return None  # already known (an outlier is replaced only by a real event)
                # an outlier now arrives with its state: rewrite it
                for stmt in (_DELETE_EVENT, _DELETE_EDGES, _DELETE_AUTH):
                    await conn.execute(stmt, {"event_id": event.event_id})
            group: int | None = None
            plan = None
            # a fetched event rejected before any state was known for it has no state either
            stateless = new.state_before is None and new.state_group_before is None
            if kind != "outlier" and not (kind == "rejected" and stateless):
                plan = await self._plan_group(conn, new, key)
            stream = await next_position(conn, StreamName.EVENTS)
            if plan is not None:
                group = await self._write_group(conn, plan, stream, room_id, event.event_id)
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
                    "outlier": kind != "timeline",
                    "rejected_reason": new.rejected_reason if kind == "rejected" else None,
                    "redacted": False,
                    "state_group": group,
                },
            )
            prevs = list(dict.fromkeys(event.prev_event_ids))
            if prevs:
                await conn.execute_many(
                    _INSERT_EDGE, [{"event_id": event.event_id, "prev_event_id": p} for p in prevs]
                )
            auth_ids = _auth_edges(event)
            if auth_ids:
                await conn.execute_many(
                    _INSERT_AUTH,
                    [{"event_id": event.event_id, "auth_event_id": a} for a in auth_ids],
                )
            if kind == "soft_failed":
                await conn.execute(
                    _INSERT_SOFT_FAILED,
                    {
                        "event_id": event.event_id,
                        "room_id": room_id,
                        "reason": new.rejected_reason or "",
                    },
                )
            if kind != "timeline":
                return stream
            await conn.execute_many(
                _DELETE_EXTREMITY, [{"room_id": room_id, "event_id": p} for p in prevs]
            )
            await conn.execute(_INSERT_EXTREMITY, {"room_id": room_id, "event_id": event.event_id})
            if new.new_current_state is not None:
                await self._replace_current(conn, room_id, new.new_current_state, event)
            if new.redacts is not None:
                await conn.execute(_MARK_REDACTED, {"event_id": new.redacts, "room_id": room_id})
            if event.type != "m.room.redaction" or new.redacts is not None:
                await index_relations(conn, event, room_id, stream)
                await index_event_for_search(conn, event, room_id, stream)
            return stream

        return await self._db.run(work, name="persist_remote_event")

    @staticmethod
    async def _plan_group(conn: Conn, new: RemoteEvent, key: StateKey | None) -> _GroupPlan:
        """Decide the event's state group: reuse, delta or snapshot (the rule of
        ``storage/events.py``)."""
        before = new.state_group_before
        adds_key = key is not None and new.kind != "rejected"
        if not adds_key and before is not None:
            return _GroupPlan(reuse=before)
        delta: dict[StateKey, str] = {key: new.event.event_id} if adds_key and key else {}
        if before is not None:
            prev = await conn.fetch_one(_GET_GROUP, {"id": before})
            if prev is not None:
                base_size, chain_rows = int(prev[0]), int(prev[1]) + len(delta)
                if chain_rows <= max(MIN_CHAIN_ROWS, base_size):
                    return _GroupPlan(delta=delta, prev=before, base=base_size, chain=chain_rows)
        state: dict[StateKey, str] = {}
        if new.state_before is not None:
            state.update(new.state_before)
        elif before is not None:
            state.update(await read_group_state(conn, before))
        state.update(delta)
        return _GroupPlan(snapshot=state)

    @staticmethod
    async def _write_group(
        conn: Conn, plan: _GroupPlan, stream: int, room_id: str, event_id: str
    ) -> int:
        if plan.reuse is not None:
            return plan.reuse
        entries = plan.snapshot if plan.snapshot is not None else plan.delta
        await conn.execute(
            _INSERT_GROUP,
            {
                "id": stream,
                "room_id": room_id,
                "event_id": event_id,
                "prev_group": plan.prev if plan.snapshot is None else None,
                "base_size": len(plan.snapshot) if plan.snapshot is not None else plan.base,
                "chain_rows": 0 if plan.snapshot is not None else plan.chain,
            },
        )
        if entries:
            await conn.execute_many(
                _INSERT_ENTRY,
                [
                    {"state_group": stream, "type": t, "state_key": k, "event_id": e}
                    for (t, k), e in entries.items()
                ],
            )
        return stream

    @staticmethod
    async def _replace_current(conn: Conn, room_id: str, state: StateMap, event: Event) -> None:
        rows: list[Row] = await conn.fetch_all(_CURRENT_IDS, {"room_id": room_id})
        old = {(r[0], r[1]): r[2] for r in rows}
        for t, k in old.keys() - state.keys():
            await conn.execute(_DELETE_CURRENT, {"room_id": room_id, "type": t, "state_key": k})
        for (t, k), event_id in state.items():
            if old.get((t, k)) == event_id:
                continue
            membership = None
            if t == "m.room.member":
                if event_id == event.event_id:
                    membership = event.membership
                else:
                    membership = await _membership_of(conn, event_id)
            await conn.execute(
                _UPSERT_CURRENT,
                {
                    "room_id": room_id,
                    "type": t,
                    "state_key": k,
                    "event_id": event_id,
                    "membership": membership,
                },
            )

    # --- remote joins and invites: rooms joined over federation, out-of-band memberships ------

    async def insert_room(self, room: RoomRow) -> None:
        """Add the row of a room joined over federation (nothing if it is already there)."""
        params = {
            "room_id": room.room_id,
            "room_version": room.room_version,
            "creator": room.creator,
            "is_public": room.is_public,
            "created_ts": room.created_ts,
        }

        async def work(conn: Conn) -> None:
            if await conn.fetch_val(_ROOM_EXISTS, {"room_id": room.room_id}) is None:
                await conn.execute(_INSERT_ROOM, params)

        await self._db.run(work, name="insert_remote_room")

    async def persist_out_of_band_membership(self, event: Event) -> int | None:
        """Store a member event of a room this server is not in (an invite received from
        another server, or our leave rejecting it) so that the user's ``/sync`` sees it: a
        timeline row (a stream position, not an outlier) without edges or a state group, and
        the user's ``current_state`` row; the room gets its row if it has none (reads join
        events to their room), but no forward extremity: "this server is in the room" is
        "one of its users is joined". A later join replaces the room's current state.

        Returns:
            The stream position, or None when the event was already stored.
        """
        version = event.room_version
        raw = encode_canonical_json(event.pdu, strict=version.strict_canonical_json).decode()
        room_id = event.room_id

        async def work(conn: Conn) -> int | None:
            if await conn.fetch_one(_EXISTING, {"event_id": event.event_id}) is not None:
                return None
            if await conn.fetch_val(_ROOM_EXISTS, {"room_id": room_id}) is None:
                # events are read joined to their room (its version): the room gets a row,
                # though this server is not in it (no forward extremities)
                await conn.execute(
                    _INSERT_ROOM,
                    {
                        "room_id": room_id,
                        "room_version": version.identifier,
                        "creator": event.sender,
                        "is_public": False,
                        "created_ts": event.origin_server_ts,
                    },
                )
            stream = await next_position(conn, StreamName.EVENTS)
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
                    "state_group": None,
                },
            )
            await conn.execute(
                _UPSERT_CURRENT,
                {
                    "room_id": room_id,
                    "type": event.type,
                    "state_key": event.state_key,
                    "event_id": event.event_id,
                    "membership": event.membership,
                },
            )
            return stream

        return await self._db.run(work, name="persist_out_of_band_membership")

    async def persist_backfilled(self, event: Event, state_group: int) -> bool:
        """Store an event fetched with ``/backfill`` (older than anything in the room's
        timeline here): a timeline row readable by ``/messages`` with a *negative* stream
        position below every other (so no ``/sync`` range ever returns it as new, as Synapse
        does with backfilled events), its edges, and ``state_group`` as the state at it; no
        forward extremity, the current state untouched. One writer at a time (the caller's
        lock): the position is the lowest one minus one.

        Returns:
            False when the event was already stored (other than as an outlier).
        """
        version = event.room_version
        raw = encode_canonical_json(event.pdu, strict=version.strict_canonical_json).decode()
        room_id = str(event.pdu.get("room_id") or "!" + event.event_id[1:])

        async def work(conn: Conn) -> bool:
            existing = await conn.fetch_one(_EXISTING, {"event_id": event.event_id})
            if existing is not None:
                if not existing[0]:
                    return False
                for stmt in (_DELETE_EVENT, _DELETE_EDGES, _DELETE_AUTH):
                    await conn.execute(stmt, {"event_id": event.event_id})
            lowest = await conn.fetch_val(_LOWEST_STREAM, {})
            stream = min(int(lowest or 0), 0) - 1
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
                    "state_group": state_group,
                },
            )
            prevs = list(dict.fromkeys(event.prev_event_ids))
            if prevs:
                await conn.execute_many(
                    _INSERT_EDGE, [{"event_id": event.event_id, "prev_event_id": p} for p in prevs]
                )
            auth_ids = _auth_edges(event)
            if auth_ids:
                await conn.execute_many(
                    _INSERT_AUTH,
                    [{"event_id": event.event_id, "auth_event_id": a} for a in auth_ids],
                )
            return True

        return await self._db.run(work, name="persist_backfilled")

    async def replace_event_json(self, event_id: str, pdu: Mapping[str, Any]) -> None:
        """Store ``pdu`` as the JSON of ``event_id``: the same event with more signatures (an
        invite countersigned by the invitee's server). Nothing if the event is unknown."""
        raw = encode_canonical_json(pdu, strict=False).decode()

        async def work(conn: Conn) -> None:
            await conn.execute(_SET_EVENT_JSON, {"event_id": event_id, "json": raw})

        await self._db.run(work, name="replace_event_json")

    # --- end remote joins and invites ----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _GroupPlan:
    reuse: int | None = None
    delta: dict[StateKey, str] | None = None
    prev: int | None = None
    base: int = 0
    chain: int = 0
    snapshot: dict[StateKey, str] | None = None
