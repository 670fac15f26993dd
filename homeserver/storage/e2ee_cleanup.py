"""Dropping a deleted device's E2EE data, inside the transaction that deletes the device.

:meth:`homeserver.storage.devices.DeviceStore.delete_devices` calls
:func:`delete_device_e2ee_data` for each device it deletes (logout, ``DELETE /devices``,
``/delete_devices``, logout of all devices all go through it), so a device's keys and pending
to-device messages never outlive it: ``/keys/query`` stops listing it, nobody can claim its
one-time keys, and its to-device queue is gone. Signatures others made on the device are left:
they name a device ID that no key refers to any more, and a re-created device with that ID
gets new keys that those signatures do not verify.
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, delete

from homeserver.storage.db import Conn
from homeserver.storage.schema import (
    e2e_device_keys,
    e2e_fallback_keys,
    e2e_one_time_keys,
    to_device_messages,
    to_device_txns,
)

__all__ = ["delete_device_e2ee_data"]

_DELETES = tuple(
    delete(table).where(
        and_(
            table.c.user_id == bindparam("user_id"),
            table.c.device_id == bindparam("device_id"),
        )
    )
    for table in (
        e2e_device_keys,
        e2e_one_time_keys,
        e2e_fallback_keys,
        to_device_messages,
        to_device_txns,
    )
)


async def delete_device_e2ee_data(conn: Conn, user_id: str, device_id: str) -> None:
    """Delete the device's keys, its pending to-device messages and its to-device txn IDs."""
    params = {"user_id": user_id, "device_id": device_id}
    for stmt in _DELETES:
        await conn.execute(stmt, params)
