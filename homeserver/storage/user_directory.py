"""The user directory: searching local users by user ID and display name.

:meth:`UserDirectoryStore.search` searches every local user (``search_all_users``);
:meth:`UserDirectoryStore.search_visible` only those a searcher may find (spec: "users that
share a room with the requesting user" and users in public rooms): users joined to a room the
searcher has joined (the searcher themself excepted), or to a room whose join rule is
``public`` or whose history visibility is ``world_readable`` (what Synapse and SyTest count as
public).

Users of other servers are found through their member events in those rooms (display name
and avatar as the event has them).

Cost of the visible search: one read of the join rule and history visibility of every room
(their current state events), one of the searcher's rooms, then the matching local users in
chunks of :data:`CHUNK` (user ID order), each with the joined memberships of its user ID range,
until ``limit + 1`` visible users are found, and the joined remote members whose member event
matches: O(rooms + matching users × their rooms + remote memberships). A server with
many rooms would keep a table of public rooms and of users per room instead (Synapse's
``users_in_public_rooms`` and ``users_who_share_private_rooms``), filled where state is written.

Cost of a search is ``LIKE '%term%'`` on ``lower(user_id)`` and on the case-folded display name
(``profile_fields.search_text``). A pattern with a leading wildcard cannot use a B-tree index,
so every query scans all non-deactivated users and probes ``profile_fields`` by primary key:
O(users) per search, a few milliseconds per 10k users. That is fine for a small server; when it
is not, the way forward is a dedicated table with PostgreSQL ``pg_trgm``/full-text and SQLite
FTS5 indexes (Synapse's ``user_directory_search``), filled where profiles are written.

Only local users are searched, which the spec requires at a minimum (remote users come with
federation); deactivated and guest accounts are left out.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson
from sqlalchemy import Integer, and_, bindparam, false, func, or_, select

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import current_state, events, profile_fields, users

__all__ = ["CHUNK", "DirectoryEntry", "UserDirectoryStore", "like_pattern"]

#: Matching users read at a time by the visible search.
CHUNK = 200


@dataclass(frozen=True, slots=True)
class DirectoryEntry:
    """One search result: display name and avatar are ``None`` when unset (or not strings)."""

    user_id: str
    display_name: str | None
    avatar_url: str | None


def like_pattern(term: str) -> str:
    """``%term%`` for ``LIKE ... ESCAPE '\\'``, case-folded, with wildcards in ``term`` escaped."""
    folded = term.casefold()
    escaped = folded.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


_dn = profile_fields.alias("dn")
_av = profile_fields.alias("av")
_MATCHING = and_(
    users.c.deactivated == false(),
    users.c.is_guest == false(),
    or_(
        func.lower(users.c.user_id).like(bindparam("pattern"), escape="\\"),
        _dn.c.search_text.like(bindparam("pattern"), escape="\\"),
    ),
)
_SELECT = select(users.c.user_id, _dn.c.value_json, _av.c.value_json).select_from(
    users.outerjoin(
        _dn, and_(_dn.c.user_id == users.c.user_id, _dn.c.field == "displayname")
    ).outerjoin(_av, and_(_av.c.user_id == users.c.user_id, _av.c.field == "avatar_url"))
)
_SEARCH = (
    _SELECT.where(_MATCHING).order_by(users.c.user_id).limit(bindparam("limit", type_=Integer))
)
_SEARCH_AFTER = (
    _SELECT.where(and_(_MATCHING, users.c.user_id > bindparam("after")))
    .order_by(users.c.user_id)
    .limit(bindparam("limit", type_=Integer))
)
_MEMBER = "m.room.member"
#: The rooms a user has joined.
_JOINED_ROOMS = select(current_state.c.room_id).where(
    and_(
        current_state.c.type == _MEMBER,
        current_state.c.state_key == bindparam("user_id"),
        current_state.c.membership == "join",
    )
)
#: The joined memberships of the user IDs in a range (the index on state_key, type, membership).
_JOINED_IN_RANGE = select(current_state.c.state_key, current_state.c.room_id).where(
    and_(
        current_state.c.state_key >= bindparam("first"),
        current_state.c.state_key <= bindparam("last"),
        current_state.c.type == _MEMBER,
        current_state.c.membership == "join",
    )
)
#: The join rule and history visibility events of every room.
_PUBLICITY = (
    select(current_state.c.room_id, current_state.c.type, events.c.json)
    .select_from(current_state.join(events, events.c.event_id == current_state.c.event_id))
    .where(
        and_(
            or_(
                current_state.c.type == "m.room.join_rules",
                current_state.c.type == "m.room.history_visibility",
            ),
            current_state.c.state_key == "",
        )
    )
)


_REMOTE_MEMBERS_FROM = current_state.join(
    events, events.c.event_id == current_state.c.event_id
).outerjoin(users, users.c.user_id == current_state.c.state_key)
_REMOTE_MEMBER_WHERE = and_(
    current_state.c.type == _MEMBER,
    current_state.c.membership == "join",
    users.c.user_id.is_(None),
)
_REMOTE_MEMBER_COLUMNS = (current_state.c.room_id, current_state.c.state_key, events.c.json)
#: Joined members without an account here (other servers' users), whose user ID or member
#: event matches the pattern: a superset of the matches, checked exactly in Python (SQLite's
#: ``lower`` folds ASCII only, so this is used for ASCII terms).
_REMOTE_MEMBERS_LIKE = (
    select(*_REMOTE_MEMBER_COLUMNS)
    .select_from(_REMOTE_MEMBERS_FROM)
    .where(
        and_(
            _REMOTE_MEMBER_WHERE,
            or_(
                func.lower(current_state.c.state_key).like(bindparam("pattern"), escape="\\"),
                func.lower(events.c.json).like(bindparam("pattern"), escape="\\"),
            ),
        )
    )
)
#: The same for other terms: every joined remote member.
_REMOTE_MEMBERS = (
    select(*_REMOTE_MEMBER_COLUMNS).select_from(_REMOTE_MEMBERS_FROM).where(_REMOTE_MEMBER_WHERE)
)


def _remote_entry(user_id: str, event_json: str, folded_term: str) -> DirectoryEntry | None:
    """The entry of a remote member (display name and avatar from their member event) if
    their user ID or display name contains the (case-folded) term."""
    try:
        content = orjson.loads(event_json).get("content")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    if not isinstance(content, dict):
        return None
    name = content.get("displayname")
    name = name if isinstance(name, str) else None
    avatar = content.get("avatar_url")
    avatar = avatar if isinstance(avatar, str) else None
    if folded_term in user_id.casefold() or (name is not None and folded_term in name.casefold()):
        return DirectoryEntry(user_id, name, avatar)
    return None


def _is_public(event_type: str, event_json: str) -> bool:
    """A join rules event saying ``public``, or a history visibility one ``world_readable``."""
    try:
        content = orjson.loads(event_json).get("content")
    except (orjson.JSONDecodeError, AttributeError):
        return False
    if not isinstance(content, dict):
        return False
    if event_type == "m.room.join_rules":
        return content.get("join_rule") == "public"
    return content.get("history_visibility") == "world_readable"


def _string(value_json: str | None) -> str | None:
    if value_json is None:
        return None
    value = orjson.loads(value_json)
    return value if isinstance(value, str) else None


class UserDirectoryStore:
    """Search local users."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def search(self, term: str, *, limit: int) -> tuple[list[DirectoryEntry], bool]:
        """Local users whose ID or display name contains ``term`` (case-insensitively).

        Returns:
            At most ``limit`` entries ordered by user ID, and whether more matched.
        """

        async def work(conn: Conn) -> list[DirectoryEntry]:
            rows = await conn.fetch_all(
                _SEARCH, {"pattern": like_pattern(term), "limit": limit + 1}
            )
            return [DirectoryEntry(str(u), _string(d), _string(a)) for u, d, a in rows]

        entries = await self._db.read(work, name="user_directory_search")
        return entries[:limit], len(entries) > limit

    async def search_visible(
        self, searcher: str, term: str, *, limit: int
    ) -> tuple[list[DirectoryEntry], bool]:
        """Like :meth:`search`, but only users who share a joined room with ``searcher`` or
        have joined a public room (join rule ``public`` or history ``world_readable``). The
        searcher finds themself only through a public room, as on Synapse.

        Returns:
            At most ``limit`` entries ordered by user ID, and whether more matched.
        """
        pattern = like_pattern(term)

        async def work(conn: Conn) -> list[DirectoryEntry]:
            public = {
                str(room_id)
                for room_id, event_type, event_json in await conn.fetch_all(_PUBLICITY)
                if _is_public(str(event_type), str(event_json))
            }
            # the searcher's own rooms show the others in them (the searcher shares no room
            # with themself: they are found through public rooms only, as on Synapse)
            shared = public | {
                str(r) for (r,) in await conn.fetch_all(_JOINED_ROOMS, {"user_id": searcher})
            }
            found: list[DirectoryEntry] = []
            after = ""
            while len(found) <= limit:
                rows = await conn.fetch_all(
                    _SEARCH_AFTER, {"pattern": pattern, "after": after, "limit": CHUNK}
                )
                if not rows:
                    break
                first, last = str(rows[0][0]), str(rows[-1][0])
                in_visible_room = {
                    str(user_id)
                    for user_id, room_id in await conn.fetch_all(
                        _JOINED_IN_RANGE, {"first": first, "last": last}
                    )
                    if str(room_id) in (public if user_id == searcher else shared)
                }
                found.extend(
                    DirectoryEntry(str(u), _string(d), _string(a))
                    for u, d, a in rows
                    if str(u) in in_visible_room
                )
                if len(rows) < CHUNK:
                    break
                after = last
            remote: dict[str, DirectoryEntry] = {}
            if term.isascii():
                candidates = await conn.fetch_all(_REMOTE_MEMBERS_LIKE, {"pattern": pattern})
            else:
                candidates = await conn.fetch_all(_REMOTE_MEMBERS)
            folded = term.casefold()
            for room_id, user_id, event_json in candidates:
                if str(room_id) not in shared or str(user_id) in remote:
                    continue
                entry = _remote_entry(str(user_id), str(event_json), folded)
                if entry is not None:
                    remote[entry.user_id] = entry
            if remote:
                found = sorted([*found, *remote.values()], key=lambda e: e.user_id)
            return found

        entries = await self._db.read(work, name="user_directory_search_visible")
        return entries[:limit], len(entries) > limit
