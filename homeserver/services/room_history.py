"""Room history and state reads, each through the history-visibility rule.

Spec: client-server-api › Room events (``GET /event``, ``/state``, ``/members``,
``/joined_members``), › Pagination (``/messages``), › Event context (``/context``),
``room_event_by_timestamp.yaml`` (``/timestamp_to_event``), › Room History Visibility.

Who may read what (:class:`~homeserver.services.visibility.HistoryVisibility` decides per
event):

- history (``/messages``, ``/context``, ``/event``, ``/timestamp_to_event``) needs a current or
  past membership (``join``, ``leave``, ``ban``; not forgotten) or a ``world_readable`` room,
  else ``403``; each event is then filtered by the rule at that event (hidden events are left
  out; a hidden ``/event`` or ``/context`` target is ``404``, like an unknown one);
- state and member lists (``/state``, ``/members``) are the current state for a joined user or a
  ``world_readable`` room, and the state when they left for a user who left (``403`` otherwise);
- ``/joined_members`` needs a joined user or a ``world_readable`` room.

Unknown rooms answer as rooms the user is not in (``403``), so existence does not leak.

Tokens: ``t<depth>_<stream>`` positions in the room's topological order; ``/sync`` tokens
(``s…``) are accepted too and mean "after the newest event they cover".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from federation.core.events import StateKey
from homeserver.clock import Clock
from homeserver.errors import Forbidden, InvalidParam, NotFound
from homeserver.services.events import client_event
from homeserver.services.filtering import RoomEventFilter
from homeserver.services.requester import Requester
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.room_access import RoomAccess
from homeserver.streams import InvalidStreamToken, StreamName, StreamToken

__all__ = ["ContextPage", "MessagesPage", "RoomHistory", "UnsignedSource", "parse_topo_token"]

_END = (2**62, 2**62)
_MAX_POS = 2**63 - 1
_MAX_LIMIT = 1000
#: timestamp_to_event looks at most this many events for one the user may see
_TS_SCAN_BATCH = 50
_TS_SCAN_MAX = 500
_READABLE_PAST = ("join", "leave", "ban")


@dataclass(frozen=True, slots=True)
class MessagesPage:
    chunk: list[dict[str, Any]]
    start: str
    end: str | None
    state: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ContextPage:
    event: dict[str, Any]
    events_before: list[dict[str, Any]]
    events_after: list[dict[str, Any]]
    state: list[dict[str, Any]]
    start: str
    end: str


def _token(stored: StoredEvent) -> str:
    return f"t{stored.depth}_{stored.stream_ordering}"


def parse_topo_token(token: str) -> tuple[int, int]:
    """``t<depth>_<stream>`` → (depth, stream).

    Raises:
        InvalidParam: not such a token.
    """
    try:
        if not token.startswith("t"):
            raise ValueError(token)
        depth, stream = token[1:].split("_", 1)
        position = int(depth), int(stream)
        if not all(-_MAX_POS <= n <= _MAX_POS for n in position):
            raise ValueError(token)  # beyond what the database stores
        return position
    except ValueError:
        raise InvalidParam(f"Invalid pagination token {token!r}") from None


def _membership_of(stored: StoredEvent | None) -> str | None:
    if stored is None:
        return None
    value = stored.event.content.get("membership")
    return value if isinstance(value, str) else None


class UnsignedSource(Protocol):
    """What else goes into ``unsigned`` of served events: bundled aggregations
    (``m.relations``) and ``redacted_because`` (:class:`~homeserver.services.relations.
    RelationsService`)."""

    async def unsigned_extras(
        self, user_id: str, events: Sequence[StoredEvent], *, aggregations: bool = True
    ) -> dict[str, dict[str, Any]]: ...


class Backfill(Protocol):
    """Older history of a room from other servers (``services/federation_backfill.py``)."""

    async def backfill(self, room_id: str, limit: int) -> int:
        """Fetch up to ``limit`` events older than the room's oldest here; how many came."""
        ...


class IgnoredSource(Protocol):
    """Who a user ignores (``m.ignored_user_list``)."""

    async def ignored_by(self, user_id: str) -> frozenset[str]: ...


class RoomHistory:
    """The read side of rooms.

    Args:
        events: the event store.
        visibility: the history-visibility rule.
        clock: for ``unsigned.age``.
    """

    def __init__(self, events: EventStore, visibility: HistoryVisibility, clock: Clock) -> None:
        self._events = events
        self._visibility = visibility
        self._clock = clock
        self._unsigned: UnsignedSource | None = None
        self._ignored: IgnoredSource | None = None
        self._backfill: Backfill | None = None

    def use_ignored_users(self, ignored: IgnoredSource) -> None:
        """Leave ignored users' non-state events out of pages (ignore_users.md; as Synapse,
        which filters them from every event read). Wired in ``app.py``."""
        self._ignored = ignored

    def use_backfill(self, backfill: Backfill) -> None:
        """Fetch history from before this server joined a room from the other servers in it
        when ``/messages`` pages past the oldest event here (wired in ``app.py``)."""
        self._backfill = backfill

    def use_unsigned_source(self, source: UnsignedSource) -> None:
        """Add ``source``'s extras to ``unsigned`` of every event served (wired in ``app.py``)."""
        self._unsigned = source

    async def token_position(
        self, room_id: str, token: str, direction: Literal["b", "f"]
    ) -> tuple[int, int]:
        """The position a ``/messages`` (``t…``) or ``/sync`` (``s…``) token stands for, to
        page from in ``direction``.

        Raises:
            InvalidParam: not such a token.
        """
        return await self._start_position(room_id, token, direction)

    async def check_history_access(self, requester: Requester, room_id: str) -> None:
        """Raises Forbidden unless the user may read the room's history (see the module)."""
        await self._history_access(requester, room_id)

    async def _history_access(self, requester: Requester, room_id: str) -> RoomAccess:
        """Who may read history at all: a current or past member (not forgotten), or anyone
        in a ``world_readable`` room; each event is then filtered.

        Raises:
            Forbidden: neither (also for unknown rooms).
        """
        access = await self._visibility.get_access(room_id, requester.user_id)
        if access.membership in _READABLE_PAST and not access.forgotten:
            return access
        if access.history_visibility == "world_readable":
            return access
        raise Forbidden("You are not in this room")

    async def _state_event_id(self, requester: Requester, room_id: str) -> str | None:
        """Which state a user may read: None for the current state (joined, or a
        ``world_readable`` room), else the event after which the user left.

        Raises:
            Forbidden: the user is not, and never was, in the room (or forgot it).
        """
        access = await self._visibility.get_access(room_id, requester.user_id)
        if access.membership == "join":
            return None
        if access.membership in ("leave", "ban") and not access.forgotten:
            return access.member_event_id
        if access.history_visibility == "world_readable":
            return None
        raise Forbidden("You are not in this room")

    async def _state_at(self, room_id: str, event_id: str | None) -> dict[StateKey, StoredEvent]:
        if event_id is None:
            return await self._events.get_current_state_events(room_id)
        return await self._events.get_state_events_after(event_id) or {}

    async def serialize(
        self, requester: Requester, events: Sequence[StoredEvent]
    ) -> list[dict[str, Any]]:
        """Events in the client format with ``unsigned.age`` and, for events the requesting
        device sent, ``unsigned.transaction_id`` (spec: "Room Events" › unsigned)."""
        now = self._clock.time_ms()
        txns: dict[str, str] = {}
        if requester.device_id is not None:
            own = [s.event.event_id for s in events if s.event.sender == requester.user_id]
            if own:
                txns = await self._events.get_transaction_ids(
                    requester.user_id, requester.device_id, own
                )
        out = []
        for stored in events:
            event = client_event(stored)
            unsigned = event["unsigned"]
            unsigned["age"] = max(0, now - stored.event.origin_server_ts)
            txn = txns.get(stored.event.event_id)
            if txn is not None:
                if stored.event.type == "m.room.redaction" and txn.startswith("redact/"):
                    txn = txn[len("redact/") :]
                unsigned["transaction_id"] = txn
            out.append(event)
        if self._unsigned is not None and events:
            extras = await self._unsigned.unsigned_extras(requester.user_id, events)
            for event in out:
                extra = extras.get(event["event_id"])
                if extra:
                    event["unsigned"].update(extra)
        return out

    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> dict[str, Any]:
        """One event the user may see.

        Raises:
            NotFound: unknown, in another room, or hidden by history visibility.
            Forbidden: the user may not read the room at all.
        """
        await self._history_access(requester, room_id)
        stored = await self._events.get_event(event_id)
        if stored is None or stored.outlier or client_event(stored)["room_id"] != room_id:
            raise NotFound("Event not found")
        if not await self._visibility.filter_events_for_user(requester.user_id, [stored]):
            raise NotFound("Event not found")
        return (await self.serialize(requester, [stored]))[0]

    async def get_event_anywhere(self, requester: Requester, event_id: str) -> dict[str, Any]:
        """One event the user may see, in whichever room it is (the r0 ``GET /events/{id}``).

        Raises:
            NotFound: unknown, an outlier, or hidden from the user (also when the user may not
                read its room: the answer does not tell whether the event exists).
        """
        stored = await self._events.get_event(event_id)
        if stored is None or stored.outlier:
            raise NotFound("Event not found")
        try:
            return await self.get_event(requester, client_event(stored)["room_id"], event_id)
        except Forbidden:
            raise NotFound("Event not found") from None

    async def get_state(self, requester: Requester, room_id: str) -> list[dict[str, Any]]:
        """The current state (or the state when the user left)."""
        at = await self._state_event_id(requester, room_id)
        state = await self._state_at(room_id, at)
        return await self.serialize(requester, [s for _, s in sorted(state.items())])

    async def get_state_event(
        self, requester: Requester, room_id: str, event_type: str, state_key: str
    ) -> StoredEvent:
        """One state event of the current state (or of the state when the user left)."""
        at = await self._state_event_id(requester, room_id)
        if at is None:
            stored = await self._events.get_current_state_event(room_id, event_type, state_key)
        else:
            stored = (await self._state_at(room_id, at)).get((event_type, state_key))
        if stored is None:
            raise NotFound("Event not found")
        return stored

    async def joined_rooms(self, requester: Requester) -> list[str]:
        return await self._events.rooms_for_user(requester.user_id, "join")

    async def joined_members(self, requester: Requester, room_id: str) -> list[StoredEvent]:
        """The joined members' events (joined users, or anyone in a world-readable room).

        Raises:
            Forbidden: otherwise.
        """
        access = await self._visibility.get_access(room_id, requester.user_id)
        if access.membership != "join" and access.history_visibility != "world_readable":
            raise Forbidden("You are not in this room")
        rows = await self._events.get_members(room_id)
        ids = [e for _, m, e in rows if m == "join"]
        found = await self._events.get_events(ids)
        return [found[e] for e in ids if e in found]

    async def members(
        self,
        requester: Requester,
        room_id: str,
        *,
        at: str | None = None,
        membership: str | None = None,
        not_membership: str | None = None,
    ) -> list[dict[str, Any]]:
        """Member events of the room's state: now, at the ``at`` token, and never after the
        user left.

        Raises:
            Forbidden: the user is not, and never was, in the room.
            InvalidParam: ``at`` is not a token.
        """
        left_at = await self._state_event_id(requester, room_id)
        state_event: str | None = left_at
        if at is not None:
            point = await self._event_at_token(room_id, at)
            if left_at is not None:
                left = await self._events.get_event(left_at)
                if point is not None and left is not None and _after(point, left):
                    point = left
            state_event = point.event.event_id if point is not None else left_at
            if point is None:
                return []
        state = await self._state_at(room_id, state_event)
        chosen = []
        for (event_type, _), stored in sorted(state.items()):
            if event_type != "m.room.member":
                continue
            value = _membership_of(stored)
            if membership is not None and value != membership:
                continue
            if not_membership is not None and value == not_membership:
                continue
            chosen.append(stored)
        return await self.serialize(requester, chosen)

    async def _event_at_token(self, room_id: str, token: str) -> StoredEvent | None:
        """The newest event at or before a pagination (``t…``) or sync (``s…``) token."""
        if token.startswith("s"):
            try:
                stream = StreamToken.parse(token).get(StreamName.EVENTS)
            except InvalidStreamToken:
                raise InvalidParam(f"Invalid token {token!r}") from None
            return await self._events.last_event_at_stream(room_id, stream)
        depth, stream = parse_topo_token(token)
        page = await self._events.paginate(room_id, (depth, min(stream + 1, _MAX_POS)), "b", 1)
        return page[0] if page else None

    async def _start_position(
        self, room_id: str, token: str | None, direction: Literal["b", "f"]
    ) -> tuple[int, int]:
        if token is None:
            return _END if direction == "b" else (0, 0)
        if not token.startswith("s"):
            return parse_topo_token(token)
        # a /sync token: the position just after the newest event it covers
        last = await self._event_at_token(room_id, token)
        if last is None:
            return (0, 0)
        if direction == "b":
            return (last.depth, last.stream_ordering + 1)
        return (last.depth, last.stream_ordering)

    async def _visible_page(
        self,
        requester: Requester,
        raw: list[StoredEvent],
        event_filter: RoomEventFilter | None,
    ) -> list[StoredEvent]:
        """``raw`` (one room, topological order either way) less what the user may not see
        and what the filter excludes."""
        ordered = sorted(raw, key=lambda e: e.stream_ordering)
        visible = {
            e.event.event_id
            for e in await self._visibility.filter_events_for_user(requester.user_id, ordered)
        }
        ignored = (
            frozenset()
            if self._ignored is None
            else await self._ignored.ignored_by(requester.user_id)
        )
        out = []
        for stored in raw:
            if stored.event.event_id not in visible:
                continue
            if stored.event.state_key is None and stored.event.sender in ignored:
                continue
            if event_filter is not None and not event_filter.matches(_filterable(stored)):
                continue
            out.append(stored)
        return out

    async def messages(
        self,
        requester: Requester,
        room_id: str,
        *,
        direction: Literal["b", "f"],
        from_token: str | None,
        to_token: str | None,
        limit: int,
        event_filter: RoomEventFilter | None = None,
    ) -> MessagesPage:
        """A page of the room's timeline in topological order (``b``: newest first), less the
        events history visibility hides and the filter excludes."""
        access = await self._history_access(requester, room_id)
        if event_filter is not None and event_filter.limit is not None:
            limit = min(limit, event_filter.limit)
        limit = max(1, min(limit, _MAX_LIMIT))
        start = await self._start_position(room_id, from_token, direction)
        if (
            direction == "b"
            and access.membership in ("leave", "ban")
            and access.member_depth is not None
            and access.member_stream is not None
            and access.history_visibility != "world_readable"
        ):
            # a user who left pages back from their leave (from any later token), not through
            # events they cannot see (SyTest "Can get rooms/{roomId}/messages for a departed
            # room")
            start = min(start, (access.member_depth, access.member_stream + 1))
        stop = await self._start_position(room_id, to_token, direction) if to_token else None
        if event_filter is not None and not event_filter.includes_room(room_id):
            return MessagesPage([], from_token or _pos_token(start), None)
        page = await self._events.paginate(room_id, start, direction, limit)
        if direction == "b" and len(page) < limit and self._backfill is not None:
            # the oldest event here is reached: older history may be on other servers
            if await self._backfill.backfill(room_id, limit - len(page)):
                page = await self._events.paginate(room_id, start, direction, limit)
        if stop is not None:
            if direction == "b":
                page = [e for e in page if (e.depth, e.stream_ordering) > stop]
            else:
                page = [e for e in page if (e.depth, e.stream_ordering) <= stop]
        # ``end`` whenever the page has events, as Synapse does: a client learns that the
        # room's start (or the ``to`` token) was reached from the next page, which is empty
        end = _token(page[-1]) if page else None
        shown = await self._visible_page(requester, page, event_filter)
        state: list[dict[str, Any]] = []
        if event_filter is not None and event_filter.lazy_load_members and shown:
            senders = {e.event.sender for e in shown}
            current = await self._events.get_current_state_events(room_id)
            state = await self.serialize(
                requester,
                [
                    s
                    for (t, k), s in sorted(current.items())
                    if t == "m.room.member" and k in senders
                ],
            )
        return MessagesPage(
            await self.serialize(requester, shown), from_token or _pos_token(start), end, state
        )

    async def context(
        self,
        requester: Requester,
        room_id: str,
        event_id: str,
        *,
        limit: int,
        event_filter: RoomEventFilter | None = None,
    ) -> ContextPage:
        """Events around ``event_id`` and the state at the last one returned.

        Raises:
            NotFound: the event is unknown, in another room or hidden from the user.
            Forbidden: the user may not read the room.
        """
        await self._history_access(requester, room_id)
        target = await self._events.get_event(event_id)
        if target is None or target.outlier or client_event(target)["room_id"] != room_id:
            raise NotFound("Event not found")
        if not await self._visibility.filter_events_for_user(requester.user_id, [target]):
            raise NotFound("Event not found")
        if event_filter is not None and event_filter.limit is not None:
            limit = min(limit, event_filter.limit)
        limit = max(0, min(limit, _MAX_LIMIT))
        position = (target.depth, target.stream_ordering)
        n_before = limit // 2
        n_after = limit - n_before
        before = await self._events.paginate(room_id, position, "b", n_before) if n_before else []
        after = await self._events.paginate(room_id, position, "f", n_after) if n_after else []
        start = _token(before[-1]) if before else _token(target)
        end = _token(after[-1]) if after else _token(target)
        shown_before = await self._visible_page(requester, before, event_filter)
        shown_after = await self._visible_page(requester, after, event_filter)
        last = shown_after[-1] if shown_after else target
        state_map = await self._events.get_state_events_after(last.event.event_id) or {}
        shown = [target, *shown_before, *shown_after]
        senders = {e.event.sender for e in shown}
        state = []
        for (event_type, key), stored in sorted(state_map.items()):
            if event_filter is not None:
                if not event_filter.matches(_filterable(stored)):
                    continue
                if (
                    event_filter.lazy_load_members
                    and event_type == "m.room.member"
                    and key not in senders
                ):
                    continue
            state.append(stored)
        return ContextPage(
            (await self.serialize(requester, [target]))[0],
            await self.serialize(requester, shown_before),
            await self.serialize(requester, shown_after),
            await self.serialize(requester, state),
            start,
            end,
        )

    async def timestamp_to_event(
        self, requester: Requester, room_id: str, ts: int, direction: Literal["b", "f"]
    ) -> StoredEvent:
        """The event nearest to ``ts`` in ``direction`` that the user may see.

        Raises:
            NotFound: there is none.
            Forbidden: the user may not read the room.
        """
        await self._history_access(requester, room_id)
        offset = 0
        while offset < _TS_SCAN_MAX:
            batch = await self._events.events_near_timestamp(
                room_id, ts, direction, limit=_TS_SCAN_BATCH, offset=offset
            )
            if not batch:
                break
            ordered = sorted(batch, key=lambda e: e.stream_ordering)
            visible = {
                e.event.event_id
                for e in await self._visibility.filter_events_for_user(requester.user_id, ordered)
            }
            for stored in batch:
                if stored.event.event_id in visible:
                    return stored
            offset += len(batch)
        where = "forward" if direction == "f" else "backward"
        raise NotFound(f"Unable to find event from {ts} in {where} direction")


def _pos_token(position: tuple[int, int]) -> str:
    return f"t{position[0]}_{position[1]}"


def _after(a: StoredEvent, b: StoredEvent) -> bool:
    return (a.depth, a.stream_ordering) > (b.depth, b.stream_ordering)


def _filterable(stored: StoredEvent) -> dict[str, Any]:
    """What a ``RoomEventFilter`` looks at (the room list is checked once per request)."""
    event = stored.event
    return {"type": event.type, "sender": event.sender, "content": event.content}
