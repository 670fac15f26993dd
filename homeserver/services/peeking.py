"""Peeking into world-readable rooms through ``/sync`` (MSC2753, unstable; not in Matrix
v1.19 and not in Synapse, which only has the older ``/events`` peeking; Dendrite implements it).

``POST /peek/{roomIdOrAlias}`` makes a room appear under ``rooms.peek`` of the *device's*
``/sync``: the first sync after the peek carries the room in full (like a newly joined room),
later ones only what changed. Only rooms whose ``history_visibility`` is ``world_readable`` can
be peeked (``403 M_FORBIDDEN`` otherwise). ``POST /unpeek/{roomId}`` ends a peek; joining the
room ends it too (the room moves to ``rooms.join``).

In-memory state owned by this process: the peeks of each device, each with the EVENTS position
of the first ``/sync`` response that carried the room in full (a sync from an older token gets
it in full again). They are not persisted: a restart ends every peek (MSC2753 peeks are a
view, not a membership; the client peeks again), and so does deleting the device's entry when
the table of devices is full. Each peek wakes the device's user's long-polls, so a waiting
``/sync`` starts listening on the room.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from homeserver.errors import Forbidden
from homeserver.services.notifier import Notifier
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage.stream_ids import StreamIdGenerator
from homeserver.streams import StreamName

__all__ = ["PeekService"]

#: Devices whose peeks are kept (the oldest device's peeks end when it is full).
_MAX_DEVICES = 10_000
#: Rooms one device may peek into at once.
MAX_PEEKS_PER_DEVICE = 50


class PeekService:
    """Who peeks into which room.

    Args:
        resolve_room: a room ID or alias to the room ID (raises ``NotFound`` /
            ``InvalidParam``).
        visibility: the room's current history visibility.
        streams: the committed EVENTS position (where a peek starts).
        notifier: wakes the peeking user's long-polls.
    """

    def __init__(
        self,
        resolve_room: Callable[[str], Awaitable[str]],
        visibility: HistoryVisibility,
        streams: StreamIdGenerator,
        notifier: Notifier,
    ) -> None:
        self._resolve = resolve_room
        self._visibility = visibility
        self._streams = streams
        self._notifier = notifier
        #: (user, device) → room ID → the EVENTS position of the first ``/sync`` response that
        #: carried the room in full (-1: none yet)
        self._peeks: dict[tuple[str, str], dict[str, int]] = {}

    async def peek(self, user_id: str, device_id: str, room_id_or_alias: str) -> str:
        """Start (or keep) peeking; returns the room ID.

        Raises:
            NotFound: unknown room or alias.
            InvalidParam: neither a room ID nor an alias.
            Forbidden: the room is not world-readable, or the device peeks into too many rooms.
        """
        room_id = await self._resolve(room_id_or_alias)
        access = await self._visibility.get_access(room_id, user_id)
        if access.history_visibility != "world_readable":
            raise Forbidden("Only world-readable rooms can be peeked into")
        key = (user_id, device_id)
        rooms = self._peeks.get(key)
        if rooms is None:
            if len(self._peeks) >= _MAX_DEVICES:
                del self._peeks[next(iter(self._peeks))]
            rooms = self._peeks[key] = {}
        if room_id in rooms:
            return room_id
        if len(rooms) >= MAX_PEEKS_PER_DEVICE:
            raise Forbidden(f"A device can peek into at most {MAX_PEEKS_PER_DEVICE} rooms")
        rooms[room_id] = -1
        position = await self._streams.current_position(StreamName.EVENTS)
        self._notifier.notify(StreamName.EVENTS, position, user_ids=(user_id,))
        return room_id

    def delivered(self, user_id: str, device_id: str, room_id: str, position: int) -> None:
        """A ``/sync`` response up to EVENTS ``position`` carried the peeked room in full: a
        later sync from a token at or after it gets only changes."""
        rooms = self._peeks.get((user_id, device_id))
        if rooms is not None and room_id in rooms and rooms[room_id] < 0:
            rooms[room_id] = position

    def unpeek(self, user_id: str, device_id: str, room_id: str) -> None:
        """Stop peeking (nothing happens if the device was not peeking)."""
        rooms = self._peeks.get((user_id, device_id))
        if rooms is not None and rooms.pop(room_id, None) is not None:
            if not rooms:
                del self._peeks[(user_id, device_id)]
            self._notifier.notify(StreamName.EVENTS, 0, user_ids=(user_id,))

    def peeks(self, user_id: str, device_id: str | None) -> dict[str, int]:
        """The device's peeked rooms, each with the EVENTS position from which the device has
        the room in full (-1: not yet)."""
        if device_id is None:
            return {}
        return dict(self._peeks.get((user_id, device_id), {}))
