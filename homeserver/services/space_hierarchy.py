"""The space hierarchy: ``GET /_matrix/client/v1/rooms/{roomId}/hierarchy``.

Spec: client-server-api › Spaces (https://spec.matrix.org/v1.19/client-server-api/#spaces) and
``space_hierarchy.yaml``:

    Paginates over the space tree in a depth-first manner to locate child rooms of a given
    space. [...] Only ``m.space.child`` state events of the room are considered.

The walk: depth first from the requested room, children of each space-room (``room_type``
``m.space``) in the spec's order (a valid ``order`` first, by code point; then the child
event's ``origin_server_ts``; then the room ID), a child event counting only while its
``via`` is a non-empty list. A room is shown when the user may see it (the spec's list:
joined, invited, a public room, a restricted room whose conditions the user meets, a knockable
room, or a ``world_readable`` one); a room the user may not see is left out and not walked
into. Each room is shown once however often it appears (loops end). ``max_depth`` (default and
cap 50) stops the walk below that depth; ``suggested_only`` keeps only children marked
``suggested``.

Pagination is stateless: ``next_batch`` carries the rest of the walk (the rooms still to
visit with their depth, the rooms seen, and the two parameters that must not change), so any
process can continue it. Its size is bounded by the tree, which the limits bound.

Rooms this server does not know are left out for now: filling them in over federation
(``/_matrix/federation/v1/hierarchy``) comes with the federation work on spaces.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from federation.core.events import StateKey
from homeserver.errors import Forbidden, InvalidParam
from homeserver.services.requester import Requester
from homeserver.storage.events import EventStore, StoredEvent

__all__ = ["HierarchyPage", "SpaceHierarchyService"]

DEFAULT_LIMIT = 50
MAX_LIMIT = 100
MAX_DEPTH = 50
#: The ``order`` of a child is valid when it is at most 50 printable ASCII characters.
_ORDER_MAX = 50
_SPACE = "m.space"


@dataclass(frozen=True, slots=True)
class HierarchyPage:
    rooms: list[dict[str, Any]]
    next_batch: str | None


@dataclass(frozen=True, slots=True)
class _Walk:
    """Where a walk stands: rooms to visit (room ID, depth), newest last; rooms seen."""

    stack: list[tuple[str, int]]
    seen: list[str]
    max_depth: int
    suggested_only: bool

    def token(self) -> str:
        raw = orjson.dumps(
            {"k": self.stack, "s": self.seen, "d": self.max_depth, "o": self.suggested_only}
        )
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def from_token(cls, token: str) -> _Walk:
        """Raises: InvalidParam: not a token of ours."""
        try:
            data = orjson.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
            stack = [(str(r), int(d)) for r, d in data["k"]]
            seen = [str(r) for r in data["s"]]
            max_depth, suggested = data["d"], data["o"]
        except (ValueError, TypeError, KeyError, orjson.JSONDecodeError):
            raise InvalidParam("Unknown pagination token") from None
        if not isinstance(max_depth, int) or not isinstance(suggested, bool):
            raise InvalidParam("Unknown pagination token")
        return cls(stack, seen, max_depth, suggested)


def _content(state: Mapping[StateKey, StoredEvent], key: StateKey) -> Mapping[str, Any]:
    stored = state.get(key)
    if stored is None or stored.redacted:
        return {}
    return stored.event.content


def _text(state: Mapping[StateKey, StoredEvent], key: StateKey, field: str) -> str | None:
    value = _content(state, key).get(field)
    return value if isinstance(value, str) else None


def _valid_child(stored: StoredEvent) -> bool:
    via = stored.event.content.get("via")
    return (
        not stored.redacted
        and isinstance(via, list)
        and bool(via)
        and all(isinstance(v, str) for v in via)
    )


def _order_key(stored: StoredEvent) -> tuple[int, str, int, str]:
    """The spec's ordering of space children."""
    order = stored.event.content.get("order")
    valid = (
        isinstance(order, str)
        and len(order) <= _ORDER_MAX
        and all("\x20" <= c <= "\x7e" for c in order)
    )
    return (
        0 if valid else 1,
        order if valid and isinstance(order, str) else "",
        stored.event.origin_server_ts,
        stored.event.state_key or "",
    )


def _allowed_room_ids(join_rules: Mapping[str, Any]) -> list[str]:
    allow = join_rules.get("allow")
    if not isinstance(allow, list):
        return []
    return [
        entry["room_id"]
        for entry in allow
        if isinstance(entry, Mapping)
        and entry.get("type") == "m.room_membership"
        and isinstance(entry.get("room_id"), str)
    ]


class SpaceHierarchyService:
    """Walks space trees of the rooms this server knows.

    Args:
        events: the event store (rooms, current state, memberships).
    """

    def __init__(self, events: EventStore) -> None:
        self._events = events

    async def hierarchy(
        self,
        requester: Requester,
        room_id: str,
        *,
        limit: int | None,
        max_depth: int | None,
        suggested_only: bool,
        from_token: str | None,
    ) -> HierarchyPage:
        """One page of the tree under ``room_id``.

        Raises:
            InvalidParam: a bad ``limit`` or ``max_depth``, an unknown token, or one made for
                other ``max_depth``/``suggested_only``.
            Forbidden: the user may not see the room (or it is unknown).
        """
        if limit is not None and limit < 1:
            raise InvalidParam("'limit' must be greater than zero")
        if max_depth is not None and max_depth < 0:
            raise InvalidParam("'max_depth' must not be negative")
        page_size = min(limit or DEFAULT_LIMIT, MAX_LIMIT)
        depth_cap = min(max_depth if max_depth is not None else MAX_DEPTH, MAX_DEPTH)
        if from_token is not None:
            walk = _Walk.from_token(from_token)
            if walk.max_depth != depth_cap or walk.suggested_only != suggested_only:
                raise InvalidParam("'max_depth' and 'suggested_only' cannot change while paging")
        else:
            root = await self._room(requester, room_id)
            if root is None:
                raise Forbidden("You may not see this room")
            walk = _Walk([(room_id, 0)], [], depth_cap, suggested_only)
        rooms: list[dict[str, Any]] = []
        seen = set(walk.seen)
        while walk.stack and len(rooms) < page_size:
            current, depth = walk.stack.pop()
            if current in seen:
                continue
            seen.add(current)
            walk.seen.append(current)
            found = await self._room(requester, current)
            if found is None:
                continue
            summary, children = found
            rooms.append(summary)
            if depth >= walk.max_depth:
                continue
            for child in reversed(children):
                child_id = child.event.state_key or ""
                if walk.suggested_only and child.event.content.get("suggested") is not True:
                    continue
                if child_id not in seen:
                    walk.stack.append((child_id, depth + 1))
        return HierarchyPage(rooms, walk.token() if walk.stack else None)

    async def _room(
        self, requester: Requester, room_id: str
    ) -> tuple[dict[str, Any], list[StoredEvent]] | None:
        """The room's summary and its (walkable) children, or None when the user may not see
        it or this server does not know it."""
        room = await self._events.get_room(room_id)
        if room is None:
            return None
        state = await self._events.get_current_state_events(room_id)
        if not await self._may_see(requester.user_id, state):
            return None
        create = _content(state, ("m.room.create", ""))
        join_rules = _content(state, ("m.room.join_rules", ""))
        is_space = create.get("type") == _SPACE
        children: list[StoredEvent] = []
        if is_space:
            children = sorted(
                (
                    stored
                    for (event_type, _key), stored in state.items()
                    if event_type == "m.space.child" and _valid_child(stored)
                ),
                key=_order_key,
            )
        members = [key for (event_type, key), _ in state.items() if event_type == "m.room.member"]
        joined = sum(
            1
            for key in members
            if _content(state, ("m.room.member", key)).get("membership") == "join"
        )
        summary: dict[str, Any] = {
            "room_id": room_id,
            "num_joined_members": joined,
            "world_readable": _text(state, ("m.room.history_visibility", ""), "history_visibility")
            == "world_readable",
            "guest_can_join": _text(state, ("m.room.guest_access", ""), "guest_access")
            == "can_join",
            "join_rule": _text(state, ("m.room.join_rules", ""), "join_rule") or "invite",
            "room_version": room.room_version,
            "children_state": [_stripped_child(c) for c in children],
        }
        optional = {
            "name": _text(state, ("m.room.name", ""), "name"),
            "topic": _text(state, ("m.room.topic", ""), "topic"),
            "avatar_url": _text(state, ("m.room.avatar", ""), "url"),
            "canonical_alias": _text(state, ("m.room.canonical_alias", ""), "alias"),
            "room_type": create.get("type") if isinstance(create.get("type"), str) else None,
            "encryption": _text(state, ("m.room.encryption", ""), "algorithm"),
        }
        summary.update({k: v for k, v in optional.items() if v is not None})
        allowed = _allowed_room_ids(join_rules)
        if summary["join_rule"] in ("restricted", "knock_restricted") and allowed:
            summary["allowed_room_ids"] = allowed
        return summary, children

    async def _may_see(self, user_id: str, state: Mapping[StateKey, StoredEvent]) -> bool:
        """The spec's list of rooms the hierarchy may show to ``user_id``."""
        membership = _content(state, ("m.room.member", user_id)).get("membership")
        if membership in ("join", "invite"):
            return True
        if _text(state, ("m.room.history_visibility", ""), "history_visibility") == (
            "world_readable"
        ):
            return True
        join_rules = _content(state, ("m.room.join_rules", ""))
        rule = join_rules.get("join_rule")
        if rule in ("public", "knock", "knock_restricted"):
            return True
        if rule == "restricted":
            for allowed in _allowed_room_ids(join_rules):
                if user_id in await self._joined(allowed):
                    return True
        return False

    async def _joined(self, room_id: str) -> Sequence[str]:
        members = await self._events.get_members(room_id)
        return [user for user, membership, _ in members if membership == "join"]


def _stripped_child(stored: StoredEvent) -> dict[str, Any]:
    return {
        "type": stored.event.type,
        "state_key": stored.event.state_key,
        "content": dict(stored.event.content),
        "sender": stored.event.sender,
        "origin_server_ts": stored.event.origin_server_ts,
    }
