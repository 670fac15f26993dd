"""The published room directory: which rooms are listed, in what order, and what they show.

Publication is the ``is_public`` flag of ``rooms`` (set by ``createRoom`` with ``visibility:
public`` or ``PUT /directory/list/room/{roomId}``). ``GET /publicRooms`` lists published rooms
largest first: ordered by (joined members descending, room ID ascending), and a page is
addressed by the :class:`DirectoryKey` of its first or last room (keyset pagination), so a page
costs the same however deep it is. Joined members are counted from ``current_state`` for
published rooms only (the ``ix_rooms_is_public`` index), per request: there is no counter to
keep in step with every membership change.

What a room shows (name, topic, alias, ...) comes from its current state, read per room with
:meth:`RoomDirectoryStore.get_summaries`. Redacted state events are read redacted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Text, and_, bindparam, func, or_, select, update

from federation.core.redaction import redact
from federation.core.room_versions import get_room_version
from homeserver.storage.db import Conn, Database, Row
from homeserver.storage.schema import current_state, events, rooms

__all__ = [
    "DIRECTORY_STATE_TYPES",
    "FIRST",
    "DirectoryKey",
    "RoomDirectoryStore",
    "RoomSummaryRow",
]

#: The state events (all with state key ``""``) a directory entry is made of.
DIRECTORY_STATE_TYPES: tuple[str, ...] = (
    "m.room.create",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
)


@dataclass(frozen=True, slots=True, order=True)
class DirectoryKey:
    """A room's place in the directory order: more joined members first, then by room ID."""

    joined_members: int
    room_id: str


@dataclass(frozen=True, slots=True)
class RoomSummaryRow:
    room_id: str
    #: the content of each of :data:`DIRECTORY_STATE_TYPES` the room has, by event type
    state: Mapping[str, Mapping[str, Any]]


_JOINED = (
    select(func.count())
    .select_from(current_state)
    .where(
        current_state.c.room_id == rooms.c.room_id,
        current_state.c.type == "m.room.member",
        current_state.c.membership == "join",
    )
    .scalar_subquery()
)
_PUBLISHED = (
    select(rooms.c.room_id.label("room_id"), _JOINED.label("joined"))
    .where(rooms.c.is_public.is_(True))
    .subquery("published")
)
_J = bindparam("joined", type_=BigInteger)
_R = bindparam("room_id", type_=Text)
_LIMIT = bindparam("limit", type_=BigInteger)
# rooms after the key in directory order (fewer members, or as many and a greater room ID)
_AFTER = (
    select(_PUBLISHED.c.room_id, _PUBLISHED.c.joined)
    .where(
        or_(
            _PUBLISHED.c.joined < _J,
            and_(_PUBLISHED.c.joined == _J, _PUBLISHED.c.room_id > _R),
        )
    )
    .order_by(_PUBLISHED.c.joined.desc(), _PUBLISHED.c.room_id)
    .limit(_LIMIT)
)
# rooms before the key, nearest first
_BEFORE = (
    select(_PUBLISHED.c.room_id, _PUBLISHED.c.joined)
    .where(
        or_(
            _PUBLISHED.c.joined > _J,
            and_(_PUBLISHED.c.joined == _J, _PUBLISHED.c.room_id < _R),
        )
    )
    .order_by(_PUBLISHED.c.joined, _PUBLISHED.c.room_id.desc())
    .limit(_LIMIT)
)
_COUNT_PUBLISHED = select(func.count()).select_from(rooms).where(rooms.c.is_public.is_(True))
_GET_VISIBILITY = select(rooms.c.is_public).where(rooms.c.room_id == bindparam("room_id"))
_SET_VISIBILITY = (
    update(rooms).where(rooms.c.room_id == bindparam("room_id")).values(is_public=bindparam("pub"))
)
_SUMMARY_STATE = (
    select(current_state.c.type, events.c.json, events.c.redacted, rooms.c.room_version)
    .select_from(
        current_state.join(events, events.c.event_id == current_state.c.event_id).join(
            rooms, rooms.c.room_id == current_state.c.room_id
        )
    )
    .where(
        current_state.c.room_id == bindparam("room_id"),
        current_state.c.state_key == "",
        or_(*(current_state.c.type == t for t in DIRECTORY_STATE_TYPES)),
    )
)

#: A key before every room: more members than any room can have.
FIRST = DirectoryKey(2**62, "")


def _content(raw: str, redacted: bool, room_version: str) -> Mapping[str, Any]:
    pdu = json.loads(raw)
    if redacted:
        pdu = redact(get_room_version(room_version), pdu)
    content = pdu.get("content")
    return content if isinstance(content, dict) else {}


class RoomDirectoryStore:
    """Room directory visibility and the published-rooms listing. One unit of work per method."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_visibility(self, room_id: str) -> bool | None:
        """Whether the room is published; None if the room is unknown."""

        async def work(conn: Conn) -> Row | None:
            return await conn.fetch_one(_GET_VISIBILITY, {"room_id": room_id})

        row = await self._db.read(work, name="get_room_visibility")
        return None if row is None else bool(row[0])

    async def set_visibility(self, room_id: str, public: bool) -> bool:
        """Publish or unpublish the room; False if the room is unknown."""

        async def work(conn: Conn) -> int:
            return await conn.execute(_SET_VISIBILITY, {"room_id": room_id, "pub": public})

        return await self._db.run(work, name="set_room_visibility") > 0

    async def count_published(self) -> int:
        async def work(conn: Conn) -> int:
            return int(await conn.fetch_val(_COUNT_PUBLISHED))

        return await self._db.read(work, name="count_published_rooms")

    async def list_published(
        self, key: DirectoryKey, *, backwards: bool, limit: int
    ) -> list[DirectoryKey]:
        """Up to ``limit`` published rooms after ``key`` in directory order (before it when
        ``backwards``, nearest first)."""
        stmt = _BEFORE if backwards else _AFTER
        params = {"joined": key.joined_members, "room_id": key.room_id, "limit": limit}

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(stmt, params)

        rows = await self._db.read(work, name="list_published_rooms")
        return [DirectoryKey(int(r[1]), r[0]) for r in rows]

    async def get_summaries(self, room_ids: Sequence[str]) -> dict[str, RoomSummaryRow]:
        """The directory state of each room, in one read."""
        ids = list(dict.fromkeys(room_ids))

        async def work(conn: Conn) -> dict[str, list[Row]]:
            return {r: await conn.fetch_all(_SUMMARY_STATE, {"room_id": r}) for r in ids}

        out: dict[str, RoomSummaryRow] = {}
        for room_id, rows in (await self._db.read(work, name="get_room_summaries")).items():
            state = {typ: _content(raw, bool(red), ver) for typ, raw, red, ver in rows}
            out[room_id] = RoomSummaryRow(room_id, state)
        return out
