"""The user directory: searching local users by user ID and display name.

Cost: the search is ``LIKE '%term%'`` on ``lower(user_id)`` and on the case-folded display name
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
from homeserver.storage.schema import profile_fields, users

__all__ = ["DirectoryEntry", "UserDirectoryStore", "like_pattern"]


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
_SEARCH = (
    select(users.c.user_id, _dn.c.value_json, _av.c.value_json)
    .select_from(
        users.outerjoin(
            _dn, and_(_dn.c.user_id == users.c.user_id, _dn.c.field == "displayname")
        ).outerjoin(_av, and_(_av.c.user_id == users.c.user_id, _av.c.field == "avatar_url"))
    )
    .where(
        and_(
            users.c.deactivated == false(),
            users.c.is_guest == false(),
            or_(
                func.lower(users.c.user_id).like(bindparam("pattern"), escape="\\"),
                _dn.c.search_text.like(bindparam("pattern"), escape="\\"),
            ),
        )
    )
    .order_by(users.c.user_id)
    .limit(bindparam("limit", type_=Integer))
)


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
