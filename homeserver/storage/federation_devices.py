"""Device-list changes as other servers see them: our users' changes to send, theirs to record.

Reads and writes the ``device_list_changes`` table (one DEVICE_LISTS position per
``(user_id, device_id or key)`` change) that ``storage/e2ee_keys.py`` and the device store write
for local users. A change announced by another server is recorded there too, so local
``/sync`` and ``/keys/changes`` list the remote user exactly as they list a local one.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import BigInteger, and_, bindparam, func, insert, select

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import device_list_changes
from homeserver.storage.stream_ids import current_position, next_position
from homeserver.streams import StreamName

__all__ = ["DeviceChange", "FederationDeviceStore"]


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """One recorded change of a user's devices or keys."""

    stream_id: int
    user_id: str
    #: a device ID or a cross-signing public key (see ``storage/e2ee_keys.py``)
    device_id: str


_CHANGES_AFTER = (
    select(
        device_list_changes.c.stream_id,
        device_list_changes.c.user_id,
        device_list_changes.c.device_id,
    )
    .where(device_list_changes.c.stream_id > bindparam("after", type_=BigInteger))
    .order_by(device_list_changes.c.stream_id)
    .limit(bindparam("limit"))
)
_PREVIOUS = select(func.max(device_list_changes.c.stream_id)).where(
    and_(
        device_list_changes.c.user_id == bindparam("user_id"),
        device_list_changes.c.stream_id < bindparam("before", type_=BigInteger),
    )
)
_LATEST = select(func.max(device_list_changes.c.stream_id)).where(
    device_list_changes.c.user_id == bindparam("user_id")
)
_RECORD = insert(device_list_changes).values(
    stream_id=bindparam("stream_id"), user_id=bindparam("user_id"), device_id=bindparam("device_id")
)


class FederationDeviceStore:
    """Device-list changes for federation."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def position(self) -> int:
        """The current DEVICE_LISTS position."""

        async def work(conn: Conn) -> int:
            return await current_position(conn, StreamName.DEVICE_LISTS)

        return await self._db.read(work, name="federation_device_lists_position")

    async def changes_after(self, after: int, limit: int) -> list[DeviceChange]:
        """Every user's changes after ``after``, oldest first, at most ``limit``."""

        async def work(conn: Conn) -> list[DeviceChange]:
            rows = await conn.fetch_all(_CHANGES_AFTER, {"after": after, "limit": limit})
            return [DeviceChange(int(r[0]), str(r[1]), str(r[2])) for r in rows]

        return await self._db.read(work, name="federation_device_changes_after")

    async def previous_change(self, user_id: str, before: int) -> int | None:
        """The user's newest change before ``before``."""

        async def work(conn: Conn) -> int | None:
            value = await conn.fetch_val(_PREVIOUS, {"user_id": user_id, "before": before})
            return None if value is None else int(value)

        return await self._db.read(work, name="federation_previous_device_change")

    async def latest_change(self, user_id: str) -> int:
        """The user's newest change (0: none)."""

        async def work(conn: Conn) -> int:
            value = await conn.fetch_val(_LATEST, {"user_id": user_id})
            return 0 if value is None else int(value)

        return await self._db.read(work, name="federation_latest_device_change")

    async def record_remote_change(self, user_id: str, device_id: str) -> int:
        """Record that another server's user changed ``device_id`` (or a key); its position."""

        async def work(conn: Conn) -> int:
            position = await next_position(conn, StreamName.DEVICE_LISTS)
            await conn.execute(
                _RECORD, {"stream_id": position, "user_id": user_id, "device_id": device_id}
            )
            return position

        return await self._db.run(work, name="federation_record_remote_device_change")
