"""Server-side key backup: backup versions and the session keys backed up in them.

Versions are numbered per user from 1 and never reused: deleting a version marks it deleted
and drops its keys. The *current* version is the newest one not deleted; only it accepts new
keys (``M_WRONG_ROOM_KEYS_VERSION`` otherwise), while every existing version can be read.

Each version has an ``etag`` that grows whenever its keys change, and the keys' ``count``.
:meth:`KeyBackupStore.put_keys` applies the spec's replacement rule
(:func:`e2ee.backup.should_replace`) to each session in one transaction; it starts by touching
the version's row, which on PostgreSQL locks it, so two concurrent uploads to one version run
one after the other and the better key always wins.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import (
    BigInteger,
    and_,
    bindparam,
    delete,
    false,
    func,
    insert,
    select,
    text,
    update,
)

from e2ee.backup import should_replace
from e2ee.models import KeyBackupData
from homeserver.storage.db import Conn, Database, UniqueViolation
from homeserver.storage.schema import e2e_room_keys, e2e_room_keys_versions

__all__ = [
    "BackupVersionNotFound",
    "BackupVersionRow",
    "KeyBackupStore",
    "RoomKeyRow",
    "WrongBackupVersion",
]


class BackupVersionNotFound(Exception):
    """The user has no such backup version (or it was deleted)."""


class WrongBackupVersion(Exception):
    """Keys were sent to a version that is not the current one.

    Attributes:
        current_version: the current version.
    """

    def __init__(self, current_version: int) -> None:
        super().__init__(f"the current backup version is {current_version}")
        self.current_version = current_version


@dataclass(frozen=True, slots=True)
class BackupVersionRow:
    """A backup version with its keys' ``etag`` and ``count``."""

    version: int
    algorithm: str
    auth_data: Any
    etag: int
    count: int


@dataclass(frozen=True, slots=True)
class RoomKeyRow:
    """One backed-up session key."""

    room_id: str
    session_id: str
    data: KeyBackupData


_V = e2e_room_keys_versions
_K = e2e_room_keys

_IS_VERSION = and_(
    _V.c.user_id == bindparam("user_id"),
    _V.c.version == bindparam("version", type_=BigInteger),
    _V.c.deleted == false(),
)
_MAX_VERSION = select(func.max(_V.c.version)).where(_V.c.user_id == bindparam("user_id"))
_CURRENT_VERSION = select(func.max(_V.c.version)).where(
    and_(_V.c.user_id == bindparam("user_id"), _V.c.deleted == false())
)
_INSERT_VERSION = insert(_V).values(
    user_id=bindparam("user_id"),
    version=bindparam("version"),
    algorithm=bindparam("algorithm"),
    auth_data_json=bindparam("auth_data_json"),
    etag=0,
    deleted=False,
)
_GET_VERSION = select(_V.c.version, _V.c.algorithm, _V.c.auth_data_json, _V.c.etag).where(
    _IS_VERSION
)
_UPDATE_VERSION = update(_V).where(_IS_VERSION).values(auth_data_json=bindparam("auth_data_json"))
_DELETE_VERSION = update(_V).where(_IS_VERSION).values(deleted=True)
# Takes the row lock on PostgreSQL (serialising writers of one version).
_LOCK_VERSION = update(_V).where(_IS_VERSION).values(etag=_V.c.etag)
_BUMP_ETAG = update(_V).where(_IS_VERSION).values(etag=_V.c.etag + 1)
_GET_ETAG = select(_V.c.etag).where(_IS_VERSION)

_OF_VERSION = and_(
    _K.c.user_id == bindparam("user_id"), _K.c.version == bindparam("version", type_=BigInteger)
)
_OF_ROOM = and_(_OF_VERSION, _K.c.room_id == bindparam("room_id"))
_OF_SESSION = and_(_OF_ROOM, _K.c.session_id == bindparam("session_id"))
_COUNT = select(func.count()).where(_OF_VERSION)
_KEY_COLUMNS = (
    _K.c.room_id,
    _K.c.session_id,
    _K.c.first_message_index,
    _K.c.forwarded_count,
    _K.c.is_verified,
    _K.c.session_data_json,
)
_GET_KEYS = {
    "version": select(*_KEY_COLUMNS).where(_OF_VERSION).order_by(_K.c.room_id, _K.c.session_id),
    "room": select(*_KEY_COLUMNS).where(_OF_ROOM).order_by(_K.c.session_id),
    "session": select(*_KEY_COLUMNS).where(_OF_SESSION),
}
_DELETE_KEYS = {
    "version": delete(_K).where(_OF_VERSION),
    "room": delete(_K).where(_OF_ROOM),
    "session": delete(_K).where(_OF_SESSION),
}
_UPSERT_KEY = text(
    "INSERT INTO e2e_room_keys (user_id, version, room_id, session_id, first_message_index, "
    "forwarded_count, is_verified, session_data_json) VALUES (:user_id, :version, :room_id, "
    ":session_id, :first_message_index, :forwarded_count, :is_verified, :session_data_json) "
    "ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET "
    "first_message_index = excluded.first_message_index, "
    "forwarded_count = excluded.forwarded_count, is_verified = excluded.is_verified, "
    "session_data_json = excluded.session_data_json"
).bindparams(
    bindparam("version", type_=BigInteger),
    bindparam("first_message_index", type_=BigInteger),
    bindparam("forwarded_count", type_=BigInteger),
)

#: create_version retries this often when a concurrent create took the same number.
_CREATE_ATTEMPTS = 5


def _scope(room_id: str | None, session_id: str | None) -> str:
    if session_id is not None:
        assert room_id is not None
        return "session"
    return "version" if room_id is None else "room"


def _key_row(row: tuple[Any, ...]) -> RoomKeyRow:
    room_id, session_id, index, forwarded, verified, data_json = row
    return RoomKeyRow(
        str(room_id),
        str(session_id),
        KeyBackupData(int(index), int(forwarded), bool(verified), orjson.loads(data_json)),
    )


async def _require_version(conn: Conn, user_id: str, version: int) -> None:
    if await conn.fetch_one(_GET_ETAG, {"user_id": user_id, "version": version}) is None:
        raise BackupVersionNotFound()


async def _etag_and_count(conn: Conn, params: dict[str, Any]) -> tuple[int, int]:
    etag = await conn.fetch_val(_GET_ETAG, params)
    count = await conn.fetch_val(_COUNT, params)
    return int(etag), int(count)


class KeyBackupStore:
    """Backup versions and backed-up keys, per user."""

    def __init__(self, db: Database) -> None:
        self._db = db

    # --- versions -------------------------------------------------------------------------------

    async def create_version(self, user_id: str, algorithm: str, auth_data: Any) -> int:
        """Create a version (it becomes the current one); return its number."""
        auth_json = orjson.dumps(auth_data).decode()

        async def work(conn: Conn) -> int:
            newest = await conn.fetch_val(_MAX_VERSION, {"user_id": user_id})
            version = (int(newest) if newest is not None else 0) + 1
            await conn.execute(
                _INSERT_VERSION,
                {
                    "user_id": user_id,
                    "version": version,
                    "algorithm": algorithm,
                    "auth_data_json": auth_json,
                },
            )
            return version

        for attempt in range(_CREATE_ATTEMPTS):
            try:
                return await self._db.run(work, name="create_backup_version")
            except UniqueViolation:
                if attempt == _CREATE_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def get_version(self, user_id: str, version: int | None) -> BackupVersionRow | None:
        """A version (None: the current one), or None if there is no such (live) version."""

        async def work(conn: Conn) -> BackupVersionRow | None:
            wanted = version
            if wanted is None:
                wanted = await conn.fetch_val(_CURRENT_VERSION, {"user_id": user_id})
                if wanted is None:
                    return None
            params = {"user_id": user_id, "version": int(wanted)}
            row = await conn.fetch_one(_GET_VERSION, params)
            if row is None:
                return None
            count = await conn.fetch_val(_COUNT, params)
            return BackupVersionRow(
                int(row[0]), str(row[1]), orjson.loads(row[2]), int(row[3]), int(count)
            )

        return await self._db.read(work, name="get_backup_version")

    async def update_version(self, user_id: str, version: int, auth_data: Any) -> bool:
        """Replace a version's ``auth_data``; False if there is no such version."""
        params = {
            "user_id": user_id,
            "version": version,
            "auth_data_json": orjson.dumps(auth_data).decode(),
        }

        async def work(conn: Conn) -> int:
            return await conn.execute(_UPDATE_VERSION, params)

        return await self._db.run(work, name="update_backup_version") > 0

    async def delete_version(self, user_id: str, version: int) -> bool:
        """Delete a version and its keys; False if there is no such version."""
        params = {"user_id": user_id, "version": version}

        async def work(conn: Conn) -> bool:
            if not await conn.execute(_DELETE_VERSION, params):
                return False
            await conn.execute(_DELETE_KEYS["version"], params)
            return True

        return await self._db.run(work, name="delete_backup_version")

    # --- keys -----------------------------------------------------------------------------------

    async def put_keys(
        self, user_id: str, version: int, keys: Sequence[tuple[str, str, KeyBackupData]]
    ) -> tuple[int, int]:
        """Back up session keys ``(room_id, session_id, data)`` to the current version.

        Each replaces the stored key of its session only if :func:`should_replace` says so.

        Returns:
            The version's ``etag`` and ``count`` afterwards.

        Raises:
            BackupVersionNotFound: the user has no current version.
            WrongBackupVersion: ``version`` is not the current version.
        """
        params = {"user_id": user_id, "version": version}

        async def work(conn: Conn) -> tuple[int, int]:
            await conn.execute(_LOCK_VERSION, params)
            current = await conn.fetch_val(_CURRENT_VERSION, {"user_id": user_id})
            if current is None:
                raise BackupVersionNotFound()
            if int(current) != version:
                raise WrongBackupVersion(int(current))
            changed = False
            for room_id, session_id, data in keys:
                key_params = {**params, "room_id": room_id, "session_id": session_id}
                row = await conn.fetch_one(_GET_KEYS["session"], key_params)
                if not should_replace(None if row is None else _key_row(row).data, data):
                    continue
                await conn.execute(
                    _UPSERT_KEY,
                    {
                        **key_params,
                        "first_message_index": data.first_message_index,
                        "forwarded_count": data.forwarded_count,
                        "is_verified": data.is_verified,
                        "session_data_json": orjson.dumps(data.session_data).decode(),
                    },
                )
                changed = True
            if changed:
                await conn.execute(_BUMP_ETAG, params)
            return await _etag_and_count(conn, params)

        return await self._db.run(work, name="put_backup_keys")

    async def get_keys(
        self, user_id: str, version: int, room_id: str | None = None, session_id: str | None = None
    ) -> list[RoomKeyRow]:
        """The version's keys: all, a room's, or one session's.

        Raises:
            BackupVersionNotFound: no such (live) version.
        """
        params = {
            "user_id": user_id,
            "version": version,
            "room_id": room_id,
            "session_id": session_id,
        }
        stmt = _GET_KEYS[_scope(room_id, session_id)]

        async def work(conn: Conn) -> list[RoomKeyRow]:
            await _require_version(conn, user_id, version)
            return [_key_row(r) for r in await conn.fetch_all(stmt, params)]

        return await self._db.read(work, name="get_backup_keys")

    async def delete_keys(
        self, user_id: str, version: int, room_id: str | None = None, session_id: str | None = None
    ) -> tuple[int, int]:
        """Delete the version's keys: all, a room's, or one session's.

        Returns:
            The version's ``etag`` and ``count`` afterwards.

        Raises:
            BackupVersionNotFound: no such (live) version.
        """
        params = {
            "user_id": user_id,
            "version": version,
            "room_id": room_id,
            "session_id": session_id,
        }
        stmt = _DELETE_KEYS[_scope(room_id, session_id)]

        async def work(conn: Conn) -> tuple[int, int]:
            base = {"user_id": user_id, "version": version}
            if not await conn.execute(_LOCK_VERSION, base):
                raise BackupVersionNotFound()
            if await conn.execute(stmt, params):
                await conn.execute(_BUMP_ETAG, base)
            return await _etag_and_count(conn, base)

        return await self._db.run(work, name="delete_backup_keys")
