"""Read receipts and read markers.

Spec: client-server-api/modules/receipts.md and modules/read_markers.md; ``receipts.yaml``,
``read_markers.yaml``.

- ``m.read`` receipts are public: every member of the room sees them in ``/sync`` as one
  ``m.receipt`` ephemeral event per room. ``m.read.private`` receipts reach only their owner
  ("Servers MUST NOT send the m.read.private receipt to any other user"), so writing one wakes
  only the owner's ``/sync``.
- Threaded receipts (``thread_id``: ``"main"`` or a thread root's event ID) are separate
  receipts next to the unthreaded one; each ``(user, type, thread)`` points at one event.
- Receipts and the fully read marker only move forward, by the room's topological order:
  a receipt for an event before the current one is accepted and changes nothing (clients
  racing each other must not move a marker back).
- ``m.fully_read`` is room account data the server manages (clients cannot ``PUT`` it): the
  read markers API writes it and wakes the owner's ``/sync`` on the ACCOUNT_DATA stream.
  ``POST /receipt/m.fully_read/{eventId}`` is the same as ``/read_markers``.
- Users must be joined to the room (``403 M_FORBIDDEN``); the event must be in the room
  (``404 M_NOT_FOUND``: an unknown event, or one in another room, looks the same).

Other servers: receipt listeners (``services/federation_edus.py``) send ``m.read`` receipts of
local users as ``m.receipt`` EDUs (never ``m.read.private``); receipts from other servers come in
through :meth:`ReceiptsService.post_receipt` with the same checks as local ones.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Mapping
from contextlib import asynccontextmanager
from typing import Any

import trio

from federation.core.errors import InvalidIdentifier
from federation.core.ids import parse_room_id
from homeserver.clock import Clock
from homeserver.errors import Forbidden, InvalidParam, NotFound
from homeserver.services.notifier import Notifier
from homeserver.storage.account_data import AccountDataStore
from homeserver.storage.receipts import UNTHREADED, ReceiptRow, ReceiptStore
from homeserver.streams import StreamName

__all__ = [
    "FULLY_READ",
    "READ",
    "READ_PRIVATE",
    "RECEIPT_TYPES",
    "ReceiptsService",
]

READ = "m.read"
READ_PRIVATE = "m.read.private"
FULLY_READ = "m.fully_read"
#: What ``POST /receipt/{receiptType}/...`` accepts.
RECEIPT_TYPES = (READ, READ_PRIVATE, FULLY_READ)
#: The thread ID of the main timeline.
MAIN_THREAD = "main"


def check_room_id(room_id: str) -> None:
    """Raises InvalidParam for a malformed room ID."""
    try:
        parse_room_id(room_id)
    except InvalidIdentifier:
        raise InvalidParam(f"{room_id!r} is not a valid room ID") from None


def _check_event_id(event_id: str, what: str = "event ID") -> None:
    if not event_id.startswith("$") or len(event_id) < 2 or len(event_id.encode()) > 255:
        raise InvalidParam(f"{event_id!r} is not a valid {what}")


class _KeyedLocks:
    """One ``trio.Lock`` per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[tuple[str, str], tuple[trio.Lock, list[int]]] = {}

    @asynccontextmanager
    async def hold(self, key: tuple[str, str]) -> AsyncIterator[None]:
        entry = self._locks.get(key)
        if entry is None:
            entry = self._locks[key] = (trio.Lock(), [0])
        lock, users = entry
        users[0] += 1
        try:
            async with lock:
                yield
        finally:
            users[0] -= 1
            if users[0] == 0:
                del self._locks[key]


class ReceiptsService:
    """Post receipts and read markers; render ``m.receipt`` events for ``/sync``.

    Args:
        receipts: the receipts store (also answers membership and event order).
        account_data: where ``m.fully_read`` lives.
        notifier: woken after each committed change.
        clock: the receipts' ``ts``.
    """

    def __init__(
        self,
        receipts: ReceiptStore,
        account_data: AccountDataStore,
        notifier: Notifier,
        clock: Clock,
    ) -> None:
        self._receipts = receipts
        self._account_data = account_data
        self._notifier = notifier
        self._clock = clock
        self._marker_locks = _KeyedLocks()
        self._read_listeners: list[Callable[[str, str, str, int], None]] = []
        self._receipt_listeners: list[
            Callable[[str, str, str, str, str | None, int], None]
        ] = []

    def add_read_listener(self, listener: Callable[[str, str, str, int], None]) -> None:
        """Call ``listener(user_id, room_id, thread_id, event_position)`` after each receipt
        that moved (unthreaded receipts have thread ID ""): notification counts."""
        self._read_listeners.append(listener)

    def add_receipt_listener(
        self, listener: Callable[[str, str, str, str, str | None, int], None]
    ) -> None:
        """Call ``listener(user_id, room_id, receipt_type, event_id, thread_id, ts)`` after each
        receipt that moved (``thread_id`` None: unthreaded): federation."""
        self._receipt_listeners.append(listener)

    async def post_receipt(
        self,
        user_id: str,
        room_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None = None,
        ts: int | None = None,
    ) -> None:
        """Move ``user_id``'s receipt of ``receipt_type`` (in ``thread_id``) to ``event_id``.

        ``m.fully_read`` sets the fully read marker, as ``/read_markers`` does.

        Args:
            thread_id: None for an unthreaded receipt, ``"main"`` or a thread root's ID.
            ts: the receipt's timestamp (default: now).

        Raises:
            InvalidParam: unknown receipt type, malformed room or event ID, a bad
                ``thread_id``, or a ``thread_id`` with ``m.fully_read``.
            Forbidden: the user is not joined to the room.
            NotFound: the event is not in the room.
        """
        if receipt_type not in RECEIPT_TYPES:
            raise InvalidParam(f"Receipt type must be one of {', '.join(RECEIPT_TYPES)}")
        check_room_id(room_id)
        _check_event_id(event_id)
        if thread_id is not None:
            if receipt_type == FULLY_READ:
                raise InvalidParam("thread_id is not allowed for m.fully_read")
            if thread_id != MAIN_THREAD:
                _check_event_id(thread_id, "thread_id (the thread root's event ID or 'main')")
        if receipt_type == FULLY_READ:
            await self._set_fully_read(user_id, room_id, event_id)
            return
        await self._put(user_id, room_id, receipt_type, event_id, thread_id, ts)

    async def _put(
        self,
        user_id: str,
        room_id: str,
        receipt_type: str,
        event_id: str,
        thread_id: str | None,
        ts: int | None,
    ) -> None:
        ts = self._clock.time_ms() if ts is None else ts
        result = await self._receipts.put_receipt(
            room_id,
            receipt_type,
            user_id,
            UNTHREADED if thread_id is None else thread_id,
            event_id,
            ts,
        )
        if result.outcome == "not_joined":
            raise Forbidden("You are not in this room")
        if result.outcome == "unknown_event":
            raise NotFound("Event not found in this room")
        if result.position is None:  # not newer than the current receipt: nothing to tell
            return
        if result.event_position is not None:
            for listener in self._read_listeners:
                listener(
                    user_id,
                    room_id,
                    UNTHREADED if thread_id is None else thread_id,
                    result.event_position,
                )
        for receipt_listener in self._receipt_listeners:
            receipt_listener(user_id, room_id, receipt_type, event_id, thread_id, ts)
        if receipt_type == READ_PRIVATE:
            self._notifier.notify(StreamName.RECEIPTS, result.position, user_ids=(user_id,))
        else:
            self._notifier.notify(StreamName.RECEIPTS, result.position, room_ids=(room_id,))

    async def set_read_markers(
        self,
        user_id: str,
        room_id: str,
        fully_read: str | None,
        read: str | None,
        read_private: str | None,
    ) -> None:
        """``POST /read_markers``: any of the fully read marker, ``m.read`` and
        ``m.read.private``, each only moved forward.

        Raises:
            InvalidParam: a malformed room or event ID.
            Forbidden: the user is not joined to the room.
            NotFound: an event is not in the room.
        """
        check_room_id(room_id)
        for event_id in (fully_read, read, read_private):
            if event_id is not None:
                _check_event_id(event_id)
        if not await self._receipts.is_joined(room_id, user_id):
            raise Forbidden("You are not in this room")
        if read is not None:
            await self._put(user_id, room_id, READ, read, None, None)
        if read_private is not None:
            await self._put(user_id, room_id, READ_PRIVATE, read_private, None, None)
        if fully_read is not None:
            await self._set_fully_read(user_id, room_id, fully_read)

    async def _set_fully_read(self, user_id: str, room_id: str, event_id: str) -> None:
        # One writer per (user, room) at a time: read the marker, compare, write.
        async with self._marker_locks.hold((user_id, room_id)):
            if not await self._receipts.is_joined(room_id, user_id):
                raise Forbidden("You are not in this room")
            order = await self._receipts.event_order(event_id)
            if order is None or order.room_id != room_id:
                raise NotFound("Event not found in this room")
            current = await self._account_data.get(user_id, room_id, FULLY_READ)
            current_id = (current or {}).get("event_id")
            if isinstance(current_id, str):
                if current_id == event_id:
                    return
                current_order = await self._receipts.event_order(current_id)
                if current_order is not None and current_order.key >= order.key:
                    return
            position = await self._account_data.put(
                user_id, room_id, FULLY_READ, {"event_id": event_id}
            )
        self._notifier.notify(StreamName.ACCOUNT_DATA, position, user_ids=(user_id,))

    # --- /sync -----------------------------------------------------------------------------------

    async def receipt_events(
        self, user_id: str, room_ids: Collection[str], from_pos: int | None, to_pos: int
    ) -> dict[str, dict[str, Any]]:
        """``m.receipt`` ephemeral events for ``user_id``'s ``/sync``.

        Args:
            room_ids: the rooms to report on.
            from_pos: the RECEIPTS position of the ``since`` token; None for an initial sync
                (every current receipt of those rooms).
            to_pos: the RECEIPTS position of the ``next_batch`` token.

        Returns:
            room ID → ``{"type": "m.receipt", "content": {event_id: {type: {user: {...}}}}}``
            for the rooms with receipts in ``(from_pos, to_pos]``. Other users'
            ``m.read.private`` receipts are never included.
        """
        if from_pos is None:
            rows = await self._receipts.receipts_in_rooms(room_ids, to_pos)
        elif from_pos >= to_pos:
            return {}
        else:
            wanted = room_ids if isinstance(room_ids, set | frozenset) else set(room_ids)
            rows = [
                r
                for r in await self._receipts.receipts_between(from_pos, to_pos)
                if r.room_id in wanted
            ]
        return _render(user_id, rows)


def _render(user_id: str, rows: list[ReceiptRow]) -> dict[str, dict[str, Any]]:
    contents: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    for row in rows:
        if row.receipt_type == READ_PRIVATE and row.user_id != user_id:
            continue
        data: dict[str, Any] = {"ts": row.ts}
        if row.thread_id != UNTHREADED:
            data["thread_id"] = row.thread_id
        content = contents.setdefault(row.room_id, {})
        content.setdefault(row.event_id, {}).setdefault(row.receipt_type, {})[row.user_id] = data
    return {room_id: {"type": "m.receipt", "content": c} for room_id, c in contents.items()}


def parse_thread_id(body: Mapping[str, Any]) -> str | None:
    """The ``thread_id`` of a receipt body (None: unthreaded).

    Raises:
        InvalidParam: present but not a non-empty string.
    """
    if "thread_id" not in body:
        return None
    value = body["thread_id"]
    if not isinstance(value, str) or not value:
        raise InvalidParam("thread_id field must be a non-empty string")
    return value
