"""Uploaded filters: the ``user_filters`` table.

Each user's filters are numbered from 0 (``MAX + 1`` in the inserting transaction, as Synapse
does), so IDs stay short in ``/sync?filter=3`` URLs and never start with ``{``. The JSON is
stored as given, serialised with sorted keys, and uploading the same filter again returns the
existing ID instead of adding a row: clients such as matrix-js-sdk upload their sync filter on
every start.

Two concurrent uploads by one user would pick the same number, so an upload first locks the
user's ``users`` row (``FOR NO KEY UPDATE`` on PostgreSQL, whose write transactions are READ
COMMITTED, so the next statement sees the other upload's row; SQLite serialises writers anyway
and compiles the lock to nothing). It does not block foreign-key checks against that row.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from sqlalchemy import and_, bindparam, func, insert, select

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import user_filters, users

__all__ = ["FilterStore", "filter_json"]

_LOCK_USER = (
    select(users.c.user_id)
    .where(users.c.user_id == bindparam("user_id"))
    .with_for_update(key_share=True)
)
_FIND = select(user_filters.c.filter_id).where(
    and_(
        user_filters.c.user_id == bindparam("user_id"),
        user_filters.c.filter_json == bindparam("filter_json"),
    )
)
_MAX = select(func.max(user_filters.c.filter_id)).where(
    user_filters.c.user_id == bindparam("user_id")
)
_INSERT = insert(user_filters).values(
    user_id=bindparam("user_id"),
    filter_id=bindparam("filter_id"),
    filter_json=bindparam("filter_json"),
)
_GET = select(user_filters.c.filter_json).where(
    and_(
        user_filters.c.user_id == bindparam("user_id"),
        user_filters.c.filter_id == bindparam("filter_id"),
    )
)


def filter_json(definition: Mapping[str, Any]) -> str:
    """The stored form of a filter: compact JSON with sorted keys (equal filters, equal text)."""
    return orjson.dumps(definition, option=orjson.OPT_SORT_KEYS).decode()


class FilterStore:
    """Add and fetch a user's filters."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_filter(self, user_id: str, definition: Mapping[str, Any]) -> int:
        """Store a filter; return its ID (the existing one if the user uploaded it before).

        Raises:
            ForeignKeyViolation: there is no such user.
        """
        text = filter_json(definition)

        async def work(conn: Conn) -> int:
            await conn.fetch_val(_LOCK_USER, {"user_id": user_id})
            params = {"user_id": user_id, "filter_json": text}
            existing = await conn.fetch_val(_FIND, params)
            if existing is not None:
                return int(existing)
            newest = await conn.fetch_val(_MAX, {"user_id": user_id})
            filter_id = 0 if newest is None else int(newest) + 1
            await conn.execute(_INSERT, {**params, "filter_id": filter_id})
            return filter_id

        return await self._db.run(work, name="add_user_filter")

    async def get_filter(self, user_id: str, filter_id: int) -> dict[str, Any] | None:
        """The filter as uploaded, or ``None`` if the user has no filter with that ID."""

        async def work(conn: Conn) -> str | None:
            value: str | None = await conn.fetch_val(
                _GET, {"user_id": user_id, "filter_id": filter_id}
            )
            return value

        text = await self._db.read(work, name="get_user_filter")
        if text is None:
            return None
        definition: dict[str, Any] = orjson.loads(text)
        return definition
