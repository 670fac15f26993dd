"""What a user may read of a room: their membership over time, forgotten rooms.

Reads for :class:`~homeserver.services.visibility.HistoryVisibility` (spec: client-server
"Room History Visibility"): the rule depends on the user's membership and the room's
``m.room.history_visibility`` *at each event*, which this store answers from the state groups
(``docs/discussion/rooms_storage.md``) without loading whole room states: one recursive walk per
distinct state group, keeping only the two keys the rule needs.

:meth:`RoomAccessStore.get_visibility_facts` answers everything a page of events needs in one
unit of work, and answers the common case (the user has been joined since before the page) from
the current state alone.

Forgotten rooms (``POST /rooms/{roomId}/forget``) are rows naming the user's member event when
they forgot; a newer member event (re-join, invite, knock) makes the row stale, so nothing has to
delete it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import BigInteger, Boolean, Text, bindparam, select, text

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import current_state, events, forgotten_rooms

__all__ = ["MemberState", "RoomAccess", "RoomAccessStore", "VisibilityFacts"]

_MEMBER = "m.room.member"
_HISTORY = "m.room.history_visibility"


@dataclass(frozen=True, slots=True)
class MemberState:
    """A user's membership and the room's history visibility at one point of the room."""

    membership: str | None
    history_visibility: str | None


@dataclass(frozen=True, slots=True)
class RoomAccess:
    """A user's current relation to a room."""

    #: current membership (None: never had one)
    membership: str | None
    #: the current member event, its stream ordering and depth
    member_event_id: str | None
    member_stream: int | None
    member_depth: int | None
    #: the user forgot the room and has not come back since
    forgotten: bool
    #: the room's current ``history_visibility`` (None: unset)
    history_visibility: str | None


@dataclass(frozen=True, slots=True)
class VisibilityFacts:
    """Everything the history-visibility rule needs for a range of one room's events."""

    access: RoomAccess
    #: the user has been joined since before the range (the rule then allows everything)
    joined_throughout: bool
    #: (membership, visibility) after each asked-for state group
    at_groups: dict[int, MemberState] = field(default_factory=dict)
    #: the state group of each asked-for earlier event
    groups_of: dict[str, int] = field(default_factory=dict)
    #: (depth, stream ordering) of every join of the user, oldest first
    joins: list[tuple[int, int]] = field(default_factory=list)


_CURRENT_MEMBER = (
    select(
        current_state.c.event_id,
        current_state.c.membership,
        events.c.stream_ordering,
        events.c.depth,
    )
    .select_from(current_state.join(events, events.c.event_id == current_state.c.event_id))
    .where(
        current_state.c.room_id == bindparam("room_id"),
        current_state.c.type == _MEMBER,
        current_state.c.state_key == bindparam("user_id"),
    )
)
_CURRENT_HISTORY = (
    select(events.c.json)
    .select_from(current_state.join(events, events.c.event_id == current_state.c.event_id))
    .where(
        current_state.c.room_id == bindparam("room_id"),
        current_state.c.type == _HISTORY,
        current_state.c.state_key == "",
    )
)
_FORGOTTEN = select(forgotten_rooms.c.event_id).where(
    forgotten_rooms.c.user_id == bindparam("user_id"),
    forgotten_rooms.c.room_id == bindparam("room_id"),
)
_FORGET = text(
    "INSERT INTO forgotten_rooms (user_id, room_id, event_id, forgotten_ts)"
    " VALUES (:user_id, :room_id, :event_id, :ts)"
    " ON CONFLICT (user_id, room_id) DO UPDATE"
    " SET event_id = excluded.event_id, forgotten_ts = excluded.forgotten_ts"
).bindparams(
    bindparam("user_id", type_=Text),
    bindparam("room_id", type_=Text),
    bindparam("event_id", type_=Text),
    bindparam("ts", type_=BigInteger),
)
# The user's member entry and the visibility entry of a group: its chain back to the snapshot,
# only the two keys (n = steps from the asked-for group: the smallest n wins).
_GROUP_KEYS = text(
    "WITH RECURSIVE chain(id, n) AS ("
    " SELECT id, 0 FROM state_groups WHERE id = :group"
    " UNION ALL"
    " SELECT g.prev_group, chain.n + 1 FROM state_groups g JOIN chain ON g.id = chain.id"
    " WHERE g.prev_group IS NOT NULL"
    ") SELECT chain.n, e.type, e.event_id"
    " FROM chain JOIN state_group_entries e ON e.state_group = chain.id"
    " WHERE (e.type = 'm.room.member' AND e.state_key = :user_id)"
    " OR (e.type = 'm.room.history_visibility' AND e.state_key = '')"
).bindparams(bindparam("group", type_=BigInteger), bindparam("user_id", type_=Text))
_GROUP_OF = select(events.c.state_group).where(events.c.event_id == bindparam("event_id"))
_JSON_OF = select(events.c.json).where(events.c.event_id == bindparam("event_id"))
# The literal type lets the planners use a partial index on member events where there is one.
_USER_MEMBER_EVENTS = text(
    "SELECT depth, stream_ordering, json FROM events"
    " WHERE type = 'm.room.member' AND state_key = :user_id AND room_id = :room_id"
    " AND outlier = :outlier ORDER BY stream_ordering"
).bindparams(
    bindparam("user_id", type_=Text),
    bindparam("room_id", type_=Text),
    bindparam("outlier", type_=Boolean),
)


def _content_value(raw: str | None, key: str) -> str | None:
    """``content[key]`` of a stored PDU's JSON when it is a string (redaction keeps both
    ``membership`` and ``history_visibility``, so the raw JSON answers for redacted events)."""
    if raw is None:
        return None
    content = json.loads(raw).get("content")
    value = content.get(key) if isinstance(content, dict) else None
    return value if isinstance(value, str) else None


async def _access(conn: Conn, room_id: str, user_id: str) -> RoomAccess:
    params = {"room_id": room_id, "user_id": user_id}
    member = await conn.fetch_one(_CURRENT_MEMBER, params)
    history = _content_value(await conn.fetch_val(_CURRENT_HISTORY, params), "history_visibility")
    if member is None:
        return RoomAccess(None, None, None, None, False, history)
    forgotten_at = await conn.fetch_val(_FORGOTTEN, params)
    return RoomAccess(
        member[1],
        member[0],
        int(member[2]),
        int(member[3]),
        forgotten_at is not None and forgotten_at == member[0],
        history,
    )


class RoomAccessStore:
    """Membership over time and forgotten rooms. One unit of work per method."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_access(self, room_id: str, user_id: str) -> RoomAccess:
        """The user's current membership (and whether they forgot the room) and the room's
        current history visibility."""

        async def work(conn: Conn) -> RoomAccess:
            return await _access(conn, room_id, user_id)

        return await self._db.read(work, name="get_room_access")

    async def forget(self, user_id: str, room_id: str, member_event_id: str, ts: int) -> None:
        """Record that ``user_id`` forgot ``room_id`` while ``member_event_id`` was their
        membership."""

        async def work(conn: Conn) -> None:
            await conn.execute(
                _FORGET,
                {"user_id": user_id, "room_id": room_id, "event_id": member_event_id, "ts": ts},
            )

        await self._db.run(work, name="forget_room")

    async def get_visibility_facts(
        self,
        room_id: str,
        user_id: str,
        *,
        groups: Iterable[int],
        earlier_events: Sequence[str] = (),
        since_stream: int,
    ) -> VisibilityFacts:
        """What the history-visibility rule needs for events of ``room_id`` from stream
        position ``since_stream`` on.

        Args:
            groups: the state groups of the events.
            earlier_events: events whose state group is also wanted (the prev event of a state
                event whose "before" state matters); their groups are read as well.
            since_stream: the smallest stream ordering among the events. If the user's current
                membership is a join from before it (and the room is not forgotten), the user
                was joined at every event and nothing else is read.
        """
        wanted = set(groups)

        async def work(conn: Conn) -> VisibilityFacts:
            access = await _access(conn, room_id, user_id)
            if (
                access.membership == "join"
                and access.member_stream is not None
                and access.member_stream < since_stream
            ):
                return VisibilityFacts(access, True)
            groups_of: dict[str, int] = {}
            for event_id in earlier_events:
                group = await conn.fetch_val(_GROUP_OF, {"event_id": event_id})
                if group is not None:
                    groups_of[event_id] = int(group)
            jsons: dict[str, str | None] = {}
            at_groups: dict[int, MemberState] = {}
            for group in wanted | set(groups_of.values()):
                rows = await conn.fetch_all(_GROUP_KEYS, {"group": group, "user_id": user_id})
                found: dict[str, tuple[int, str | None]] = {}
                for n, typ, entry in rows:
                    if typ not in found or int(n) < found[typ][0]:
                        found[typ] = (int(n), entry)
                values: dict[str, str | None] = {}
                for typ, key in ((_MEMBER, "membership"), (_HISTORY, "history_visibility")):
                    state_id = found.get(typ, (0, None))[1]
                    if state_id is None:
                        values[typ] = None
                        continue
                    if state_id not in jsons:
                        jsons[state_id] = await conn.fetch_val(_JSON_OF, {"event_id": state_id})
                    values[typ] = _content_value(jsons[state_id], key)
                at_groups[group] = MemberState(values[_MEMBER], values[_HISTORY])
            joins: list[tuple[int, int]] = []
            rows = await conn.fetch_all(
                _USER_MEMBER_EVENTS, {"user_id": user_id, "room_id": room_id, "outlier": False}
            )
            for depth, stream, raw in rows:
                if _content_value(raw, "membership") == "join":
                    joins.append((int(depth), int(stream)))
            return VisibilityFacts(access, False, at_groups, groups_of, joins)

        return await self._db.read(work, name="get_visibility_facts")
