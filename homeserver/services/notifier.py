"""Waking tasks that wait for new events.

:class:`Notifier` is what the event-creation path calls after an event commits. The ``/sync``
issue builds the real notifier (stream tokens, per-user room sets); :class:`InProcessNotifier`
is the small in-process implementation used until then and in tests: one ``trio.Event`` per
room and per user, set and discarded when something happens there, so it holds nothing for
keys nobody waits on.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Protocol

import trio

__all__ = ["InProcessNotifier", "Notifier"]


class Notifier(Protocol):
    """Told about every event after it has been persisted."""

    def on_new_event(self, room_id: str, stream_ordering: int, user_ids: Collection[str]) -> None:
        """An event at ``stream_ordering`` was stored in ``room_id``; ``user_ids`` are users it
        concerns beyond the room's members (e.g. the target of an invite)."""
        ...


class InProcessNotifier:
    """Wakes :meth:`wait_for` callers keyed by room ID or user ID."""

    def __init__(self) -> None:
        self._waiters: dict[str, trio.Event] = {}
        #: the newest stream ordering seen
        self.position = 0

    def on_new_event(self, room_id: str, stream_ordering: int, user_ids: Collection[str]) -> None:
        self.position = max(self.position, stream_ordering)
        for key in (room_id, *user_ids):
            waiter = self._waiters.pop(key, None)
            if waiter is not None:
                waiter.set()

    async def wait_for(self, key: str) -> None:
        """Return at the next event in room ``key`` or concerning user ``key``."""
        waiter = self._waiters.get(key)
        if waiter is None:
            waiter = self._waiters[key] = trio.Event()
        await waiter.wait()
