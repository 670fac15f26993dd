"""A user's devices: the ``devices`` table, their tokens, and the device-list stream.

One transaction per method. Deleting devices revokes their access and refresh tokens and takes
a ``DEVICE_LISTS`` stream position per deleted device in the same transaction (a row in
``device_list_changes``), so ``/sync`` and the E2EE device-list tracking can later ask "whose
devices changed after position N". Renaming a device does the same: the display name is part of
what other users see of a device (``unsigned.device_display_name`` in key queries).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import and_, bindparam, delete, insert, select, update

from homeserver.storage.db import Conn, Database, Row, UniqueViolation
from homeserver.storage.e2ee_cleanup import delete_device_e2ee_data
from homeserver.storage.schema import access_tokens, device_list_changes, devices, refresh_tokens
from homeserver.storage.stream_ids import next_positions
from homeserver.streams import StreamName

__all__ = ["DeviceExists", "DeviceRow", "DeviceStore"]


class DeviceExists(UniqueViolation):
    """Raised by :meth:`DeviceStore.create_device` when the user has a device with that ID."""


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """One device, as stored."""

    user_id: str
    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None


_COLUMNS = (
    devices.c.user_id,
    devices.c.device_id,
    devices.c.display_name,
    devices.c.last_seen_ts,
    devices.c.last_seen_ip,
)
_IS_DEVICE = and_(
    devices.c.user_id == bindparam("user_id"), devices.c.device_id == bindparam("device_id")
)

_INSERT = insert(devices).values({c.name: bindparam(c.name) for c in _COLUMNS})
_LIST = (
    select(*_COLUMNS).where(devices.c.user_id == bindparam("user_id")).order_by(devices.c.device_id)
)
_GET = select(*_COLUMNS).where(_IS_DEVICE)
_RENAME = update(devices).where(_IS_DEVICE).values(display_name=bindparam("display_name"))
_SEEN = (
    update(devices)
    .where(_IS_DEVICE)
    .values(last_seen_ts=bindparam("last_seen_ts"), last_seen_ip=bindparam("last_seen_ip"))
)
# Tokens go first: their foreign keys cascade on PostgreSQL and on SQLite (foreign_keys=ON),
# but deleting them explicitly does not depend on that.
_DELETE_ACCESS = delete(access_tokens).where(
    and_(
        access_tokens.c.user_id == bindparam("user_id"),
        access_tokens.c.device_id == bindparam("device_id"),
    )
)
_DELETE_REFRESH = delete(refresh_tokens).where(
    and_(
        refresh_tokens.c.user_id == bindparam("user_id"),
        refresh_tokens.c.device_id == bindparam("device_id"),
    )
)
_DELETE = delete(devices).where(_IS_DEVICE)
_RECORD_CHANGE = insert(device_list_changes).values(
    stream_id=bindparam("stream_id"),
    user_id=bindparam("user_id"),
    device_id=bindparam("device_id"),
)
_CHANGES_SINCE = (
    select(device_list_changes.c.stream_id, device_list_changes.c.device_id)
    .where(
        and_(
            device_list_changes.c.user_id == bindparam("user_id"),
            device_list_changes.c.stream_id > bindparam("since"),
        )
    )
    .order_by(device_list_changes.c.stream_id)
)


def _row(row: Row | None) -> DeviceRow | None:
    return None if row is None else DeviceRow(*row)


async def _record_changes(conn: Conn, user_id: str, device_ids: Sequence[str]) -> int:
    """Take one DEVICE_LISTS position per device (last, as stream_ids asks); return the newest."""
    positions = await next_positions(conn, StreamName.DEVICE_LISTS, len(device_ids))
    await conn.execute_many(
        _RECORD_CHANGE,
        [
            {"stream_id": pos, "user_id": user_id, "device_id": device_id}
            for pos, device_id in zip(positions, device_ids, strict=True)
        ],
    )
    return positions[-1]


class DeviceStore:
    """Create, list, rename and delete devices."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_device(
        self, user_id: str, device_id: str, *, display_name: str | None = None
    ) -> DeviceRow:
        """Create a device (login does this; tests too).

        Raises:
            DeviceExists: the user already has ``device_id``.
        """
        device = DeviceRow(user_id, device_id, display_name, None, None)

        async def work(conn: Conn) -> None:
            await conn.execute(
                _INSERT,
                {
                    "user_id": user_id,
                    "device_id": device_id,
                    "display_name": display_name,
                    "last_seen_ts": None,
                    "last_seen_ip": None,
                },
            )
            await _record_changes(conn, user_id, [device_id])

        try:
            await self._db.run(work, name="create_device")
        except UniqueViolation as e:
            raise DeviceExists(str(e), constraint=e.constraint) from e
        return device

    async def list_devices(self, user_id: str) -> list[DeviceRow]:
        """Every device of ``user_id``, ordered by device ID."""

        async def work(conn: Conn) -> list[DeviceRow]:
            return [DeviceRow(*r) for r in await conn.fetch_all(_LIST, {"user_id": user_id})]

        return await self._db.read(work, name="list_devices")

    async def get_device(self, user_id: str, device_id: str) -> DeviceRow | None:
        """The device, or ``None``."""

        async def work(conn: Conn) -> DeviceRow | None:
            return _row(await conn.fetch_one(_GET, {"user_id": user_id, "device_id": device_id}))

        return await self._db.read(work, name="get_device")

    async def set_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> int | None:
        """Rename a device.

        Returns:
            The DEVICE_LISTS position of the change, or ``None`` if there is no such device.
        """

        async def work(conn: Conn) -> int | None:
            changed = await conn.execute(
                _RENAME,
                {"user_id": user_id, "device_id": device_id, "display_name": display_name},
            )
            if not changed:
                return None
            return await _record_changes(conn, user_id, [device_id])

        return await self._db.run(work, name="set_device_display_name")

    async def record_last_seen(self, user_id: str, device_id: str, *, ts: int, ip: str) -> bool:
        """Store when and from where the device was last used; return whether it exists."""

        async def work(conn: Conn) -> int:
            return await conn.execute(
                _SEEN,
                {
                    "user_id": user_id,
                    "device_id": device_id,
                    "last_seen_ts": ts,
                    "last_seen_ip": ip,
                },
            )

        return await self._db.run(work, name="record_device_last_seen") > 0

    async def delete_devices(
        self, user_id: str, device_ids: Sequence[str]
    ) -> tuple[list[str], int | None]:
        """Delete devices and revoke their access and refresh tokens.

        Device IDs the user does not have are skipped (deleting is idempotent).

        Returns:
            The IDs that were deleted, and the DEVICE_LISTS position of the last change
            (``None`` if nothing was deleted).
        """
        wanted = list(dict.fromkeys(device_ids))

        async def work(conn: Conn) -> tuple[list[str], int | None]:
            deleted: list[str] = []
            for device_id in wanted:
                params = {"user_id": user_id, "device_id": device_id}
                await conn.execute(_DELETE_ACCESS, params)
                await conn.execute(_DELETE_REFRESH, params)
                if await conn.execute(_DELETE, params):
                    deleted.append(device_id)
                    await delete_device_e2ee_data(conn, user_id, device_id)  # e2ee (issue 8)
            if not deleted:
                return deleted, None
            return deleted, await _record_changes(conn, user_id, deleted)

        return await self._db.run(work, name="delete_devices")

    async def device_list_changes(self, user_id: str, since: int) -> list[tuple[int, str]]:
        """``(position, device_id)`` of the user's device changes after ``since``, oldest first."""

        async def work(conn: Conn) -> list[tuple[int, str]]:
            rows = await conn.fetch_all(_CHANGES_SINCE, {"user_id": user_id, "since": since})
            return [(int(pos), str(device_id)) for pos, device_id in rows]

        return await self._db.read(work, name="device_list_changes")
