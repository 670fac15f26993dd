"""Server-side key backups: ``/room_keys/version`` and ``/room_keys/keys``.

Spec: end_to_end_encryption.md › Server-side key backups; OpenAPI ``key_backup.yaml``.

- Versions are per user, numbered from 1 and returned as strings. ``GET /room_keys/version``
  is the current (newest not deleted) version; unknown or deleted versions are
  ``404 M_NOT_FOUND``, as is any version string that is not a number we issued.
- ``PUT`` of a version changes its ``auth_data`` only: the ``algorithm`` must stay the same
  and a ``version`` in the body must be the path's (``400 M_INVALID_PARAM``).
- Keys are uploaded to the current version only: another version is
  ``403 M_WRONG_ROOM_KEYS_VERSION`` with ``current_version``; no version at all is ``404``.
  A session already backed up is replaced only as :func:`e2ee.backup.should_replace` says.
- Answers carry ``etag`` (changes whenever the version's keys change) and ``count``.
- Only the owner ever reads or writes a backup: every call takes the requester's user ID.

The ``m.key_backup`` account data (whether the user wants backups, spec v1.19) is ordinary
global account data that clients set and read through the account data API.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from e2ee.errors import E2eeError
from e2ee.models import KeyBackupData, parse_backup_version_info, parse_key_backup_data
from homeserver.errors import BadJson, Codes, InvalidParam, MatrixError, NotFound
from homeserver.storage.key_backup import (
    BackupVersionNotFound,
    BackupVersionRow,
    KeyBackupStore,
    WrongBackupVersion,
)

__all__ = ["KeyBackupService", "parse_version"]

JsonDict = dict[str, Any]

#: The longest version string we could have issued (BigInteger).
_MAX_VERSION_DIGITS = 18


def parse_version(version: str) -> int:
    """A version string back to its number.

    Raises:
        NotFound: not a version this server issues (so no such backup exists).
    """
    if not version.isascii() or not version.isdigit() or len(version) > _MAX_VERSION_DIGITS:
        raise NotFound("Unknown backup version")
    return int(version)


def _same_version(value: Any, number: int) -> bool:
    """Whether a body's ``version`` names version ``number``: the spec's string, or the same
    number written as a JSON integer (some clients, SyTest among them, send one)."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value == number
    return isinstance(value, str) and value.isascii() and value.isdigit() and int(value) == number


def _version_json(row: BackupVersionRow) -> JsonDict:
    return {
        "algorithm": row.algorithm,
        "auth_data": row.auth_data,
        "count": row.count,
        "etag": str(row.etag),
        "version": str(row.version),
    }


def _etag_count(etag: int, count: int) -> JsonDict:
    return {"etag": str(etag), "count": count}


def _sessions(obj: Any, where: str) -> list[tuple[str, KeyBackupData]]:
    if not isinstance(obj, Mapping):
        raise BadJson(f"{where} must be an object")
    sessions = obj.get("sessions")
    if not isinstance(sessions, Mapping):
        raise BadJson(f"{where}.sessions must be an object")
    out = []
    for session_id, data in sessions.items():
        if not session_id:
            raise BadJson("session IDs must not be empty")
        try:
            out.append((session_id, parse_key_backup_data(data)))
        except E2eeError as e:
            raise BadJson(str(e)) from None
    return out


class KeyBackupService:
    """A user's key backup versions and keys.

    Args:
        store: the backup store.
    """

    def __init__(self, store: KeyBackupStore) -> None:
        self._store = store

    # --- versions -------------------------------------------------------------------------------

    async def create_version(self, user_id: str, body: Mapping[str, Any]) -> str:
        """Create a backup version from ``{algorithm, auth_data}``; return its version."""
        try:
            info = parse_backup_version_info(body)
        except E2eeError as e:
            raise BadJson(str(e)) from None
        return str(await self._store.create_version(user_id, info.algorithm, info.auth_data))

    async def get_version(self, user_id: str, version: str | None) -> JsonDict:
        """A version (None: the current one) with its ``count`` and ``etag``.

        Raises:
            NotFound: no such version (or no backup at all).
        """
        number = None if version is None else parse_version(version)
        row = await self._store.get_version(user_id, number)
        if row is None:
            raise NotFound(
                "No current backup version" if version is None else "Unknown backup version"
            )
        return _version_json(row)

    async def update_version(self, user_id: str, version: str, body: Mapping[str, Any]) -> None:
        """Replace a version's ``auth_data``.

        Raises:
            NotFound: no such version.
            InvalidParam: the algorithm differs, or the body's ``version`` is another.
        """
        number = parse_version(version)
        try:
            info = parse_backup_version_info(body)
        except E2eeError as e:
            raise BadJson(str(e)) from None
        if "version" in body and not _same_version(body["version"], number):
            raise InvalidParam("The version in the body does not match the path")
        row = await self._store.get_version(user_id, number)
        if row is None:
            raise NotFound("Unknown backup version")
        if row.algorithm != info.algorithm:
            raise InvalidParam("The algorithm of a backup version cannot change")
        if not await self._store.update_version(user_id, number, info.auth_data):
            raise NotFound("Unknown backup version")

    async def delete_version(self, user_id: str, version: str) -> None:
        """Delete a version and its keys.

        Raises:
            NotFound: no such version.
        """
        if not await self._store.delete_version(user_id, parse_version(version)):
            raise NotFound("Unknown backup version")

    # --- keys -----------------------------------------------------------------------------------

    async def put_keys(
        self,
        user_id: str,
        version: str,
        body: Mapping[str, Any],
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> JsonDict:
        """Back up keys: ``{rooms: {room: {sessions: ...}}}``, a room's ``{sessions: ...}``,
        or one session's ``KeyBackupData``. Returns ``{etag, count}``.

        Raises:
            BadJson: malformed body.
            NotFound: no backup version at all (or ``version`` is not a number).
            MatrixError: 403 ``M_WRONG_ROOM_KEYS_VERSION`` with ``current_version``.
        """
        number = parse_version(version)
        keys: list[tuple[str, str, KeyBackupData]] = []
        if session_id is not None:
            assert room_id is not None
            try:
                keys.append((room_id, session_id, parse_key_backup_data(body)))
            except E2eeError as e:
                raise BadJson(str(e)) from None
        elif room_id is not None:
            keys.extend((room_id, s, d) for s, d in _sessions(body, "body"))
        else:
            rooms = body.get("rooms")
            if not isinstance(rooms, Mapping):
                raise BadJson("rooms must be an object")
            for rid, room in rooms.items():
                if not rid:
                    raise BadJson("room IDs must not be empty")
                keys.extend((rid, s, d) for s, d in _sessions(room, f"rooms.{rid}"))
        try:
            etag, count = await self._store.put_keys(user_id, number, keys)
        except BackupVersionNotFound:
            raise NotFound("Unknown backup version") from None
        except WrongBackupVersion as e:
            raise MatrixError(
                403,
                Codes.WRONG_ROOM_KEYS_VERSION,
                "Wrong backup version",
                current_version=str(e.current_version),
            ) from None
        return _etag_count(etag, count)

    async def get_keys(
        self,
        user_id: str,
        version: str,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> JsonDict:
        """The version's keys: ``{rooms}``, a room's ``{sessions}``, or one ``KeyBackupData``.

        Raises:
            NotFound: no such version, or (for one session) no key for it.
        """
        try:
            rows = await self._store.get_keys(user_id, parse_version(version), room_id, session_id)
        except BackupVersionNotFound:
            raise NotFound("Unknown backup version") from None
        if session_id is not None:
            if not rows:
                raise NotFound("No backed-up key for this session")
            return rows[0].data.to_json()
        if room_id is not None:
            return {"sessions": {r.session_id: r.data.to_json() for r in rows}}
        rooms: JsonDict = {}
        for r in rows:
            rooms.setdefault(r.room_id, {"sessions": {}})["sessions"][r.session_id] = (
                r.data.to_json()
            )
        return {"rooms": rooms}

    async def delete_keys(
        self,
        user_id: str,
        version: str,
        room_id: str | None = None,
        session_id: str | None = None,
    ) -> JsonDict:
        """Delete the version's keys (all, a room's, one session's); return ``{etag, count}``.

        Raises:
            NotFound: no such version.
        """
        try:
            etag, count = await self._store.delete_keys(
                user_id, parse_version(version), room_id, session_id
            )
        except BackupVersionNotFound:
            raise NotFound("Unknown backup version") from None
        return _etag_count(etag, count)
