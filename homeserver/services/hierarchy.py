"""Space hierarchy: the rooms of a space tree a user may see.

Spec: client-server-api › Spaces (``m.space.child``, "Ordering of children within a space")
and ``GET /_matrix/client/v1/rooms/{roomId}/hierarchy`` (space_hierarchy.yaml, v1.2).

The walk is depth-first from the requested room, as the spec says ("Paginates over the space
tree in a depth-first manner"), over the ``m.space.child`` state events whose ``via`` is a
non-empty list of strings (an emptied ``content`` removes a child), children in the spec's order:
a valid ``order`` (1-50 characters of ``\\x20``-``\\x7E``) first, by ``order``; then by the
event's ``origin_server_ts``; ties by room ID. A room is listed when the user may see it, the
spec's conditions: joined, invited, join rule ``public``, ``knock`` or ``knock_restricted``,
``restricted`` / ``knock_restricted`` with the user joined to one of the ``allow`` rooms, or
history ``world_readable``. A room the user may not see is left out with its subtree; the
requested room itself gives 403 (also when it is unknown, as the spec lists). Each room is
visited once.

Only rooms this server knows (has current state for) are listed: children on other servers are
left out, since the federation hierarchy request is not implemented.

Pagination holds no state: ``next_batch`` is the offset into the walk with the
``suggested_only`` and ``max_depth`` it was made with (changing them is 400, as the spec says), and
each page walks the tree again, at most :data:`MAX_VISITED` rooms.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from federation.core.events import StateKey
from homeserver.errors import Forbidden, InvalidParam
from homeserver.services.directory import PublishedRoom, published_room
from homeserver.services.requester import Requester
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.room_directory import DirectoryKey, RoomSummaryRow

__all__ = [
    "DEFAULT_LIMIT",
    "MAX_DEPTH",
    "MAX_LIMIT",
    "MAX_VISITED",
    "HierarchyPage",
    "HierarchyRoom",
    "HierarchyService",
]

#: Rooms per page when the client gives no ``limit``, and the most it may ask for.
DEFAULT_LIMIT = 50
MAX_LIMIT = 50
#: The deepest walk (also the default ``max_depth``).
MAX_DEPTH = 50
#: The most rooms one request looks at.
MAX_VISITED = 1000

_CHILD = "m.space.child"
_VISIBLE_JOIN_RULES = frozenset({"public", "knock", "knock_restricted"})
_RESTRICTED = frozenset({"restricted", "knock_restricted"})


@dataclass(frozen=True, slots=True)
class HierarchyRoom:
    """A ``SpaceHierarchyRoomsChunk``: the room's summary and its ``m.space.child`` events."""

    summary: PublishedRoom
    children_state: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class HierarchyPage:
    rooms: list[HierarchyRoom]
    next_batch: str | None


@dataclass(frozen=True, slots=True)
class _Room:
    room_id: str
    state: Mapping[StateKey, StoredEvent]

    def content(self, event_type: str, state_key: str = "") -> Mapping[str, Any]:
        stored = self.state.get((event_type, state_key))
        return stored.event.content if stored is not None else {}

    def membership(self, user_id: str) -> str | None:
        value = self.content("m.room.member", user_id).get("membership")
        return value if isinstance(value, str) else None


def _valid_order(order: Any) -> bool:
    return (
        isinstance(order, str)
        and 0 < len(order) <= 50
        and all("\x20" <= ch <= "\x7e" for ch in order)
    )


def _children(room: _Room, *, suggested_only: bool) -> list[StoredEvent]:
    """The room's valid ``m.space.child`` events, in the spec's order."""
    found = []
    for (event_type, _), stored in room.state.items():
        if event_type != _CHILD:
            continue
        via = stored.event.content.get("via")
        if not isinstance(via, list) or not via or not all(isinstance(v, str) for v in via):
            continue
        if suggested_only and stored.event.content.get("suggested") is not True:
            continue
        found.append(stored)

    def key(stored: StoredEvent) -> tuple[int, str, int, str]:
        order = stored.event.content.get("order")
        valid = isinstance(order, str) and _valid_order(order)
        return (
            0 if valid else 1,
            order if isinstance(order, str) and valid else "",
            stored.event.origin_server_ts,
            stored.event.state_key or "",
        )

    return sorted(found, key=key)


def _stripped(stored: StoredEvent) -> dict[str, Any]:
    event = stored.event
    return {
        "type": event.type,
        "state_key": event.state_key,
        "content": dict(event.content),
        "sender": event.sender,
        "origin_server_ts": event.origin_server_ts,
    }


def _summary(room: _Room) -> PublishedRoom:
    joined = sum(
        1
        for (event_type, _), stored in room.state.items()
        if event_type == "m.room.member" and stored.event.content.get("membership") == "join"
    )
    state = {t: stored.event.content for (t, k), stored in room.state.items() if k == ""}
    return published_room(DirectoryKey(joined, room.room_id), RoomSummaryRow(room.room_id, state))


def _encode_token(offset: int, suggested_only: bool, max_depth: int) -> str:
    return f"{offset}_{int(suggested_only)}_{max_depth}"


def _decode_token(token: str, suggested_only: bool, max_depth: int) -> int:
    parts = token.split("_")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise InvalidParam("Unknown pagination token")
    offset, suggested, depth = (int(p) for p in parts)
    if (bool(suggested), depth) != (suggested_only, max_depth):
        raise InvalidParam("suggested_only and max_depth cannot change on paginated requests")
    return offset


class HierarchyService:
    """Walks space trees.

    Args:
        events: the rooms' current state.
    """

    def __init__(self, events: EventStore) -> None:
        self._events = events

    async def hierarchy(
        self,
        requester: Requester,
        room_id: str,
        *,
        suggested_only: bool = False,
        limit: int | None = None,
        max_depth: int | None = None,
        from_token: str | None = None,
    ) -> HierarchyPage:
        """One page of the space tree under ``room_id``.

        Raises:
            Forbidden: the user may not see ``room_id``, or this server does not know it.
            InvalidParam: ``limit`` below 1, ``max_depth`` below 0, an unknown ``from``, or
                ``from`` made with another ``suggested_only`` / ``max_depth``.
        """
        if limit is not None and limit < 1:
            raise InvalidParam("limit must be a positive integer")
        if max_depth is not None and max_depth < 0:
            raise InvalidParam("max_depth must be a non-negative integer")
        page_size = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        depth_limit = MAX_DEPTH if max_depth is None else min(max_depth, MAX_DEPTH)
        offset = 0 if from_token is None else _decode_token(from_token, suggested_only, depth_limit)

        root = await self._load(room_id)
        if root is None or not await self._may_see(requester.user_id, root):
            raise Forbidden("You may not see this room's hierarchy")

        listed: list[HierarchyRoom] = []
        seen = {room_id}
        stack: list[tuple[_Room, int]] = [(root, 0)]
        more = False
        while stack and len(seen) <= MAX_VISITED:
            room, depth = stack.pop()
            children = _children(room, suggested_only=suggested_only)
            if len(listed) >= offset + page_size:
                more = True
                break
            listed.append(HierarchyRoom(_summary(room), [_stripped(c) for c in children]))
            if depth >= depth_limit:
                continue
            next_rooms: list[_Room] = []
            for child in children:
                child_id = child.event.state_key or ""
                if child_id in seen or len(seen) >= MAX_VISITED:
                    continue
                seen.add(child_id)
                loaded = await self._load(child_id)
                if loaded is not None and await self._may_see(requester.user_id, loaded):
                    next_rooms.append(loaded)
            # the first child is walked next: pushed last
            stack.extend((r, depth + 1) for r in reversed(next_rooms))
        page = listed[offset : offset + page_size]
        next_batch = (
            _encode_token(offset + page_size, suggested_only, depth_limit) if more else None
        )
        return HierarchyPage(page, next_batch)

    async def _load(self, room_id: str) -> _Room | None:
        state = await self._events.get_current_state_events(room_id)
        if ("m.room.create", "") not in state:
            return None
        return _Room(room_id, state)

    async def _may_see(self, user_id: str, room: _Room) -> bool:
        if room.membership(user_id) in ("join", "invite"):
            return True
        join_rule = room.content("m.room.join_rules").get("join_rule")
        if join_rule in _VISIBLE_JOIN_RULES:
            return True
        if room.content("m.room.history_visibility").get("history_visibility") == (
            "world_readable"
        ):
            return True
        if join_rule in _RESTRICTED:
            allow = room.content("m.room.join_rules").get("allow")
            for entry in allow if isinstance(allow, list) else []:
                if not isinstance(entry, Mapping) or entry.get("type") != "m.room_membership":
                    continue
                other = entry.get("room_id")
                if not isinstance(other, str):
                    continue
                member = await self._events.get_current_state_event(other, "m.room.member", user_id)
                if member is not None and member.event.content.get("membership") == "join":
                    return True
        return False
