"""Relations between events: ``/relations``, ``/threads``, bundled aggregations and
``redacted_because``.

Spec: client-server-api › Forming relationships between events (Aggregations of child events,
Relationships API), › Event replacements, › Threading, › Reference relations, › Redactions;
``relations.yaml``, ``threads_list.yaml``.

What is aggregated (``unsigned.m.relations`` of a non-state event; spec v1.7+, annotations are
not bundled):

- ``m.replace``: the newest valid edit (by ``origin_server_ts``, then the larger event ID): same
  sender and type as the original, no state key, with ``m.new_content``; the original is not an
  edit itself and is not redacted. The edit is served whole, in the client format.
- ``m.thread``: ``latest_event`` (the newest threaded event, topologically, served whole with
  its own edit bundled), ``count`` and ``current_user_participated`` (the user sent the root or
  a threaded event).
- ``m.reference``: ``chunk`` of ``{"event_id"}``, oldest first.

Children the user may not see (history visibility) are left out of what is served whole
(``latest_event``, the edit); counts are what the server knows. A redacted event is served with
the redaction event in ``unsigned.redacted_because``.

Cost: one read for a page of events: per event one grouped count over its children (index on
the parent), then reads only for the relation types it has. ``/sync`` asks for aggregations only
for limited timelines (spec: "when the relevant section has a ``limited`` value of ``true``"):
otherwise the children come in the same or a later response, and an incremental sync pays no
extra read.

The indexing itself happens where events are stored (``EventStore.persist_event``), so every
path that stores an event (local sends, federation) indexes its relation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, Protocol

from federation.core.events import Event
from federation.core.redaction import redact
from homeserver.clock import Clock
from homeserver.errors import Codes, InvalidParam, MatrixError
from homeserver.services.events import client_event
from homeserver.services.requester import Requester
from homeserver.services.room_history import RoomHistory
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage.events import EventStore, StoredEvent, relation_of
from homeserver.storage.relations import Aggregation, RelationStore

__all__ = ["RECURSION_DEPTH", "IgnoredSource", "RelationsPage", "RelationsService", "ThreadsPage"]

JsonDict = dict[str, Any]

#: How deep ``recurse=true`` follows relations (spec: "SHOULD traverse at least 3 levels").
RECURSION_DEPTH = 3
#: Events a recursive ``/relations`` collects before paginating.
_MAX_RECURSE_EVENTS = 2000
_DEFAULT_LIMIT = 5
_MAX_LIMIT = 1000
_DEFAULT_THREADS_LIMIT = 10
_MAX_THREADS_LIMIT = 100
_NO_STREAM_LIMIT = 2**62


@dataclass(frozen=True, slots=True)
class RelationsPage:
    chunk: list[JsonDict]
    next_batch: str | None
    prev_batch: str | None
    recursion_depth: int | None


@dataclass(frozen=True, slots=True)
class ThreadsPage:
    chunk: list[JsonDict]
    next_batch: str | None


def _topo_token(stored: StoredEvent) -> str:
    return f"t{stored.depth}_{stored.stream_ordering}"


class IgnoredSource(Protocol):
    """Who a user ignores (``m.ignored_user_list``)."""

    async def ignored_by(self, user_id: str) -> frozenset[str]: ...


def _redacted(stored: StoredEvent) -> StoredEvent:
    event = stored.event
    pdu = redact(event.room_version, dict(event.pdu))
    return replace(stored, event=Event(event.room_version, pdu, event.event_id), redacted=True)


def _is_valid_edit(original: StoredEvent, edit: StoredEvent) -> bool:
    """Spec › Validity of replacement events (the sender, type and state key are checked by
    the read)."""
    if original.redacted or original.event.state_key is not None:
        return False
    relation = relation_of(original.event)
    if relation is not None and relation[1] == "m.replace":
        return False
    if edit.event.type == "m.room.encrypted":
        return True  # m.new_content is in the encrypted payload
    return isinstance(edit.event.content.get("m.new_content"), Mapping)


class RelationsService:
    """Relations reads and the extras of ``unsigned``.

    Args:
        relations: the relation reads.
        events: the event store.
        history: the room reads (access checks, tokens, the client format).
        visibility: the history-visibility rule.
        clock: for ``unsigned.age`` of bundled events.
        ignored: who each user ignores (their children are left out of aggregations and
            ``/relations``, their thread roots are served redacted by ``/threads``).
    """

    def __init__(
        self,
        relations: RelationStore,
        events: EventStore,
        history: RoomHistory,
        visibility: HistoryVisibility,
        clock: Clock,
        *,
        ignored: IgnoredSource | None = None,
    ) -> None:
        self._relations = relations
        self._events = events
        self._history = history
        self._visibility = visibility
        self._clock = clock
        self._ignored = ignored

    async def _ignored_by(self, user_id: str) -> frozenset[str]:
        return frozenset() if self._ignored is None else await self._ignored.ignored_by(user_id)

    # --- unsigned: bundled aggregations and redacted_because -----------------------------------

    async def unsigned_extras(
        self, user_id: str, events: Sequence[StoredEvent], *, aggregations: bool = True
    ) -> dict[str, JsonDict]:
        """Per event ID, what to add to ``unsigned`` when ``events`` are served to ``user_id``:
        ``m.relations`` (with ``aggregations``) and ``redacted_because``."""
        out: dict[str, JsonDict] = {}
        redacted = [s for s in events if s.redacted]
        if redacted:
            for event_id, redaction in (await self._relations.redactions(redacted)).items():
                out.setdefault(event_id, {})["redacted_because"] = self._serve(redaction)
        if aggregations:
            parents = [s for s in events if s.event.state_key is None]
            ignored = await self._ignored_by(user_id) if parents else frozenset()
            bundles = await self._bundles(user_id, parents, ignored, nested=True)
            for event_id, bundle in bundles.items():
                out.setdefault(event_id, {})["m.relations"] = bundle
        return out

    def _serve(self, stored: StoredEvent) -> JsonDict:
        event = client_event(stored)
        event["unsigned"]["age"] = max(0, self._clock.time_ms() - stored.event.origin_server_ts)
        return event

    async def _bundles(
        self,
        user_id: str,
        parents: Sequence[StoredEvent],
        ignored: frozenset[str],
        *,
        nested: bool,
    ) -> dict[str, JsonDict]:
        if not parents:
            return {}
        raw = await self._relations.aggregations(parents, user_id, ignored=ignored)
        if not raw:
            return {}
        by_id = {p.event.event_id: p for p in parents}
        chosen_edits: dict[str, StoredEvent] = {}
        for event_id, agg in raw.items():
            edit = next((e for e in agg.edits if _is_valid_edit(by_id[event_id], e)), None)
            if edit is not None:
                chosen_edits[event_id] = edit
        whole = [
            *chosen_edits.values(),
            *(a.thread_latest for a in raw.values() if a.thread_latest),
        ]
        visible = await self._visible_ids(user_id, whole)
        latest_events = [
            a.thread_latest
            for a in raw.values()
            if a.thread_latest is not None and a.thread_latest.event.event_id in visible
        ]
        # the latest threaded events carry their own bundle (an edit of the latest reply)
        inner = await self._bundles(user_id, latest_events, ignored, nested=False) if nested else {}
        out: dict[str, JsonDict] = {}
        for event_id, agg in raw.items():
            bundle = self._bundle(
                user_id, by_id[event_id], agg, chosen_edits.get(event_id), visible, inner
            )
            if bundle:
                out[event_id] = bundle
        return out

    def _bundle(
        self,
        user_id: str,
        parent: StoredEvent,
        agg: Aggregation,
        edit: StoredEvent | None,
        visible: set[str],
        inner: Mapping[str, JsonDict],
    ) -> JsonDict:
        bundle: JsonDict = {}
        if edit is not None and edit.event.event_id in visible:
            bundle["m.replace"] = self._serve(edit)
        latest = agg.thread_latest
        if agg.thread_count and latest is not None and latest.event.event_id in visible:
            served = self._serve(latest)
            nested = inner.get(latest.event.event_id)
            if nested:
                served["unsigned"]["m.relations"] = nested
            bundle["m.thread"] = {
                "latest_event": served,
                "count": agg.thread_count,
                "current_user_participated": agg.participated or parent.event.sender == user_id,
            }
        if agg.references:
            bundle["m.reference"] = {"chunk": [{"event_id": e} for e in agg.references]}
        return bundle

    async def _visible_ids(self, user_id: str, events: Sequence[StoredEvent]) -> set[str]:
        by_room: dict[str, list[StoredEvent]] = {}
        for stored in events:
            by_room.setdefault(client_event(stored)["room_id"], []).append(stored)
        out: set[str] = set()
        for room_events in by_room.values():
            ordered = sorted(room_events, key=lambda s: s.stream_ordering)
            for s in await self._visibility.filter_events_for_user(user_id, ordered):
                out.add(s.event.event_id)
        return out

    # --- new events ---------------------------------------------------------------------------

    async def check_new_event(
        self, room_id: str, event_type: str, content: Mapping[str, Any]
    ) -> None:
        """The relation rules a local event must follow (wired as a content check of the event
        creation path).

        Spec › Threading: "It is not possible to create a thread from an event which itself is
        the child of an event relationship (i.e., one with an ``m.relates_to`` property with a
        ``rel_type`` property)"; › Validation of ``m.thread`` relationships: such a request
        "should receive a HTTP 400 error response" (``M_UNKNOWN``: no specific code exists).

        Raises:
            MatrixError: 400 ``M_UNKNOWN`` for a thread started from an event with a relation.
        """
        relates = content.get("m.relates_to")
        if not isinstance(relates, Mapping) or relates.get("rel_type") != "m.thread":
            return
        parent_id = relates.get("event_id")
        if not isinstance(parent_id, str):
            return
        parent = await self._events.get_event(parent_id)
        if parent is None or client_event(parent)["room_id"] != room_id:
            return
        if relation_of(parent.event) is not None:  # "an m.relates_to property with a rel_type"
            raise MatrixError(
                400, Codes.UNKNOWN, "Cannot start a thread from an event with a relation"
            )

    # --- GET /relations ------------------------------------------------------------------------

    async def relations(
        self,
        requester: Requester,
        room_id: str,
        event_id: str,
        *,
        rel_type: str | None,
        event_type: str | None,
        from_token: str | None,
        to_token: str | None,
        limit: int | None,
        direction: Literal["b", "f"],
        recurse: bool | None,
    ) -> RelationsPage:
        """The children of ``event_id`` the user may see, a page at a time.

        Raises:
            NotFound: the parent is unknown, in another room, or hidden from the user.
            Forbidden: the user may not read the room.
            InvalidParam: a bad token or limit.
        """
        await self._history.get_event(requester, room_id, event_id)  # 404 / 403
        limit = _DEFAULT_LIMIT if limit is None else limit
        if limit < 1:
            raise InvalidParam("'limit' must be positive")
        limit = min(limit, _MAX_LIMIT)
        start = (
            None
            if from_token is None
            else await self._history.token_position(room_id, from_token, direction)
        )
        stop = (
            None
            if to_token is None
            else await self._history.token_position(room_id, to_token, direction)
        )
        if recurse:
            page, full = await self._recursive_page(
                room_id, event_id, rel_type, event_type, start, direction, limit
            )
        else:
            page = await self._relations.children(
                event_id,
                room_id=room_id,
                rel_type=rel_type,
                event_type=event_type,
                start=start,
                direction=direction,
                limit=limit,
            )
            full = len(page) == limit
        if stop is not None:
            before = len(page)
            if direction == "b":
                page = [e for e in page if (e.depth, e.stream_ordering) > stop]
            else:
                page = [e for e in page if (e.depth, e.stream_ordering) <= stop]
            full = full and len(page) == before
        page = [e for e in page if client_event(e)["room_id"] == room_id]
        next_batch = _topo_token(page[-1]) if full and page else None
        ordered = sorted(page, key=lambda e: e.stream_ordering)
        visible = {
            s.event.event_id
            for s in await self._visibility.filter_events_for_user(requester.user_id, ordered)
        }
        ignored = await self._ignored_by(requester.user_id)
        shown = [e for e in page if e.event.event_id in visible and e.event.sender not in ignored]
        return RelationsPage(
            await self._history.serialize(requester, shown),
            next_batch,
            from_token,
            None if recurse is None else (RECURSION_DEPTH if recurse else 1),
        )

    async def _recursive_page(
        self,
        room_id: str,
        event_id: str,
        rel_type: str | None,
        event_type: str | None,
        start: tuple[int, int] | None,
        direction: Literal["b", "f"],
        limit: int,
    ) -> tuple[list[StoredEvent], bool]:
        found = await self._relations.descendants(
            event_id,
            room_id=room_id,
            rel_type=rel_type,
            event_type=event_type,
            max_depth=RECURSION_DEPTH,
            max_events=_MAX_RECURSE_EVENTS,
        )
        positions = sorted(((d, s), e) for e, d, s in found)
        if direction == "b":
            positions.reverse()
            if start is not None:
                positions = [p for p in positions if p[0] < start]
        elif start is not None:
            positions = [p for p in positions if p[0] > start]
        ids = [e for _, e in positions[:limit]]
        loaded = await self._events.get_events(ids)
        return [loaded[e] for e in ids if e in loaded], len(positions) > limit

    # --- GET /threads --------------------------------------------------------------------------

    async def threads(
        self,
        requester: Requester,
        room_id: str,
        *,
        include: Literal["all", "participated"],
        from_token: str | None,
        limit: int | None,
    ) -> ThreadsPage:
        """The room's thread roots the user may see, the most recently active first.

        Raises:
            Forbidden: the user may not read the room.
            InvalidParam: a bad token or limit.
        """
        await self._history.check_history_access(requester, room_id)
        limit = _DEFAULT_THREADS_LIMIT if limit is None else limit
        if limit < 1:
            raise InvalidParam("'limit' must be positive")
        limit = min(limit, _MAX_THREADS_LIMIT)
        before = _NO_STREAM_LIMIT
        if from_token is not None:
            if not from_token.isdigit() or len(from_token) > 18:
                raise InvalidParam(f"Unknown pagination token {from_token!r}")
            before = int(from_token)
        roots = await self._relations.thread_roots(
            room_id,
            participant=requester.user_id if include == "participated" else None,
            before_stream=before,
            limit=limit + 1,
        )
        next_batch = str(roots[limit - 1].latest_stream) if len(roots) > limit else None
        roots = roots[:limit]
        loaded = await self._events.get_events(r.root_id for r in roots)
        candidates = [
            loaded[r.root_id]
            for r in roots
            if r.root_id in loaded
            and not loaded[r.root_id].outlier
            and client_event(loaded[r.root_id])["room_id"] == room_id
        ]
        ordered = sorted(candidates, key=lambda e: e.stream_ordering)
        visible = {
            s.event.event_id
            for s in await self._visibility.filter_events_for_user(requester.user_id, ordered)
        }
        ignored = await self._ignored_by(requester.user_id)
        # spec: a root sent by an ignored user "is returned redacted to the caller"
        shown = [
            _redacted(e) if e.event.sender in ignored else e
            for e in candidates
            if e.event.event_id in visible
        ]
        return ThreadsPage(await self._history.serialize(requester, shown), next_batch)
