"""Waking ``/sync`` when a user's device list changes.

Device-list changes are written by the device store in the transaction of the change (a login
creates a device, a logout or ``DELETE /devices`` removes one, a rename changes one), each with a
DEVICE_LISTS position. :class:`AnnouncingDeviceStore` is that store with one addition: after the
commit it tells the notifier, for the user and everyone who shares a room with them, so their
long-polls return the ``device_lists.changed`` entry at once rather than at their next timeout.
Clients need this promptly: a device they do not know about cannot decrypt what they send next.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from homeserver.services.notifier import Notifier
from homeserver.storage.db import Database
from homeserver.storage.devices import DeviceRow, DeviceStore
from homeserver.storage.stream_ids import StreamIdGenerator
from homeserver.streams import StreamName

__all__ = ["AnnouncingDeviceStore", "DeviceListAnnouncer"]


class DeviceListAnnouncer:
    """Notifies DEVICE_LISTS changes to the user and the users sharing a room with them.

    Args:
        users_sharing_room: the users in any room with the given user.
        streams: reads the committed DEVICE_LISTS position when a write did not return it.
        notifier: the app's notifier.
    """

    def __init__(
        self,
        users_sharing_room: Callable[[str], Awaitable[set[str]]],
        streams: StreamIdGenerator,
        notifier: Notifier,
    ) -> None:
        self._sharing = users_sharing_room
        self._streams = streams
        self._notifier = notifier
        self._on_deleted: list[Callable[[str, Sequence[str]], None]] = []
        self._on_changed: list[Callable[[str], None]] = []

    def add_deletion_listener(self, listener: Callable[[str, Sequence[str]], None]) -> None:
        """Call ``listener(user_id, device_ids)`` after devices are deleted (caches of
        per-device data drop their entries)."""
        self._on_deleted.append(listener)

    def add_change_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(user_id)`` after each announced change (federation sends it on)."""
        self._on_changed.append(listener)

    def deleted(self, user_id: str, device_ids: Sequence[str]) -> None:
        for listener in self._on_deleted:
            listener(user_id, device_ids)

    async def announce(self, user_id: str, position: int | None = None) -> None:
        if position is None:
            position = await self._streams.current_position(StreamName.DEVICE_LISTS)
        users = {user_id} | await self._sharing(user_id)
        self._notifier.notify(StreamName.DEVICE_LISTS, position, user_ids=sorted(users))
        for listener in self._on_changed:
            listener(user_id)


class AnnouncingDeviceStore(DeviceStore):
    """A :class:`DeviceStore` that announces each device-list change after it commits."""

    def __init__(self, db: Database, announcer: DeviceListAnnouncer) -> None:
        super().__init__(db)
        self._announcer = announcer

    async def create_device(
        self, user_id: str, device_id: str, *, display_name: str | None = None
    ) -> DeviceRow:
        row = await super().create_device(user_id, device_id, display_name=display_name)
        await self._announcer.announce(user_id)
        return row

    async def set_display_name(
        self, user_id: str, device_id: str, display_name: str | None
    ) -> int | None:
        position = await super().set_display_name(user_id, device_id, display_name)
        if position is not None:
            await self._announcer.announce(user_id, position)
        return position

    async def delete_devices(
        self, user_id: str, device_ids: Sequence[str]
    ) -> tuple[list[str], int | None]:
        deleted, position = await super().delete_devices(user_id, device_ids)
        if deleted:
            self._announcer.deleted(user_id, deleted)
        if position is not None:
            await self._announcer.announce(user_id, position)
        return deleted, position
