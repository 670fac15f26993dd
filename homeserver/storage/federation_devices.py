"""Device-list changes as other servers see them: our users' changes to send, theirs to record.

Reads and writes the ``device_list_changes`` table (one DEVICE_LISTS position per
``(user_id, device_id or key)`` change) that ``storage/e2ee_keys.py`` and the device store write
for local users. A change announced by another server is recorded there too, so local
``/sync`` and ``/keys/changes`` list the remote user exactly as they list a local one.

Other servers' users' device lists (``remote_device_lists``, ``remote_devices``): a cache of
what their server told us, replaced whole by a resync and changed one device at a time by
updates that follow the held ``stream_id``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import BigInteger, and_, bindparam, delete, func, insert, select, update

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import device_list_changes, remote_device_lists, remote_devices
from homeserver.storage.stream_ids import current_position, next_position
from homeserver.streams import StreamName

__all__ = ["DeviceChange", "FederationDeviceStore", "RemoteDevice", "RemoteDeviceList"]


@dataclass(frozen=True, slots=True)
class DeviceChange:
    """One recorded change of a user's devices or keys."""

    stream_id: int
    user_id: str
    #: a device ID or a cross-signing public key (see ``storage/e2ee_keys.py``)
    device_id: str


@dataclass(frozen=True, slots=True)
class RemoteDevice:
    """A device of another server's user, as their server sent it."""

    device_id: str
    display_name: str | None
    keys: Mapping[str, Any] | None


@dataclass(frozen=True, slots=True)
class RemoteDeviceList:
    """The held device list of another server's user."""

    user_id: str
    stream_id: int
    devices: tuple[RemoteDevice, ...]
    master_key: Mapping[str, Any] | None
    self_signing_key: Mapping[str, Any] | None


def _dumps(value: Mapping[str, Any] | None) -> str | None:
    return None if value is None else orjson.dumps(value).decode()


def _loads(value: object) -> Any:
    return None if value is None else orjson.loads(str(value))


_LIST_OF = select(
    remote_device_lists.c.stream_id,
    remote_device_lists.c.master_key_json,
    remote_device_lists.c.self_signing_key_json,
).where(remote_device_lists.c.user_id == bindparam("user_id"))
_DEVICES_OF = (
    select(remote_devices.c.device_id, remote_devices.c.display_name, remote_devices.c.keys_json)
    .where(remote_devices.c.user_id == bindparam("user_id"))
    .order_by(remote_devices.c.device_id)
)
_DELETE_LIST = delete(remote_device_lists).where(
    remote_device_lists.c.user_id == bindparam("user_id")
)
_DELETE_DEVICES = delete(remote_devices).where(remote_devices.c.user_id == bindparam("user_id"))
_DELETE_DEVICE = delete(remote_devices).where(
    and_(
        remote_devices.c.user_id == bindparam("user_id"),
        remote_devices.c.device_id == bindparam("device_id"),
    )
)
_INSERT_LIST = insert(remote_device_lists).values(
    user_id=bindparam("user_id"),
    stream_id=bindparam("stream_id"),
    master_key_json=bindparam("master_key_json"),
    self_signing_key_json=bindparam("self_signing_key_json"),
)
_INSERT_DEVICE = insert(remote_devices).values(
    user_id=bindparam("user_id"),
    device_id=bindparam("device_id"),
    display_name=bindparam("display_name"),
    keys_json=bindparam("keys_json"),
)
_SET_STREAM = (
    update(remote_device_lists)
    .where(
        and_(
            remote_device_lists.c.user_id == bindparam("user_id"),
            remote_device_lists.c.stream_id == bindparam("expected", type_=BigInteger),
        )
    )
    .values(stream_id=bindparam("stream_id", type_=BigInteger))
)

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

    # --- other servers' device lists -------------------------------------------------------------

    async def remote_list(self, user_id: str) -> RemoteDeviceList | None:
        """The held device list of another server's user, or None."""

        async def work(conn: Conn) -> RemoteDeviceList | None:
            row = await conn.fetch_one(_LIST_OF, {"user_id": user_id})
            if row is None:
                return None
            devices = tuple(
                RemoteDevice(str(d), None if n is None else str(n), _loads(k))
                for d, n, k in await conn.fetch_all(_DEVICES_OF, {"user_id": user_id})
            )
            return RemoteDeviceList(user_id, int(row[0]), devices, _loads(row[1]), _loads(row[2]))

        return await self._db.read(work, name="remote_device_list")

    async def replace_remote_list(
        self,
        user_id: str,
        stream_id: int,
        devices: Sequence[RemoteDevice],
        master_key: Mapping[str, Any] | None,
        self_signing_key: Mapping[str, Any] | None,
    ) -> None:
        """Hold exactly this device list for ``user_id`` (a resync)."""

        async def work(conn: Conn) -> None:
            await conn.execute(_DELETE_DEVICES, {"user_id": user_id})
            await conn.execute(_DELETE_LIST, {"user_id": user_id})
            await conn.execute(
                _INSERT_LIST,
                {
                    "user_id": user_id,
                    "stream_id": stream_id,
                    "master_key_json": _dumps(master_key),
                    "self_signing_key_json": _dumps(self_signing_key),
                },
            )
            unique = {d.device_id: d for d in devices}
            if unique:
                await conn.execute_many(
                    _INSERT_DEVICE,
                    [
                        {
                            "user_id": user_id,
                            "device_id": d.device_id,
                            "display_name": d.display_name,
                            "keys_json": _dumps(d.keys),
                        }
                        for d in unique.values()
                    ],
                )

        await self._db.run(work, name="replace_remote_device_list")

    async def update_remote_device(
        self, user_id: str, expected: int, stream_id: int, device: RemoteDevice, deleted: bool
    ) -> bool:
        """Apply one device's update if the held list is at ``expected``; False otherwise
        (the list moved or is not held: resync instead)."""

        async def work(conn: Conn) -> bool:
            moved = await conn.execute(
                _SET_STREAM, {"user_id": user_id, "expected": expected, "stream_id": stream_id}
            )
            if not moved:
                return False
            params = {"user_id": user_id, "device_id": device.device_id}
            await conn.execute(_DELETE_DEVICE, params)
            if not deleted:
                await conn.execute(
                    _INSERT_DEVICE,
                    {
                        **params,
                        "display_name": device.display_name,
                        "keys_json": _dumps(device.keys),
                    },
                )
            return True

        return await self._db.run(work, name="update_remote_device")

    async def forget_remote_list(self, user_id: str) -> None:
        """Drop the held device list of ``user_id`` (it can no longer be trusted)."""

        async def work(conn: Conn) -> None:
            await conn.execute(_DELETE_DEVICES, {"user_id": user_id})
            await conn.execute(_DELETE_LIST, {"user_id": user_id})

        await self._db.run(work, name="forget_remote_device_list")
