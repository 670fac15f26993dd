"""What ``/sync`` reports about end-to-end encryption, in one place for the sync service.

Spec: end_to_end_encryption.md › Extensions to /sync (``device_lists``,
``device_one_time_keys_count``, ``device_unused_fallback_key_types``) and send_to_device.md ›
Extensions to /sync (``to_device``).

``/sync`` calls :class:`E2eeSyncSource` with its token range: the TO_DEVICE positions bound
the to-device messages handed out, DEVICE_LISTS and EVENTS positions bound the device-list
changes. When a device syncs with a ``since`` token, everything up to that token's TO_DEVICE
position has reached it, so ``/sync`` calls :meth:`E2eeSyncSource.ack_to_device` first.
"""

from __future__ import annotations

from typing import Any

from homeserver.services.keys import KeyService
from homeserver.services.to_device import ToDeviceService
from homeserver.streams import StreamToken

__all__ = ["E2eeSyncSource"]


class E2eeSyncSource:
    """The E2EE parts of a ``/sync`` response.

    Args:
        keys: the key service.
        to_device: the to-device service.
    """

    def __init__(self, keys: KeyService, to_device: ToDeviceService) -> None:
        self._keys = keys
        self._to_device = to_device

    async def to_device_messages(
        self, user_id: str, device_id: str, since_pos: int, up_to_pos: int, limit: int = 100
    ) -> tuple[list[dict[str, Any]], int]:
        """Messages for the device with position in ``(since_pos, up_to_pos]``, oldest first,
        at most ``limit``; and the position reached (``up_to_pos`` unless limited)."""
        return await self._to_device.messages(user_id, device_id, since_pos, up_to_pos, limit)

    async def ack_to_device(self, user_id: str, device_id: str, up_to_pos: int) -> None:
        """The device has seen everything up to ``up_to_pos`` (it synced with a ``since``
        token at that position): delete those messages."""
        await self._to_device.ack(user_id, device_id, up_to_pos)

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]:
        """``device_one_time_keys_count``: unclaimed one-time keys per algorithm."""
        return await self._keys.one_time_key_counts(user_id, device_id)

    async def unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]:
        """``device_unused_fallback_key_types``."""
        return await self._keys.unused_fallback_key_types(user_id, device_id)

    async def device_list_changes(
        self, user_id: str, from_token: StreamToken, to_token: StreamToken
    ) -> tuple[set[str], set[str]]:
        """``(changed, left)`` as ``/sync`` ``device_lists`` and ``/keys/changes`` define them:
        users sharing a room with ``user_id`` whose devices or cross-signing keys changed in
        ``(from, to]`` on DEVICE_LISTS, plus users who joined a shared room in ``(from, to]`` on
        EVENTS (changed), or with whom ``user_id`` no longer shares any room (left)."""
        return await self._keys.device_list_changes(user_id, from_token, to_token)
