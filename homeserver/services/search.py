"""Server-side search (``POST /search``, category ``room_events``).

Spec: client-server-api › Server Side Search
(https://spec.matrix.org/v1.19/client-server-api/#server-side-search):

    The search API allows clients to perform full text search across events in all rooms that
    the user has been in, including those that they have left. Only events that the user is
    allowed to see will be searched, e.g. it won't include events in rooms that happened after
    you left.

How a search runs:

1. The rooms: every room the user is joined to or has left or been banned from (not
   forgotten), narrowed by the request's ``filter`` (``rooms``/``not_rooms``).
2. The full-text index (:mod:`homeserver.storage.search`: SQLite FTS5 or PostgreSQL
   ``tsvector``) returns matches of all the words of ``search_term``, ranked (``order_by:
   rank``, the default) or newest first (``recent``).
3. Each batch of matches goes through the history-visibility rule per room
   (:class:`~homeserver.services.visibility.HistoryVisibility`, the same rule ``/messages``
   uses) and the rest of the filter (types, senders, ``contains_url``); the index is read in
   batches until ``limit`` results are found or the matches run out (bounded).
4. Pagination: ``next_batch`` is an opaque token holding the position after the last match
   looked at: an offset into the ranked list for ``rank``, the stream position for
   ``recent``. The same request with ``next_batch`` continues.

Groups (``room_id``, ``sender``), per-result context (``events_before``/``events_after``,
historic ``profile_info``) and ``include_state`` are built from the results of the page.
``highlights`` are the words searched for. ``count`` is the number of index matches in the
user's rooms before visibility filtering: the spec allows an estimate.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from homeserver.errors import BadJson, Forbidden, InvalidParam, MissingParam
from homeserver.services.filtering import RoomEventFilter, parse_room_event_filter
from homeserver.services.requester import Requester
from homeserver.services.room_history import RoomHistory
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.search import SEARCH_KEYS, SearchHit, SearchStore, search_words

__all__ = ["SearchRequest", "SearchService", "parse_search_request"]

_DEFAULT_LIMIT = 10
_MAX_LIMIT = 100
_DEFAULT_CONTEXT = 5
_MAX_CONTEXT = 50
#: Index rows read per batch, and at most this many batches per request.
_BATCH = 100
_MAX_BATCHES = 10
_PAST_MEMBERSHIPS = ("join", "leave", "ban")
_GROUP_KEYS = ("room_id", "sender")


@dataclass(frozen=True, slots=True)
class SearchRequest:
    """A parsed ``room_events`` search (the only category the spec defines)."""

    search_term: str
    keys: tuple[str, ...]
    event_filter: RoomEventFilter
    order_by: str
    before_limit: int
    after_limit: int
    include_profile: bool
    with_context: bool
    include_state: bool
    group_by: tuple[str, ...]


def _bool(obj: Mapping[str, Any], key: str, where: str) -> bool:
    value = obj.get(key, False)
    if not isinstance(value, bool):
        raise BadJson(f"'{where}{key}' must be a boolean")
    return value


def _count(obj: Mapping[str, Any], key: str, where: str) -> int:
    value = obj.get(key, _DEFAULT_CONTEXT)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadJson(f"'{where}{key}' must be an integer")
    if value < 0:
        raise InvalidParam(f"'{where}{key}' must not be negative")
    return min(value, _MAX_CONTEXT)


def parse_search_request(body: Mapping[str, Any]) -> SearchRequest | None:
    """The ``room_events`` criteria of a ``POST /search`` body, or None when the body asks for
    no ``room_events`` search.

    Raises:
        MissingParam: no ``search_categories``, or no ``search_term``.
        BadJson: a field has the wrong JSON type.
        InvalidParam: a field has a value the spec does not allow.
    """
    categories = body.get("search_categories")
    if categories is None:
        raise MissingParam("'search_categories' is required")
    if not isinstance(categories, Mapping):
        raise BadJson("'search_categories' must be an object")
    criteria = categories.get("room_events")
    if criteria is None:
        return None
    if not isinstance(criteria, Mapping):
        raise BadJson("'search_categories.room_events' must be an object")
    where = "search_categories.room_events."
    term = criteria.get("search_term")
    if term is None:
        raise MissingParam(f"'{where}search_term' is required")
    if not isinstance(term, str):
        raise BadJson(f"'{where}search_term' must be a string")
    keys_value = criteria.get("keys", list(SEARCH_KEYS.values()))
    if not isinstance(keys_value, list) or not all(isinstance(k, str) for k in keys_value):
        raise BadJson(f"'{where}keys' must be a list of strings")
    allowed = set(SEARCH_KEYS.values())
    unknown = [k for k in keys_value if k not in allowed]
    if unknown:
        raise InvalidParam(f"'{where}keys': unknown key {unknown[0]!r}")
    order_by = criteria.get("order_by", "rank")
    if order_by not in ("rank", "recent"):
        raise InvalidParam(f"'{where}order_by' must be 'rank' or 'recent'")
    filter_value = criteria.get("filter")
    event_filter = (
        parse_room_event_filter(filter_value) if filter_value is not None else RoomEventFilter()
    )
    context = criteria.get("event_context")
    if context is not None and not isinstance(context, Mapping):
        raise BadJson(f"'{where}event_context' must be an object")
    ctx: Mapping[str, Any] = context or {}
    groupings = criteria.get("groupings", {})
    if not isinstance(groupings, Mapping):
        raise BadJson(f"'{where}groupings' must be an object")
    group_list = groupings.get("group_by", [])
    if not isinstance(group_list, list):
        raise BadJson(f"'{where}groupings.group_by' must be a list")
    group_by: list[str] = []
    for group in group_list:
        if not isinstance(group, Mapping) or not isinstance(group.get("key"), str):
            raise BadJson(f"'{where}groupings.group_by' entries must be objects with a 'key'")
        if group["key"] not in _GROUP_KEYS:
            raise InvalidParam(f"'{where}groupings.group_by': unknown key {group['key']!r}")
        if group["key"] not in group_by:
            group_by.append(group["key"])
    return SearchRequest(
        search_term=term,
        keys=tuple(dict.fromkeys(keys_value)),
        event_filter=event_filter,
        order_by=order_by,
        before_limit=_count(ctx, "before_limit", where + "event_context."),
        after_limit=_count(ctx, "after_limit", where + "event_context."),
        include_profile=_bool(ctx, "include_profile", where + "event_context."),
        with_context=context is not None,
        include_state=_bool(criteria, "include_state", where),
        group_by=tuple(group_by),
    )


def _encode_token(order_by: str, position: int) -> str:
    raw = orjson.dumps({"o": order_by, "p": position})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_token(token: str, order_by: str) -> int:
    """The position a ``next_batch`` token continues from.

    Raises:
        InvalidParam: not one of our tokens, or made for the other ordering.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = orjson.loads(raw)
        position = data["p"]
        made_for = data["o"]
    except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
        raise InvalidParam("Invalid next_batch token") from None
    if made_for != order_by or isinstance(position, bool) or not isinstance(position, int):
        raise InvalidParam("next_batch token does not belong to this search")
    if position < 0:
        raise InvalidParam("Invalid next_batch token")
    return position


class SearchService:
    """``POST /search``.

    Args:
        index: the full-text index.
        events: the event store (events, pagination, state at an event).
        visibility: the history-visibility rule.
        history: room reads (serialisation of events for clients, room state access).
    """

    def __init__(
        self,
        index: SearchStore,
        events: EventStore,
        visibility: HistoryVisibility,
        history: RoomHistory,
    ) -> None:
        self._index = index
        self._events = events
        self._visibility = visibility
        self._history = history

    async def _searchable_rooms(
        self, requester: Requester, event_filter: RoomEventFilter
    ) -> list[str]:
        rooms: set[str] = set()
        for membership in _PAST_MEMBERSHIPS:
            rooms.update(await self._events.rooms_for_user(requester.user_id, membership))
        out = []
        for room_id in sorted(rooms):
            if not event_filter.includes_room(room_id):
                continue
            access = await self._visibility.get_access(room_id, requester.user_id)
            if access.membership in _PAST_MEMBERSHIPS and not access.forgotten:
                out.append(room_id)
        return out

    async def search(
        self, requester: Requester, request: SearchRequest | None, next_batch: str | None
    ) -> dict[str, Any]:
        """Run one search and build the response body's ``search_categories``.

        Raises:
            InvalidParam: a bad ``next_batch`` token.
        """
        if request is None:
            return {"search_categories": {}}
        limit = request.event_filter.limit or _DEFAULT_LIMIT
        limit = max(1, min(limit, _MAX_LIMIT))
        start = _decode_token(next_batch, request.order_by) if next_batch else None
        words = search_words(request.search_term)
        rooms = await self._searchable_rooms(requester, request.event_filter)
        found, next_position = await self._visible_matches(
            requester, request, words, rooms, limit, start
        )
        count = await self._index.count(words, rooms, request.keys) if words and rooms else 0
        results: list[dict[str, Any]] = []
        serialized = await self._history.serialize(requester, [stored for stored, _ in found])
        for (stored, hit), event in zip(found, serialized, strict=True):
            result: dict[str, Any] = {"rank": hit.rank, "result": event}
            if request.with_context:
                result["context"] = await self._context(requester, request, stored, hit.room_id)
            results.append(result)
        body: dict[str, Any] = {
            "count": count,
            "highlights": words,
            "results": results,
        }
        if next_position is not None:
            body["next_batch"] = _encode_token(request.order_by, next_position)
        if request.group_by:
            body["groups"] = self._groups(request.group_by, found)
        if request.include_state:
            body["state"] = await self._state(requester, found)
        return {"search_categories": {"room_events": body}}

    async def _visible_matches(
        self,
        requester: Requester,
        request: SearchRequest,
        words: Sequence[str],
        rooms: Sequence[str],
        limit: int,
        start: int | None,
    ) -> tuple[list[tuple[StoredEvent, SearchHit]], int | None]:
        """Up to ``limit`` matches the user may see, and the token position to continue from
        (None when the index has no more)."""
        if not words or not rooms:
            return [], None
        found: list[tuple[StoredEvent, SearchHit]] = []
        rank_order = request.order_by == "rank"
        offset = (start or 0) if rank_order else 0
        before = start if not rank_order else None
        for _ in range(_MAX_BATCHES):
            hits = await self._index.search(
                words,
                rooms,
                request.keys,
                order=request.order_by,
                limit=_BATCH,
                before_stream=before,
                offset=offset,
            )
            kept = await self._keep_visible(requester, request.event_filter, hits)
            for i, hit in enumerate(hits):
                stored = kept.get(hit.event_id)
                if stored is not None:
                    found.append((stored, hit))
                if len(found) == limit:
                    # continue right after this hit next time
                    if rank_order:
                        return found, offset + i + 1
                    return found, hit.stream_ordering
            if len(hits) < _BATCH:
                return found, None
            if rank_order:
                offset += len(hits)
            else:
                before = hits[-1].stream_ordering
        # Looked at enough for one request: let the client ask for more.
        return found, offset if rank_order else before

    async def _keep_visible(
        self, requester: Requester, event_filter: RoomEventFilter, hits: Sequence[SearchHit]
    ) -> dict[str, StoredEvent]:
        if not hits:
            return {}
        stored = await self._events.get_events([h.event_id for h in hits])
        by_room: dict[str, list[StoredEvent]] = {}
        for hit in hits:
            event = stored.get(hit.event_id)
            if event is None or event.rejected_reason or event.outlier or event.redacted:
                continue
            by_room.setdefault(hit.room_id, []).append(event)
        kept: dict[str, StoredEvent] = {}
        for room_id, room_events in by_room.items():
            room_events.sort(key=lambda e: e.stream_ordering)
            visible = await self._visibility.filter_events_for_user(requester.user_id, room_events)
            for event in visible:
                if event_filter.matches(_filterable(event, room_id), room_id=room_id):
                    kept[event.event.event_id] = event
        return kept

    async def _context(
        self, requester: Requester, request: SearchRequest, stored: StoredEvent, room_id: str
    ) -> dict[str, Any]:
        position = (stored.depth, stored.stream_ordering)
        before: list[StoredEvent] = []
        after: list[StoredEvent] = []
        if request.before_limit:
            page = await self._events.paginate(room_id, position, "b", request.before_limit)
            before = await self._visibility.filter_events_for_user(
                requester.user_id, sorted(page, key=lambda e: e.stream_ordering)
            )
            before.sort(key=lambda e: (e.depth, e.stream_ordering), reverse=True)
        if request.after_limit:
            page = await self._events.paginate(room_id, position, "f", request.after_limit)
            after = await self._visibility.filter_events_for_user(requester.user_id, page)
        context: dict[str, Any] = {
            "start": _topo_token(before[-1] if before else stored),
            "end": _topo_token(after[-1] if after else stored),
            "events_before": await self._history.serialize(requester, before),
            "events_after": await self._history.serialize(requester, after),
        }
        if request.include_profile:
            context["profile_info"] = await self._profiles(stored, [stored, *before, *after])
        return context

    async def _profiles(
        self, at: StoredEvent, shown: Sequence[StoredEvent]
    ) -> dict[str, dict[str, Any]]:
        """The senders' display names and avatars as the room had them at the result (the
        spec's "historic profile information")."""
        state = await self._events.get_state_events_after(at.event.event_id) or {}
        out: dict[str, dict[str, Any]] = {}
        for sender in dict.fromkeys(e.event.sender for e in shown):
            member = state.get(("m.room.member", sender))
            profile: dict[str, Any] = {}
            if member is not None and not member.redacted:
                content = member.event.content
                for field in ("displayname", "avatar_url"):
                    if isinstance(content.get(field), str):
                        profile[field] = content[field]
            out[sender] = profile
        return out

    @staticmethod
    def _groups(
        group_by: Sequence[str], found: Sequence[tuple[StoredEvent, SearchHit]]
    ) -> dict[str, dict[str, Any]]:
        groups: dict[str, dict[str, Any]] = {}
        for key in group_by:
            entries: dict[str, dict[str, Any]] = {}
            for stored, hit in found:
                value = hit.room_id if key == "room_id" else stored.event.sender
                entry = entries.setdefault(value, {"order": len(entries) + 1, "results": []})
                entry["results"].append(stored.event.event_id)
            groups[key] = entries
        return groups

    async def _state(
        self, requester: Requester, found: Sequence[tuple[StoredEvent, SearchHit]]
    ) -> dict[str, list[dict[str, Any]]]:
        state: dict[str, list[dict[str, Any]]] = {}
        for room_id in dict.fromkeys(hit.room_id for _, hit in found):
            try:
                state[room_id] = await self._history.get_state(requester, room_id)
            except Forbidden:
                continue
        return state


def _filterable(stored: StoredEvent, room_id: str) -> dict[str, Any]:
    event = stored.event
    return {
        "type": event.type,
        "sender": event.sender,
        "room_id": room_id,
        "content": event.content,
    }


def _topo_token(stored: StoredEvent) -> str:
    return f"t{stored.depth}_{stored.stream_ordering}"
