"""Event filters: parse and check filter JSON, match events, cut events down to ``event_fields``.

Spec: client-server-api/_index.md › Filtering, and the OpenAPI definitions
``definitions/sync_filter.yaml`` (``Filter`` with its ``RoomFilter``), ``event_filter.yaml``
(``EventFilter``) and ``room_event_filter.yaml`` (``RoomEventFilter``).

Pure code, no I/O: :func:`parse_sync_filter` turns the JSON a client uploads (or passes inline to
``/sync``) into frozen dataclasses, and :func:`parse_room_event_filter` does the same for the
``filter`` parameter of ``/messages`` and ``/context``. Both raise a
:class:`~homeserver.errors.MatrixError` that names the offending field:

- ``400 M_BAD_JSON``: a field has the wrong JSON type (``"types": "m.room.message"``);
- ``400 M_INVALID_PARAM``: a field has the right type but a value that is not allowed (a negative
  ``limit``, an ``event_format`` other than ``client``/``federation``, a sender that is not a
  user ID).

Rules that are interpretations (documented here because clients depend on them):

- Unknown keys are accepted and ignored, as Synapse does ("forward compatibility"); ``null`` reads
  as absent (Ruma's ``Option`` does the same).
- ``limit``: the spec says "an integer greater than 0", but clients send ``0`` (nheko's
  ``{"presence": {"limit": 0}}``) and ``9007199254740991`` (``Number.MAX_SAFE_INTEGER``) to mean
  "none" and "all"; Synapse accepts both. So any integer in ``[0, 2**53 - 1]`` is accepted (a
  float with an integral value too, since Synapse's schema says ``number``), negative or larger
  values are ``M_INVALID_PARAM``, and the *use* of a limit is capped (:data:`MAX_TIMELINE_LIMIT`).
- ``types`` / ``not_types``: ``*`` matches any sequence of characters anywhere in the pattern, as
  the spec says (Synapse only honours a trailing ``*``; every pattern it accepts means the same
  here). ``senders``, ``rooms`` and their ``not_`` lists are exact matches.
- ``not_*`` wins over the positive list, and an absent positive list includes everything, while an
  empty one (``"types": []``) includes nothing.
- ``event_fields``: dotted paths with the spec's escaping (appendices › Dot-separated property
  paths): ``\\.`` is a literal dot, ``\\\\`` a literal backslash, any other backslash is literal.
  An empty list includes every field, as in Synapse (the spec only defines "absent").
- ``lazy_load_members`` and ``include_redundant_members`` are read from ``room.state`` and
  ``unread_thread_notifications`` from ``room.timeline`` (:class:`SyncFilter` properties), which
  is where Synapse and the clients put them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

import orjson

from federation.core.ids import split_property_path
from homeserver.errors import BadJson, InvalidParam, NotJson

__all__ = [
    "DEFAULT_SYNC_FILTER",
    "DEFAULT_TIMELINE_LIMIT",
    "MAX_FILTER_LIMIT",
    "MAX_TIMELINE_LIMIT",
    "EventFilter",
    "EventFormat",
    "RoomEventFilter",
    "RoomFilter",
    "SyncFilter",
    "decode_filter_param",
    "parse_event_fields_path",
    "parse_room_event_filter",
    "parse_sync_filter",
]

#: The timeline limit of /sync when the filter sets none (Synapse's default).
DEFAULT_TIMELINE_LIMIT = 10
#: The most timeline events per room /sync returns, whatever the filter asks (Synapse's
#: ``filter_timeline_limit`` default).
MAX_TIMELINE_LIMIT = 100
#: The largest ``limit`` accepted at all: JavaScript's ``Number.MAX_SAFE_INTEGER`` (2**53 - 1).
MAX_FILTER_LIMIT = 2**53 - 1

EventFormat = Literal["client", "federation"]
_EVENT_FORMATS: tuple[EventFormat, ...] = ("client", "federation")

# --- matching ------------------------------------------------------------------------------------


@lru_cache(maxsize=4096)
def _wildcard(pattern: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in pattern.split("*")), re.DOTALL)


def _type_matches(actual: object, pattern: str) -> bool:
    if not isinstance(actual, str):
        return False
    if "*" not in pattern:
        return actual == pattern
    return _wildcard(pattern).fullmatch(actual) is not None


def _allowed(value: object, allow: tuple[str, ...] | None, deny: tuple[str, ...]) -> bool:
    """Exact-match include/exclude lists: ``deny`` wins, ``allow=None`` includes everything."""
    if value in deny:
        return False
    return allow is None or value in allow


@dataclass(frozen=True, slots=True)
class EventFilter:
    """An ``EventFilter``: which events (or presence / account data entries) to include.

    ``types``/``senders`` ``None`` means "not filtered"; ``()`` means "nothing".
    """

    limit: int | None = None
    types: tuple[str, ...] | None = None
    not_types: tuple[str, ...] = ()
    senders: tuple[str, ...] | None = None
    not_senders: tuple[str, ...] = ()

    def matches(self, event: Mapping[str, Any]) -> bool:
        """Whether the filter includes ``event`` (by its ``type`` and ``sender``).

        An event without a ``sender`` (account data) passes unless ``senders`` is set.
        """
        return self.matches_type(event.get("type")) and _allowed(
            event.get("sender"), self.senders, self.not_senders
        )

    def matches_type(self, event_type: object) -> bool:
        """Whether an event of this type passes ``types``/``not_types`` (with ``*`` wildcards)."""
        if any(_type_matches(event_type, p) for p in self.not_types):
            return False
        return self.types is None or any(_type_matches(event_type, p) for p in self.types)

    def blocks_all(self) -> bool:
        """True when no event can match (``types: []``, ``senders: []`` or ``not_types: ["*"]``);
        callers can skip fetching that section."""
        return self.types == () or self.senders == () or "*" in self.not_types

    def limit_or(self, default: int, maximum: int) -> int:
        """The filter's ``limit``, else ``default``; never more than ``maximum``."""
        return min(default if self.limit is None else self.limit, maximum)


@dataclass(frozen=True, slots=True)
class RoomEventFilter(EventFilter):
    """A ``RoomEventFilter``: an :class:`EventFilter` plus rooms, ``contains_url`` and the
    lazy-loading and thread-notification switches."""

    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    contains_url: bool | None = None
    lazy_load_members: bool = False
    include_redundant_members: bool = False
    unread_thread_notifications: bool = False

    def matches(self, event: Mapping[str, Any], *, room_id: str | None = None) -> bool:
        """Whether the filter includes ``event``: type, sender, room and ``contains_url``.

        Args:
            event: the event; its ``room_id`` is used for the room lists.
            room_id: the room, for events that do not carry ``room_id`` (ephemeral and room
                account data events in the /sync shape). Overrides ``event["room_id"]``.
        """
        if not EventFilter.matches(self, event):
            return False
        if not self.includes_room(room_id if room_id is not None else event.get("room_id")):
            return False
        if self.contains_url is not None:
            content = event.get("content")
            has_url = isinstance(content, Mapping) and isinstance(content.get("url"), str)
            if has_url != self.contains_url:
                return False
        return True

    def includes_room(self, room_id: object) -> bool:
        """Whether ``rooms``/``not_rooms`` let the room through."""
        return _allowed(room_id, self.rooms, self.not_rooms)

    def blocks_all(self) -> bool:
        return EventFilter.blocks_all(self) or self.rooms == ()


@dataclass(frozen=True, slots=True)
class RoomFilter:
    """The ``room`` part of a filter. ``rooms``/``not_rooms`` apply before the four filters."""

    rooms: tuple[str, ...] | None = None
    not_rooms: tuple[str, ...] = ()
    include_leave: bool = False
    timeline: RoomEventFilter = field(default_factory=RoomEventFilter)
    state: RoomEventFilter = field(default_factory=RoomEventFilter)
    ephemeral: RoomEventFilter = field(default_factory=RoomEventFilter)
    account_data: RoomEventFilter = field(default_factory=RoomEventFilter)

    def includes_room(self, room_id: str) -> bool:
        """Whether the room appears in the response at all (``rooms``/``not_rooms``)."""
        return _allowed(room_id, self.rooms, self.not_rooms)


# --- event_fields --------------------------------------------------------------------------------


@lru_cache(maxsize=1024)
def parse_event_fields_path(path: str) -> tuple[str, ...]:
    r"""Split a dot-separated property path into keys (``content.m\.relates_to`` →
    ``("content", "m.relates_to")``); ``\.`` and ``\\`` are escapes, other backslashes literal."""
    return tuple(split_property_path(path))


def _copy_path(src: Mapping[str, Any], dst: dict[str, Any], keys: tuple[str, ...]) -> None:
    key = keys[0]
    if key not in src:
        return
    value = src[key]
    if len(keys) == 1:
        dst[key] = value
        return
    if not isinstance(value, Mapping):
        return
    existing = dst.get(key)
    if existing is value:  # the whole object was already included by a shorter path
        return
    target: dict[str, Any] = existing if isinstance(existing, dict) else {}
    _copy_path(value, target, keys[1:])
    if target:  # no empty objects for paths that lead nowhere
        dst[key] = target


@dataclass(frozen=True, slots=True)
class SyncFilter:
    """A whole filter (the spec's ``Filter``), as ``/sync`` uses it."""

    event_fields: tuple[str, ...] | None = None
    event_format: EventFormat = "client"
    presence: EventFilter = field(default_factory=EventFilter)
    account_data: EventFilter = field(default_factory=EventFilter)
    room: RoomFilter = field(default_factory=RoomFilter)

    def format_event(self, event: dict[str, Any]) -> dict[str, Any]:
        """``event`` cut down to ``event_fields`` (the spec's dotted paths).

        Returns ``event`` itself when ``event_fields`` is absent or empty; otherwise a new dict
        whose leaf values are shared with ``event`` (neither is modified). Paths that do not exist
        in the event are skipped. Turning events into the federation format is the caller's job.
        """
        if not self.event_fields:
            return event
        out: dict[str, Any] = {}
        for path in self.event_fields:
            _copy_path(event, out, parse_event_fields_path(path))
        return out

    @property
    def timeline_limit(self) -> int:
        """Timeline events per room: ``room.timeline.limit``, default
        :data:`DEFAULT_TIMELINE_LIMIT`, at most :data:`MAX_TIMELINE_LIMIT`."""
        return self.room.timeline.limit_or(DEFAULT_TIMELINE_LIMIT, MAX_TIMELINE_LIMIT)

    @property
    def lazy_load_members(self) -> bool:
        """``room.state.lazy_load_members``."""
        return self.room.state.lazy_load_members

    @property
    def include_redundant_members(self) -> bool:
        """``room.state.include_redundant_members`` (meaningful only with lazy loading)."""
        return self.room.state.lazy_load_members and self.room.state.include_redundant_members

    @property
    def unread_thread_notifications(self) -> bool:
        """``room.timeline.unread_thread_notifications``."""
        return self.room.timeline.unread_thread_notifications


DEFAULT_SYNC_FILTER = SyncFilter()


# --- parsing -------------------------------------------------------------------------------------


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadJson(f"Invalid filter: {where} must be a JSON object")
    return value


def _field(obj: Mapping[str, Any], key: str) -> Any:
    """``obj[key]``, with ``null`` read as absent."""
    return obj.get(key)


def _where(prefix: str, key: str) -> str:
    return f"'{prefix}.{key}'" if prefix else f"'{key}'"


def _strings(obj: Mapping[str, Any], key: str, prefix: str) -> tuple[str, ...] | None:
    value = _field(obj, key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise BadJson(f"Invalid filter: {_where(prefix, key)} must be an array of strings")
    return tuple(value)


def _ids(obj: Mapping[str, Any], key: str, prefix: str, sigil: str) -> tuple[str, ...] | None:
    values = _strings(obj, key, prefix)
    if values is None:
        return None
    kind = "user IDs" if sigil == "@" else "room IDs"
    for v in values:
        if not v.startswith(sigil) or len(v) < 2:
            raise InvalidParam(
                f"Invalid filter: {_where(prefix, key)} must hold {kind} (starting with "
                f"{sigil!r}), not {v[:100]!r}"
            )
    return values


def _bool(obj: Mapping[str, Any], key: str, prefix: str) -> bool | None:
    value = _field(obj, key)
    if value is None:
        return None
    if not isinstance(value, bool):
        raise BadJson(f"Invalid filter: {_where(prefix, key)} must be true or false")
    return value


def _limit(obj: Mapping[str, Any], prefix: str) -> int | None:
    value = _field(obj, "limit")
    if value is None:
        return None
    where = _where(prefix, "limit")
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadJson(f"Invalid filter: {where} must be an integer")
    if isinstance(value, float):
        if not value.is_integer():
            raise BadJson(f"Invalid filter: {where} must be an integer, not {value!r}")
        value = int(value)
    if value < 0:
        raise InvalidParam(f"Invalid filter: {where} must not be negative")
    if value > MAX_FILTER_LIMIT:
        raise InvalidParam(f"Invalid filter: {where} must be at most {MAX_FILTER_LIMIT}")
    return value


def _event_filter(value: Any, prefix: str) -> EventFilter:
    if value is None:
        return EventFilter()
    obj = _object(value, f"'{prefix}'")
    return EventFilter(
        limit=_limit(obj, prefix),
        types=_strings(obj, "types", prefix),
        not_types=_strings(obj, "not_types", prefix) or (),
        senders=_ids(obj, "senders", prefix, "@"),
        not_senders=_ids(obj, "not_senders", prefix, "@") or (),
    )


def _room_event_filter(value: Any, prefix: str) -> RoomEventFilter:
    if value is None:
        return RoomEventFilter()
    obj = _object(value, f"'{prefix}'" if prefix else "the filter")
    base = _event_filter(obj, prefix)
    return RoomEventFilter(
        limit=base.limit,
        types=base.types,
        not_types=base.not_types,
        senders=base.senders,
        not_senders=base.not_senders,
        rooms=_ids(obj, "rooms", prefix, "!"),
        not_rooms=_ids(obj, "not_rooms", prefix, "!") or (),
        contains_url=_bool(obj, "contains_url", prefix),
        lazy_load_members=bool(_bool(obj, "lazy_load_members", prefix)),
        include_redundant_members=bool(_bool(obj, "include_redundant_members", prefix)),
        unread_thread_notifications=bool(_bool(obj, "unread_thread_notifications", prefix)),
    )


def _room_filter(value: Any) -> RoomFilter:
    if value is None:
        return RoomFilter()
    obj = _object(value, "'room'")
    return RoomFilter(
        rooms=_ids(obj, "rooms", "room", "!"),
        not_rooms=_ids(obj, "not_rooms", "room", "!") or (),
        include_leave=bool(_bool(obj, "include_leave", "room")),
        timeline=_room_event_filter(_field(obj, "timeline"), "room.timeline"),
        state=_room_event_filter(_field(obj, "state"), "room.state"),
        ephemeral=_room_event_filter(_field(obj, "ephemeral"), "room.ephemeral"),
        account_data=_room_event_filter(_field(obj, "account_data"), "room.account_data"),
    )


def _event_format(obj: Mapping[str, Any]) -> EventFormat:
    value = _field(obj, "event_format")
    if value is None:
        return "client"
    if not isinstance(value, str):
        raise BadJson("Invalid filter: 'event_format' must be a string")
    for known in _EVENT_FORMATS:
        if value == known:
            return known
    raise InvalidParam(
        f"Invalid filter: 'event_format' must be 'client' or 'federation', not {value[:100]!r}"
    )


def parse_sync_filter(body: Any) -> SyncFilter:
    """Check a filter (the body of ``POST /user/{userId}/filter`` or ``/sync``'s inline filter).

    Raises:
        BadJson: ``body`` is not an object, or a field has the wrong JSON type.
        InvalidParam: a field has a value the spec does not allow.
    """
    obj = _object(body, "the filter")
    return SyncFilter(
        event_fields=_strings(obj, "event_fields", ""),
        event_format=_event_format(obj),
        presence=_event_filter(_field(obj, "presence"), "presence"),
        account_data=_event_filter(_field(obj, "account_data"), "account_data"),
        room=_room_filter(_field(obj, "room")),
    )


def decode_filter_param(text: str) -> Any:
    """Decode an inline filter given as a query parameter (``/sync?filter={...}``,
    ``/messages?filter=...``); check the result with the ``parse_*`` functions.

    Raises:
        NotJson: ``text`` is not JSON (Synapse answers ``M_NOT_JSON`` too).
    """
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        raise NotJson("Invalid filter: the 'filter' parameter is not valid JSON") from None


def parse_room_event_filter(body: Any) -> RoomEventFilter:
    """Check a ``RoomEventFilter`` (the decoded ``filter`` parameter of ``/messages`` and
    ``/context``).

    Raises:
        BadJson: ``body`` is not an object, or a field has the wrong JSON type.
        InvalidParam: a field has a value the spec does not allow.
    """
    return _room_event_filter(_object(body, "the filter"), "")
