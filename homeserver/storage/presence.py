"""Presence of local users, and the "who shares a room with whom" reads presence needs.

The ``presence`` table holds each user's presence as last *published*: state, status message,
``currently_active``, the last-active time and the PRESENCE stream position of the change.
The presence service coalesces changes in memory and writes them in batches
(:meth:`PresenceStore.write_changes`: one transaction, one position per user, allocated last);
last-active times that change nothing clients see are written without a position
(:meth:`PresenceStore.write_last_active`).

``/sync`` asks for "presence changes in (from, to] of users who share a room with me"
(:meth:`PresenceStore.changes_for`): the ``stream_id`` index finds the changed rows, and for each
one an ``EXISTS`` over ``current_state`` (the ``(state_key, type, membership)`` index for the
changed user's rooms, the primary key for the viewer's membership) checks that they share a
room. The cost follows the number of changes, not the number of rooms or members.

The rows also carry the target's last-seen privacy setting (global account data of type
:data:`PRIVACY_TYPE`), joined in the same query, so enforcing it costs no extra round trip.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import BigInteger, Boolean, Text, bindparam, select, text

from homeserver.storage.db import Conn, Database, Row
from homeserver.storage.schema import current_state, presence
from homeserver.storage.stream_ids import next_positions
from homeserver.streams import StreamName

__all__ = [
    "PRIVACY_TYPE",
    "PresenceChange",
    "PresenceRow",
    "PresenceStore",
    "PresenceWrite",
]

#: The global account data type holding a user's last-seen privacy (unstable, namespaced).
PRIVACY_TYPE = "org.trio_homeserver.last_seen_privacy"

JsonObject = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class PresenceRow:
    """A user's published presence."""

    user_id: str
    state: str
    status_msg: str | None
    #: ms since the epoch; 0: never active
    last_active_ts: int
    currently_active: bool
    stream_id: int
    privacy_stream_id: int


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A change to publish (the stream position is allocated by the store)."""

    user_id: str
    state: str
    status_msg: str | None
    last_active_ts: int
    currently_active: bool
    #: the user changed their last-seen privacy: record this position as ``privacy_stream_id``
    privacy_changed: bool = False


@dataclass(frozen=True, slots=True)
class PresenceWrite:
    """A published change: its row and the rooms the user is joined to (whom to notify)."""

    row: PresenceRow
    room_ids: list[str]


_COLUMNS = (
    presence.c.user_id,
    presence.c.state,
    presence.c.status_msg,
    presence.c.last_active_ts,
    presence.c.currently_active,
    presence.c.stream_id,
    presence.c.privacy_stream_id,
)
_GET = select(*_COLUMNS).where(presence.c.user_id == bindparam("user_id"))
_NOT_OFFLINE = select(*_COLUMNS).where(presence.c.state != "offline")
_UPSERT = text(
    "INSERT INTO presence (user_id, state, status_msg, last_active_ts, currently_active,"
    " stream_id, privacy_stream_id)"
    " VALUES (:user_id, :state, :status_msg, :last_active_ts, :currently_active, :stream_id,"
    " :privacy_stream_id)"
    " ON CONFLICT (user_id) DO UPDATE SET state = excluded.state,"
    " status_msg = excluded.status_msg, last_active_ts = excluded.last_active_ts,"
    " currently_active = excluded.currently_active, stream_id = excluded.stream_id,"
    " privacy_stream_id = CASE WHEN excluded.privacy_stream_id > 0"
    " THEN excluded.privacy_stream_id ELSE presence.privacy_stream_id END"
    " RETURNING privacy_stream_id"
).bindparams(
    bindparam("user_id", type_=Text),
    bindparam("state", type_=Text),
    bindparam("status_msg", type_=Text),
    bindparam("last_active_ts", type_=BigInteger),
    bindparam("currently_active", type_=Boolean),
    bindparam("stream_id", type_=BigInteger),
    bindparam("privacy_stream_id", type_=BigInteger),
)
_SET_LAST_ACTIVE = text(
    "UPDATE presence SET last_active_ts = :ts WHERE user_id = :user_id AND last_active_ts < :ts"
).bindparams(bindparam("user_id", type_=Text), bindparam("ts", type_=BigInteger))
_JOINED_ROOMS = (
    select(current_state.c.room_id)
    .where(
        current_state.c.state_key == bindparam("user_id"),
        current_state.c.type == "m.room.member",
        current_state.c.membership == "join",
    )
    .order_by(current_state.c.room_id)
)
_SHARE_A_ROOM = text(
    "SELECT 1 FROM current_state a JOIN current_state b ON b.room_id = a.room_id"
    " AND b.type = 'm.room.member' AND b.state_key = :b AND b.membership = 'join'"
    " WHERE a.type = 'm.room.member' AND a.state_key = :a AND a.membership = 'join'"
    " LIMIT 1"
).bindparams(bindparam("a", type_=Text), bindparam("b", type_=Text))
_PRIVACY = text(
    "SELECT content_json FROM account_data"
    " WHERE user_id = :user_id AND room_id = '' AND data_type = :data_type"
).bindparams(bindparam("user_id", type_=Text), bindparam("data_type", type_=Text))

_SELECT_WITH_PRIVACY = (
    "SELECT p.user_id, p.state, p.status_msg, p.last_active_ts, p.currently_active,"
    " p.stream_id, p.privacy_stream_id, ad.content_json"
    " FROM presence p LEFT JOIN account_data ad ON ad.user_id = p.user_id"
    " AND ad.room_id = '' AND ad.data_type = :data_type"
)
# Changed rows first (stream_id index), then: is it the viewer, or do they share a room?
_CHANGES_SINCE = text(
    _SELECT_WITH_PRIVACY + " WHERE p.stream_id > :since AND p.stream_id <= :upto"
    " AND (p.user_id = :viewer OR EXISTS ("
    " SELECT 1 FROM current_state a JOIN current_state b ON b.room_id = a.room_id"
    " AND b.type = 'm.room.member' AND b.state_key = :viewer AND b.membership = 'join'"
    " WHERE a.type = 'm.room.member' AND a.state_key = p.user_id AND a.membership = 'join'))"
    " ORDER BY p.stream_id"
).bindparams(
    bindparam("data_type", type_=Text),
    bindparam("since", type_=BigInteger),
    bindparam("upto", type_=BigInteger),
    bindparam("viewer", type_=Text),
)
# Initial sync: the viewer's fellow members first (their rooms), then those members' rows.
_ALL_FOR = text(
    _SELECT_WITH_PRIVACY + " WHERE p.stream_id <= :upto AND (p.user_id = :viewer"
    " OR p.user_id IN (SELECT a.state_key FROM current_state b JOIN current_state a"
    " ON a.room_id = b.room_id AND a.type = 'm.room.member' AND a.membership = 'join'"
    " WHERE b.type = 'm.room.member' AND b.state_key = :viewer AND b.membership = 'join'))"
    " ORDER BY p.stream_id"
).bindparams(
    bindparam("data_type", type_=Text),
    bindparam("upto", type_=BigInteger),
    bindparam("viewer", type_=Text),
)
_GET_WITH_PRIVACY = text(_SELECT_WITH_PRIVACY + " WHERE p.user_id = :user_id").bindparams(
    bindparam("data_type", type_=Text), bindparam("user_id", type_=Text)
)


def _row(r: Row) -> PresenceRow:
    return PresenceRow(r[0], r[1], r[2], int(r[3]), bool(r[4]), int(r[5]), int(r[6]))


def _privacy(content_json: str | None) -> JsonObject | None:
    if content_json is None:
        return None
    try:
        content = orjson.loads(content_json)
    except orjson.JSONDecodeError:
        return None
    return content if isinstance(content, dict) else None


class PresenceStore:
    """Read and write presence; shared-room reads."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user_id: str) -> PresenceRow | None:
        async def work(conn: Conn) -> Row | None:
            return await conn.fetch_one(_GET, {"user_id": user_id})

        row = await self._db.read(work, name="get_presence")
        return None if row is None else _row(row)

    async def get_many(self, user_ids: Sequence[str]) -> dict[str, PresenceRow]:
        """The rows of those of ``user_ids`` that have one."""
        ids = list(dict.fromkeys(user_ids))

        async def work(conn: Conn) -> list[Row]:
            rows: list[Row] = []
            for user_id in ids:
                row = await conn.fetch_one(_GET, {"user_id": user_id})
                if row is not None:
                    rows.append(row)
            return rows

        return {r[0]: _row(r) for r in await self._db.read(work, name="get_presences")}

    async def not_offline(self) -> list[PresenceRow]:
        """Every user whose published state is not ``offline`` (start-up: their timers)."""

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_NOT_OFFLINE)

        return [_row(r) for r in await self._db.read(work, name="presence_not_offline")]

    async def write_changes(self, changes: Sequence[PresenceChange]) -> list[PresenceWrite]:
        """Publish ``changes`` in one transaction, one PRESENCE position each (in order)."""
        if not changes:
            return []

        async def work(conn: Conn) -> list[PresenceWrite]:
            rooms = [
                [str(r[0]) for r in await conn.fetch_all(_JOINED_ROOMS, {"user_id": c.user_id})]
                for c in changes
            ]
            positions = await next_positions(conn, StreamName.PRESENCE, len(changes))
            out = []
            for change, position, room_ids in zip(changes, positions, rooms, strict=True):
                privacy_position = await conn.fetch_val(
                    _UPSERT,
                    {
                        "user_id": change.user_id,
                        "state": change.state,
                        "status_msg": change.status_msg,
                        "last_active_ts": change.last_active_ts,
                        "currently_active": change.currently_active,
                        "stream_id": position,
                        "privacy_stream_id": position if change.privacy_changed else 0,
                    },
                )
                row = PresenceRow(
                    change.user_id,
                    change.state,
                    change.status_msg,
                    change.last_active_ts,
                    change.currently_active,
                    position,
                    int(privacy_position),
                )
                out.append(PresenceWrite(row, room_ids))
            return out

        return await self._db.run(work, name="write_presence")

    async def write_last_active(self, items: Sequence[tuple[str, int]]) -> None:
        """Record newer last-active times of ``(user_id, ts)`` without a stream position
        (nothing clients see changed: ``currently_active`` hides it)."""
        if not items:
            return

        async def work(conn: Conn) -> None:
            await conn.execute_many(
                _SET_LAST_ACTIVE, [{"user_id": user_id, "ts": ts} for user_id, ts in items]
            )

        await self._db.run(work, name="write_last_active")

    async def changes_for(
        self, viewer: str, since: int | None, upto: int
    ) -> list[tuple[PresenceRow, JsonObject | None]]:
        """Rows of ``viewer`` and of users sharing a room with them, with each one's privacy
        setting: those changed in ``(since, upto]``, or every such row up to ``upto`` when
        ``since`` is None."""

        async def work(conn: Conn) -> list[Row]:
            if since is None:
                return await conn.fetch_all(
                    _ALL_FOR, {"data_type": PRIVACY_TYPE, "upto": upto, "viewer": viewer}
                )
            return await conn.fetch_all(
                _CHANGES_SINCE,
                {"data_type": PRIVACY_TYPE, "since": since, "upto": upto, "viewer": viewer},
            )

        rows = await self._db.read(work, name="presence_changes_for")
        return [(_row(r), _privacy(r[7])) for r in rows]

    async def get_with_privacy(self, user_id: str) -> tuple[PresenceRow | None, JsonObject | None]:
        """The user's row (None if never published) and privacy setting (None if unset)."""

        async def work(conn: Conn) -> tuple[Row | None, str | None]:
            row = await conn.fetch_one(
                _GET_WITH_PRIVACY, {"data_type": PRIVACY_TYPE, "user_id": user_id}
            )
            if row is not None:
                return row, row[7]
            content: str | None = await conn.fetch_val(
                _PRIVACY, {"user_id": user_id, "data_type": PRIVACY_TYPE}
            )
            return None, content

        row, content_json = await self._db.read(work, name="presence_with_privacy")
        return (None if row is None else _row(row)), _privacy(content_json)

    async def share_a_room(self, a: str, b: str) -> bool:
        """Whether ``a`` and ``b`` are both joined to some room."""

        async def work(conn: Conn) -> bool:
            return await conn.fetch_val(_SHARE_A_ROOM, {"a": a, "b": b}) is not None

        return await self._db.read(work, name="share_a_room")

    async def joined_rooms(self, user_id: str) -> list[str]:
        """The rooms ``user_id`` is joined to."""

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_JOINED_ROOMS, {"user_id": user_id})

        return [str(r[0]) for r in await self._db.read(work, name="presence_joined_rooms")]
