"""Profile changes into rooms: a new ``m.room.member`` event per joined room.

Spec: client-server-api › Profiles › "Events on Change of Profile Information": when a user
changes their display name or avatar, the server sends an updated ``m.room.member`` event
into every room they have joined (Synapse does this too).

:class:`ProfilePropagator` is a :class:`~homeserver.services.profile.ProfileListener`. While
:meth:`ProfilePropagator.run` runs (in the app's background nursery) a change is queued and the
profile ``PUT`` returns at once; one worker applies changes in order, so the last change wins in
every room. Without the worker (e.g. a tool that never starts it) the change is applied inline.
Either way a failure is logged, never raised into the profile ``PUT``.
"""

from __future__ import annotations

import logging
from typing import Any, Protocol

import trio

from homeserver.services.profile import AVATAR_URL, DISPLAYNAME

__all__ = ["MemberProfileUpdater", "ProfilePropagator"]

logger = logging.getLogger(__name__)

#: Changes waiting for the worker before new ones are applied inline instead.
QUEUE_SIZE = 1000


class MemberProfileUpdater(Protocol):
    """What the propagator drives (:class:`~homeserver.services.rooms.RoomService`)."""

    async def update_member_profile(self, user_id: str, field: str, value: Any | None) -> int:
        """Update ``field`` in the user's member event of every joined room; return the count."""
        ...


class ProfilePropagator:
    """Turns display name and avatar changes into member events.

    Args:
        rooms: sends the member events.
    """

    def __init__(self, rooms: MemberProfileUpdater) -> None:
        self._rooms = rooms
        self._send, self._receive = trio.open_memory_channel[tuple[str, str, Any | None]](
            QUEUE_SIZE
        )
        self._running = False
        self._pending = 0
        self._idle = trio.Event()
        self._idle.set()

    async def wait_idle(self) -> None:
        """Return once every queued change has been applied (for tests and shutdown)."""
        await self._idle.wait()

    async def profile_changed(self, user_id: str, field: str, value: Any | None) -> None:
        """``ProfileListener``: queue (or apply) a change of ``displayname``/``avatar_url``."""
        if field not in (DISPLAYNAME, AVATAR_URL):
            return
        if self._running:
            try:
                self._send.send_nowait((user_id, field, value))
            except trio.WouldBlock:
                logger.warning("profile propagation queue full; updating %s inline", user_id)
            else:
                self._pending += 1
                self._idle = trio.Event() if self._idle.is_set() else self._idle
                return
        await self._apply(user_id, field, value)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Apply queued changes until cancelled."""
        self._running = True
        try:
            task_status.started()
            async for user_id, field, value in self._receive:
                await self._apply(user_id, field, value)
                self._pending -= 1
                if self._pending == 0:
                    self._idle.set()
        finally:
            self._running = False

    async def _apply(self, user_id: str, field: str, value: Any | None) -> None:
        try:
            count = await self._rooms.update_member_profile(user_id, field, value)
        except Exception:
            logger.exception("propagating the %s of %s into rooms failed", field, user_id)
            return
        logger.debug("propagated the %s of %s into %d rooms", field, user_id, count)
