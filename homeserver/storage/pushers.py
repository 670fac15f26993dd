"""Pushers and push notifications: ``pushers``, ``push_notifications``, ``push_sender_position``.

A pusher is keyed by (user, app ID, pushkey) and owned by the device whose access token set it
(a foreign key to ``devices`` with ``ON DELETE CASCADE``: logout, device deletion and a
password change that logs out other devices delete its pushers in the same transaction).

``push_notifications`` holds the events that notified each local user, written by the push
sender together with its evaluated-up-to position (``push_sender_position``) in one
transaction, so a restart resumes evaluating where it stopped and never records an event
twice. Each pusher's ``last_stream_ordering`` is how far its notifications have been sent: the
sender's per-pusher queue is the user's notifications after it, so it survives a restart too.

Reads of ``events``, ``rooms`` and ``current_state`` (the events after a position, what push
rules need of a room's current state) are the sender's view of the room tables: read-only, by
stream position, as ``/sync`` reads them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Integer, Text, bindparam, delete, func, select, text, update

from homeserver.storage.db import Conn, Database, Row
from homeserver.storage.events import StoredEvent, decode_event_row, event_columns, events_join
from homeserver.storage.schema import current_state, events
from homeserver.storage.schema import push_notifications as notif_t
from homeserver.storage.schema import push_sender_position as position_t
from homeserver.storage.schema import pushers as pushers_t

__all__ = [
    "NotificationRow",
    "PusherRow",
    "PusherStore",
    "RoomPushState",
]

_POSITION_NAME = "events"


@dataclass(frozen=True, slots=True)
class PusherRow:
    """One pusher as stored (``data`` decoded)."""

    user_id: str
    app_id: str
    pushkey: str
    device_id: str | None
    kind: str
    app_display_name: str
    device_display_name: str
    profile_tag: str | None
    lang: str
    data: Mapping[str, Any]
    enabled: bool
    created_ts: int
    last_stream_ordering: int = 0
    failing_since: int | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.user_id, self.app_id, self.pushkey)


@dataclass(frozen=True, slots=True)
class NotificationRow:
    """An event that notified a user, with the actions of the rule that matched."""

    user_id: str
    room_id: str
    event_id: str
    stream_ordering: int
    actions: Sequence[Any]
    highlight: bool
    ts: int


@dataclass(slots=True)
class RoomPushState:
    """What push rules and push bodies need of a room's current state."""

    room_id: str
    joined_count: int
    #: local users joined to or invited into the room → (membership, display name)
    local_members: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    #: by type: ``m.room.power_levels``, ``m.room.create``, ``m.room.name``,
    #: ``m.room.canonical_alias`` (state key "")
    state: dict[str, StoredEvent] = field(default_factory=dict)


_PUSHER_COLUMNS = (
    pushers_t.c.user_id,
    pushers_t.c.app_id,
    pushers_t.c.pushkey,
    pushers_t.c.device_id,
    pushers_t.c.kind,
    pushers_t.c.app_display_name,
    pushers_t.c.device_display_name,
    pushers_t.c.profile_tag,
    pushers_t.c.lang,
    pushers_t.c.data_json,
    pushers_t.c.enabled,
    pushers_t.c.created_ts,
    pushers_t.c.last_stream_ordering,
    pushers_t.c.failing_since,
)
_KEY = (
    (pushers_t.c.user_id == bindparam("user_id", type_=Text))
    & (pushers_t.c.app_id == bindparam("app_id", type_=Text))
    & (pushers_t.c.pushkey == bindparam("pushkey", type_=Text))
)
_GET_PUSHER = select(*_PUSHER_COLUMNS).where(_KEY)
_USER_PUSHERS = (
    select(*_PUSHER_COLUMNS)
    .where(pushers_t.c.user_id == bindparam("user_id", type_=Text))
    .order_by(pushers_t.c.app_id, pushers_t.c.pushkey)
)
_ALL_PUSHERS = select(*_PUSHER_COLUMNS).order_by(pushers_t.c.user_id)
_INSERT_PUSHER = pushers_t.insert().values(
    user_id=bindparam("user_id"),
    app_id=bindparam("app_id"),
    pushkey=bindparam("pushkey"),
    device_id=bindparam("device_id"),
    kind=bindparam("kind"),
    app_display_name=bindparam("app_display_name"),
    device_display_name=bindparam("device_display_name"),
    profile_tag=bindparam("profile_tag"),
    lang=bindparam("lang"),
    data_json=bindparam("data_json"),
    enabled=bindparam("enabled"),
    created_ts=bindparam("created_ts", type_=BigInteger),
    last_stream_ordering=bindparam("last_stream_ordering", type_=BigInteger),
    failing_since=None,
)
_UPDATE_PUSHER = (
    update(pushers_t)
    .where(_KEY)
    .values(
        device_id=bindparam("device_id"),
        kind=bindparam("kind"),
        app_display_name=bindparam("app_display_name"),
        device_display_name=bindparam("device_display_name"),
        profile_tag=bindparam("profile_tag"),
        lang=bindparam("lang"),
        data_json=bindparam("data_json"),
        enabled=bindparam("enabled"),
    )
)
_DELETE_PUSHER = delete(pushers_t).where(_KEY)
_DELETE_OTHER_USERS = delete(pushers_t).where(
    pushers_t.c.app_id == bindparam("app_id", type_=Text),
    pushers_t.c.pushkey == bindparam("pushkey", type_=Text),
    pushers_t.c.user_id != bindparam("user_id", type_=Text),
)
_ADVANCE = (
    update(pushers_t)
    .where(_KEY)
    .values(
        last_stream_ordering=bindparam("position", type_=BigInteger),
        failing_since=bindparam("failing_since", type_=BigInteger),
    )
)
_SET_FAILING = (
    update(pushers_t).where(_KEY).values(failing_since=bindparam("failing_since", type_=BigInteger))
)

_GET_POSITION = select(position_t.c.stream_ordering).where(position_t.c.name == _POSITION_NAME)
_MAX_STREAM = select(func.max(events.c.stream_ordering))
_SET_POSITION = text(
    "INSERT INTO push_sender_position (name, stream_ordering) VALUES (:name, :pos) "
    "ON CONFLICT (name) DO UPDATE SET stream_ordering = excluded.stream_ordering"
).bindparams(bindparam("name"), bindparam("pos", type_=BigInteger))
_EVENTS_AFTER = (
    select(*event_columns())
    .select_from(events_join())
    .where(
        events.c.stream_ordering > bindparam("after", type_=BigInteger),
        events.c.stream_ordering <= bindparam("upto", type_=BigInteger),
        events.c.outlier == False,  # noqa: E712 - SQL comparison
        events.c.rejected_reason.is_(None),
    )
    .order_by(events.c.stream_ordering)
    .limit(bindparam("limit", type_=Integer))
)
_MEMBER_COUNTS = (
    select(current_state.c.membership, func.count())
    .where(
        current_state.c.room_id == bindparam("room_id", type_=Text),
        current_state.c.type == "m.room.member",
    )
    .group_by(current_state.c.membership)
)
_ROOM_STATE = (
    select(*event_columns())
    .select_from(events_join().join(current_state, current_state.c.event_id == events.c.event_id))
    .where(
        current_state.c.room_id == bindparam("room_id", type_=Text),
        current_state.c.state_key == "",
        (current_state.c.type == "m.room.power_levels")
        | (current_state.c.type == "m.room.create")
        | (current_state.c.type == "m.room.name")
        | (current_state.c.type == "m.room.canonical_alias"),
    )
)
_LOCAL_MEMBERS = (
    select(*event_columns(), current_state.c.state_key, current_state.c.membership)
    .select_from(events_join().join(current_state, current_state.c.event_id == events.c.event_id))
    .where(
        current_state.c.room_id == bindparam("room_id", type_=Text),
        current_state.c.type == "m.room.member",
        (current_state.c.membership == "join") | (current_state.c.membership == "invite"),
        current_state.c.state_key.like(bindparam("local_pattern", type_=Text)),
    )
)
_MEMBER_EVENT = (
    select(*event_columns())
    .select_from(events_join().join(current_state, current_state.c.event_id == events.c.event_id))
    .where(
        current_state.c.room_id == bindparam("room_id", type_=Text),
        current_state.c.type == "m.room.member",
        current_state.c.state_key == bindparam("user_id", type_=Text),
    )
)
_INSERT_NOTIFICATION = text(
    "INSERT INTO push_notifications "
    "(user_id, room_id, event_id, stream_ordering, actions_json, highlight, ts) "
    "VALUES (:user_id, :room_id, :event_id, :stream_ordering, :actions_json, :highlight, :ts) "
    "ON CONFLICT (user_id, event_id) DO NOTHING"
)
_NOTIF_COLUMNS = (
    notif_t.c.user_id,
    notif_t.c.room_id,
    notif_t.c.event_id,
    notif_t.c.stream_ordering,
    notif_t.c.actions_json,
    notif_t.c.highlight,
    notif_t.c.ts,
)
_NOTIFICATIONS_AFTER = (
    select(*_NOTIF_COLUMNS)
    .where(
        notif_t.c.user_id == bindparam("user_id", type_=Text),
        notif_t.c.stream_ordering > bindparam("after", type_=BigInteger),
    )
    .order_by(notif_t.c.stream_ordering)
    .limit(bindparam("limit", type_=Integer))
)
_NOTIFICATIONS_BEFORE = (
    select(*_NOTIF_COLUMNS)
    .where(
        notif_t.c.user_id == bindparam("user_id", type_=Text),
        notif_t.c.stream_ordering < bindparam("before", type_=BigInteger),
    )
    .order_by(notif_t.c.stream_ordering.desc())
    .limit(bindparam("limit", type_=Integer))
)
_HIGHLIGHTS_BEFORE = (
    select(*_NOTIF_COLUMNS)
    .where(
        notif_t.c.user_id == bindparam("user_id", type_=Text),
        notif_t.c.stream_ordering < bindparam("before", type_=BigInteger),
        notif_t.c.highlight == True,  # noqa: E712 - SQL comparison
    )
    .order_by(notif_t.c.stream_ordering.desc())
    .limit(bindparam("limit", type_=Integer))
)
_NOTIFIED_ROOMS = (
    select(notif_t.c.room_id)
    .where(notif_t.c.user_id == bindparam("user_id", type_=Text))
    .distinct()
)
_COUNT_AFTER = select(func.count()).where(
    notif_t.c.user_id == bindparam("user_id", type_=Text),
    notif_t.c.room_id == bindparam("room_id", type_=Text),
    notif_t.c.stream_ordering > bindparam("after", type_=BigInteger),
)
_PRUNE = delete(notif_t).where(notif_t.c.ts < bindparam("before_ts", type_=BigInteger))
_EVENTS_BY_ID = (
    select(*event_columns())
    .select_from(events_join())
    .where(events.c.event_id == bindparam("event_id", type_=Text))
)


def _pusher(row: Row) -> PusherRow:
    data = json.loads(row[9])
    return PusherRow(
        user_id=str(row[0]),
        app_id=str(row[1]),
        pushkey=str(row[2]),
        device_id=None if row[3] is None else str(row[3]),
        kind=str(row[4]),
        app_display_name=str(row[5]),
        device_display_name=str(row[6]),
        profile_tag=None if row[7] is None else str(row[7]),
        lang=str(row[8]),
        data=data if isinstance(data, dict) else {},
        enabled=bool(row[10]),
        created_ts=int(row[11]),
        last_stream_ordering=int(row[12]),
        failing_since=None if row[13] is None else int(row[13]),
    )


def _notification(row: Row) -> NotificationRow:
    actions = json.loads(row[4])
    return NotificationRow(
        user_id=str(row[0]),
        room_id=str(row[1]),
        event_id=str(row[2]),
        stream_ordering=int(row[3]),
        actions=actions if isinstance(actions, list) else [],
        highlight=bool(row[5]),
        ts=int(row[6]),
    )


def _key(user_id: str, app_id: str, pushkey: str) -> dict[str, str]:
    return {"user_id": user_id, "app_id": app_id, "pushkey": pushkey}


class PusherStore:
    """Pushers, recorded notifications and the push sender's position."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- pushers -----------------------------------------------------------------------------

    async def set_pusher(self, pusher: PusherRow, *, append: bool) -> PusherRow:
        """Create the pusher, or update the one with its key (keeping its send position).

        A new pusher, or one enabled again, starts at the newest event: it is sent what
        notifies from now on.
        Without ``append``, the pushers of *other* users with the same app ID and pushkey are
        deleted (spec: ``append``). Returns the pusher as stored.

        Raises:
            ForeignKeyViolation: ``pusher.device_id`` is not one of the user's devices.
        """

        async def work(conn: Conn) -> PusherRow:
            key = _key(pusher.user_id, pusher.app_id, pusher.pushkey)
            if not append:
                await conn.execute(_DELETE_OTHER_USERS, key)
            values: dict[str, Any] = {
                **key,
                "device_id": pusher.device_id,
                "kind": pusher.kind,
                "app_display_name": pusher.app_display_name,
                "device_display_name": pusher.device_display_name,
                "profile_tag": pusher.profile_tag,
                "lang": pusher.lang,
                "data_json": json.dumps(pusher.data, ensure_ascii=False),
                "enabled": pusher.enabled,
            }
            before = await conn.fetch_one(_GET_PUSHER, key)
            if before is None:
                newest = await conn.fetch_val(_MAX_STREAM)
                values["created_ts"] = pusher.created_ts
                values["last_stream_ordering"] = int(newest) if newest is not None else 0
                await conn.execute(_INSERT_PUSHER, values)
            else:
                await conn.execute(_UPDATE_PUSHER, values)
                if pusher.enabled and not _pusher(before).enabled:
                    # re-enabled: what notified while it was off is not sent
                    newest = await conn.fetch_val(_MAX_STREAM)
                    await conn.execute(
                        _ADVANCE,
                        {
                            **key,
                            "position": int(newest) if newest is not None else 0,
                            "failing_since": None,
                        },
                    )
            row = await conn.fetch_one(_GET_PUSHER, key)
            assert row is not None
            return _pusher(row)

        return await self._db.run(work, name="push_set_pusher")

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> bool:
        """Delete one pusher; False when there was none."""

        async def work(conn: Conn) -> int:
            return await conn.execute(_DELETE_PUSHER, _key(user_id, app_id, pushkey))

        return bool(await self._db.run(work, name="push_delete_pusher"))

    async def get_pusher(self, user_id: str, app_id: str, pushkey: str) -> PusherRow | None:
        async def work(conn: Conn) -> Row | None:
            return await conn.fetch_one(_GET_PUSHER, _key(user_id, app_id, pushkey))

        row = await self._db.read(work, name="push_get_pusher")
        return None if row is None else _pusher(row)

    async def pushers_of(self, user_id: str) -> list[PusherRow]:
        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_USER_PUSHERS, {"user_id": user_id})

        return [_pusher(r) for r in await self._db.read(work, name="push_user_pushers")]

    async def all_pushers(self) -> list[PusherRow]:
        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_ALL_PUSHERS)

        return [_pusher(r) for r in await self._db.read(work, name="push_all_pushers")]

    async def advance_pusher(
        self,
        user_id: str,
        app_id: str,
        pushkey: str,
        position: int,
        *,
        failing_since: int | None = None,
    ) -> None:
        """The pusher's notifications up to ``position`` are done with."""

        async def work(conn: Conn) -> None:
            await conn.execute(
                _ADVANCE,
                {
                    **_key(user_id, app_id, pushkey),
                    "position": position,
                    "failing_since": failing_since,
                },
            )

        await self._db.run(work, name="push_advance_pusher")

    async def set_failing_since(
        self, user_id: str, app_id: str, pushkey: str, failing_since: int | None
    ) -> None:
        async def work(conn: Conn) -> None:
            await conn.execute(
                _SET_FAILING, {**_key(user_id, app_id, pushkey), "failing_since": failing_since}
            )

        await self._db.run(work, name="push_set_failing")

    # --- evaluating events -------------------------------------------------------------------

    async def start_position(self) -> int:
        """The position events have been evaluated up to; on the very first start, the newest
        event (history from before pushers existed notifies nobody)."""

        async def work(conn: Conn) -> int:
            pos = await conn.fetch_val(_GET_POSITION)
            if pos is not None:
                return int(pos)
            newest = await conn.fetch_val(_MAX_STREAM)
            start = int(newest) if newest is not None else 0
            await conn.execute(_SET_POSITION, {"name": _POSITION_NAME, "pos": start})
            return start

        return await self._db.run(work, name="push_start_position")

    async def events_after(self, position: int, upto: int, limit: int) -> list[StoredEvent]:
        """Accepted timeline events in (position, upto], oldest first, at most ``limit``."""

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(
                _EVENTS_AFTER, {"after": position, "upto": upto, "limit": limit}
            )

        return [decode_event_row(r) for r in await self._db.read(work, name="push_events_after")]

    async def newest_position(self) -> int:
        async def work(conn: Conn) -> Any:
            return await conn.fetch_val(_MAX_STREAM)

        newest = await self._db.read(work, name="push_newest_position")
        return int(newest) if newest is not None else 0

    async def room_push_state(self, room_id: str, server_name: str) -> RoomPushState:
        """The room's joined count, its local joined and invited members with their display
        names, and the state events push rules and push bodies read."""

        async def work(conn: Conn) -> RoomPushState:
            joined = 0
            for m, n in await conn.fetch_all(_MEMBER_COUNTS, {"room_id": room_id}):
                if m == "join":
                    joined = int(n)
            out = RoomPushState(room_id, joined)
            for row in await conn.fetch_all(_ROOM_STATE, {"room_id": room_id}):
                stored = decode_event_row(row)
                out.state[stored.event.type] = stored
            for row in await conn.fetch_all(
                _LOCAL_MEMBERS, {"room_id": room_id, "local_pattern": f"%:{server_name}"}
            ):
                stored = decode_event_row(row[:-2])
                name = stored.event.content.get("displayname")
                out.local_members[str(row[-2])] = (
                    str(row[-1]),
                    name if isinstance(name, str) and name else None,
                )
            return out

        return await self._db.read(work, name="push_room_state")

    async def display_name(self, room_id: str, user_id: str) -> str | None:
        """The user's display name in the room's current state (None: none)."""

        async def work(conn: Conn) -> Row | None:
            return await conn.fetch_one(_MEMBER_EVENT, {"room_id": room_id, "user_id": user_id})

        row = await self._db.read(work, name="push_display_name")
        if row is None:
            return None
        name = decode_event_row(row).event.content.get("displayname")
        return name if isinstance(name, str) and name else None

    async def record(self, notifications: Sequence[NotificationRow], position: int) -> None:
        """Store ``notifications`` and move the evaluated-up-to position, in one transaction."""

        async def work(conn: Conn) -> None:
            if notifications:
                await conn.execute_many(
                    _INSERT_NOTIFICATION,
                    [
                        {
                            "user_id": n.user_id,
                            "room_id": n.room_id,
                            "event_id": n.event_id,
                            "stream_ordering": n.stream_ordering,
                            "actions_json": json.dumps(list(n.actions)),
                            "highlight": n.highlight,
                            "ts": n.ts,
                        }
                        for n in notifications
                    ],
                )
            await conn.execute(_SET_POSITION, {"name": _POSITION_NAME, "pos": position})

        await self._db.run(work, name="push_record")

    # --- reading notifications ---------------------------------------------------------------

    async def notifications_after(
        self, user_id: str, after: int, limit: int
    ) -> list[tuple[NotificationRow, StoredEvent | None]]:
        """The user's oldest ``limit`` notifications after ``after`` with their events (None:
        the event is gone)."""

        async def work(conn: Conn) -> tuple[list[Row], list[Row]]:
            rows = await conn.fetch_all(
                _NOTIFICATIONS_AFTER, {"user_id": user_id, "after": after, "limit": limit}
            )
            return rows, await _events_of(conn, rows)

        rows, event_rows = await self._db.read(work, name="push_notifications_after")
        return _with_events(rows, event_rows)

    async def notifications_before(
        self, user_id: str, before: int | None, limit: int, *, highlights_only: bool
    ) -> list[tuple[NotificationRow, StoredEvent | None]]:
        """The user's newest ``limit`` notifications before ``before`` (None: all), newest
        first, with their events."""
        stmt = _HIGHLIGHTS_BEFORE if highlights_only else _NOTIFICATIONS_BEFORE
        bound = before if before is not None else 2**62

        async def work(conn: Conn) -> tuple[list[Row], list[Row]]:
            rows = await conn.fetch_all(stmt, {"user_id": user_id, "before": bound, "limit": limit})
            return rows, await _events_of(conn, rows)

        rows, event_rows = await self._db.read(work, name="push_notifications_before")
        return _with_events(rows, event_rows)

    async def notified_rooms(self, user_id: str) -> list[str]:
        """The rooms where the user has recorded notifications."""

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_NOTIFIED_ROOMS, {"user_id": user_id})

        return [str(r[0]) for r in await self._db.read(work, name="push_notified_rooms")]

    async def count_after(self, user_id: str, read_upto: Mapping[str, int]) -> dict[str, int]:
        """Per room of ``read_upto``, the user's notifications after the position given."""

        async def work(conn: Conn) -> dict[str, int]:
            out: dict[str, int] = {}
            for room_id, after in read_upto.items():
                out[room_id] = int(
                    await conn.fetch_val(
                        _COUNT_AFTER, {"user_id": user_id, "room_id": room_id, "after": after}
                    )
                )
            return out

        return await self._db.read(work, name="push_count_after")

    async def prune(self, before_ts: int) -> int:
        """Delete notifications recorded before ``before_ts``; return how many."""

        async def work(conn: Conn) -> int:
            return await conn.execute(_PRUNE, {"before_ts": before_ts})

        return await self._db.run(work, name="push_prune")


async def _events_of(conn: Conn, rows: Sequence[Row]) -> list[Row]:
    out: list[Row] = []
    for event_id in dict.fromkeys(str(r[2]) for r in rows):
        row = await conn.fetch_one(_EVENTS_BY_ID, {"event_id": event_id})
        if row is not None:
            out.append(row)
    return out


def _with_events(
    rows: Sequence[Row], event_rows: Sequence[Row]
) -> list[tuple[NotificationRow, StoredEvent | None]]:
    by_id = {str(r[0]): decode_event_row(r) for r in event_rows}
    out = []
    for row in rows:
        n = _notification(row)
        out.append((n, by_id.get(n.event_id)))
    return out
