"""Profiles of local users: the ``profile_fields`` table, one row per field.

Values are stored as JSON text (custom fields may hold any JSON value). The 64 KiB limit on a
whole profile (spec: ``PUT /profile/{userId}/{keyName}``) is checked inside the writing
transaction, against the fields as they are at that moment.

Writers first lock the user's ``users`` row (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
has one writer anyway), so that check sees every committed field and no concurrent writer can slip
between the check and the write.

The ``search_text`` column holds the case-folded display name, for the user directory
(:mod:`homeserver.storage.user_directory`); it is ``NULL`` on every other field.
"""

from __future__ import annotations

import orjson
from sqlalchemy import and_, bindparam, delete, insert, select, update

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import profile_fields, users

__all__ = [
    "DISPLAYNAME_FIELD",
    "NoSuchUserError",
    "ProfileStore",
    "ProfileTooLargeError",
    "profile_size",
]

#: The field whose case-folded value the user directory searches.
DISPLAYNAME_FIELD = "displayname"


class ProfileTooLargeError(Exception):
    """Raised by :meth:`ProfileStore.set_field` when the profile would exceed its size limit."""


class NoSuchUserError(Exception):
    """Raised by :meth:`ProfileStore.set_field` when the user does not exist."""


_LOCK_USER = (
    select(users.c.user_id).where(users.c.user_id == bindparam("user_id")).with_for_update()
)
_ALL = select(profile_fields.c.field, profile_fields.c.value_json).where(
    profile_fields.c.user_id == bindparam("user_id")
)
_IS_FIELD = and_(
    profile_fields.c.user_id == bindparam("user_id"), profile_fields.c.field == bindparam("field")
)
_GET = select(profile_fields.c.value_json).where(_IS_FIELD)
_INSERT = insert(profile_fields).values(
    user_id=bindparam("user_id"),
    field=bindparam("field"),
    value_json=bindparam("value_json"),
    search_text=bindparam("search_text"),
)
_UPDATE = (
    update(profile_fields)
    .where(_IS_FIELD)
    .values(value_json=bindparam("value_json"), search_text=bindparam("search_text"))
)
_DELETE = delete(profile_fields).where(_IS_FIELD)


def profile_size(fields: dict[str, str]) -> int:
    """Bytes of the profile as one JSON object, given each field's JSON-encoded value."""
    if not fields:
        return 2
    return 1 + sum(len(orjson.dumps(k)) + 1 + len(v.encode()) + 1 for k, v in fields.items())


def _search_text(field: str, value: object) -> str | None:
    if field == DISPLAYNAME_FIELD and isinstance(value, str):
        return value.casefold()
    return None


class ProfileStore:
    """Read and write profile fields."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get_profile(self, user_id: str) -> dict[str, object]:
        """Every field of the profile, decoded (empty if none was set)."""

        async def work(conn: Conn) -> dict[str, str]:
            rows = await conn.fetch_all(_ALL, {"user_id": user_id})
            return {str(field): str(value) for field, value in rows}

        fields = await self._db.read(work, name="get_profile")
        return {k: orjson.loads(v) for k, v in fields.items()}

    async def get_field(self, user_id: str, field: str) -> tuple[bool, object]:
        """``(True, value)`` if the field is set, else ``(False, None)``."""

        async def work(conn: Conn) -> str | None:
            value: str | None = await conn.fetch_val(_GET, {"user_id": user_id, "field": field})
            return value

        value_json = await self._db.read(work, name="get_profile_field")
        if value_json is None:
            return False, None
        return True, orjson.loads(value_json)

    async def set_field(
        self, user_id: str, field: str, value: object, *, max_profile_bytes: int
    ) -> None:
        """Set one field.

        Raises:
            NoSuchUserError: the user does not exist.
            ProfileTooLargeError: the profile would then be over ``max_profile_bytes``.
        """
        value_json = orjson.dumps(value).decode()
        params = {
            "user_id": user_id,
            "field": field,
            "value_json": value_json,
            "search_text": _search_text(field, value),
        }

        async def work(conn: Conn) -> None:
            if await conn.fetch_val(_LOCK_USER, {"user_id": user_id}) is None:
                raise NoSuchUserError(user_id)
            rows = await conn.fetch_all(_ALL, {"user_id": user_id})
            fields = {str(f): str(v) for f, v in rows}
            exists = field in fields
            fields[field] = value_json
            if profile_size(fields) > max_profile_bytes:
                raise ProfileTooLargeError(f"profile of {user_id} would exceed the limit")
            if exists:
                await conn.execute(_UPDATE, params)
            else:
                await conn.execute(_INSERT, params)

        await self._db.run(work, name="set_profile_field")

    async def delete_field(self, user_id: str, field: str) -> bool:
        """Remove a field; return whether it was set."""

        async def work(conn: Conn) -> int:
            return await conn.execute(_DELETE, {"user_id": user_id, "field": field})

        return await self._db.run(work, name="delete_profile_field") > 0
