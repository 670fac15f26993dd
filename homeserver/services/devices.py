"""Device management: list, rename and delete a user's devices.

Spec: client-server-api/modules/device_management.md. Deleting a device revokes its access and
refresh tokens and records a device-list change (``DEVICE_LISTS`` stream) in the same
transaction (see :mod:`homeserver.storage.devices`); so does renaming, because a device's display
name is what other users see of it. ``/sync`` and federation will learn of these changes from the
stream once they exist; the E2EE keys and to-device messages of a deleted device are to be
removed here too when those stores land.

User-interactive authentication for deletion is the API layer's job (it sees the request body);
this service is only called once that has passed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from homeserver.errors import InvalidParam, NotFound
from homeserver.storage.devices import DeviceRow, DeviceStore

__all__ = ["MAX_DEVICE_DISPLAY_NAME", "Device", "DeviceService"]

#: The longest device display name accepted, in characters (Synapse's limit too).
MAX_DEVICE_DISPLAY_NAME = 100


@dataclass(frozen=True, slots=True)
class Device:
    """A device as its owner sees it (``last_seen_*`` as stored; ``None`` when never seen)."""

    device_id: str
    display_name: str | None
    last_seen_ts: int | None
    last_seen_ip: str | None


def _device(row: DeviceRow) -> Device:
    return Device(row.device_id, row.display_name, row.last_seen_ts, row.last_seen_ip)


class DeviceService:
    """A user's devices.

    Args:
        devices: the device store.
    """

    def __init__(self, devices: DeviceStore) -> None:
        self._devices = devices

    async def list_devices(self, user_id: str) -> list[Device]:
        """Every device of ``user_id``."""
        return [_device(row) for row in await self._devices.list_devices(user_id)]

    async def get_device(self, user_id: str, device_id: str) -> Device:
        """One device of ``user_id``.

        Raises:
            NotFound: the user has no such device.
        """
        row = await self._devices.get_device(user_id, device_id)
        if row is None:
            raise NotFound("Unknown device")
        return _device(row)

    async def rename_device(self, user_id: str, device_id: str, display_name: str) -> None:
        """Set a device's display name.

        Raises:
            InvalidParam: the name is longer than :data:`MAX_DEVICE_DISPLAY_NAME` characters.
            NotFound: the user has no such device (creating devices is for application services
                only, which this server does not support yet).
        """
        if len(display_name) > MAX_DEVICE_DISPLAY_NAME:
            raise InvalidParam(
                f"Device display name is too long (max {MAX_DEVICE_DISPLAY_NAME} characters)"
            )
        if await self._devices.set_display_name(user_id, device_id, display_name) is None:
            raise NotFound("Unknown device")

    async def check_device_exists(self, user_id: str, device_id: str) -> None:
        """Raise :class:`NotFound` unless the user has the device."""
        await self.get_device(user_id, device_id)

    async def delete_devices(self, user_id: str, device_ids: Sequence[str]) -> list[str]:
        """Delete devices, revoking their tokens; IDs the user does not have are ignored.

        Returns:
            The IDs that were deleted.
        """
        if not device_ids:
            return []
        deleted, _position = await self._devices.delete_devices(user_id, device_ids)
        # The devices' E2EE keys and to-device queues went in the same transaction
        # (storage/e2ee_cleanup.py); the store the app passes in wakes /sync after the commit
        # (services/device_lists.py).
        return deleted
