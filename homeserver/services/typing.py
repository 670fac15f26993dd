"""Typing notifications: who is typing in which room, in memory.

Spec: client-server-api/modules/typing_notifications.md, ``typing.yaml``.

Typing is the most frequent thing a client tells the server (a request every few seconds per
typing user) and the least durable, so nothing here touches the database except the membership
check: the typing sets live in a dict, positions on the TYPING stream come from an in-memory
counter, and a restart forgets everyone who was typing (clients re-send within seconds).

- Sending a message does not stop a user typing: the spec ends typing at the timeout or on
  ``typing: false`` only, and Synapse does the same (a client that keeps typing after sending
  keeps its state, and a message does not wake every member's ``/sync`` a second time).
- ``set_typing(typing=True)`` sets (or extends) the user's deadline. Only a change of a room's
  *set* of typing users takes a new position and wakes ``/sync``; a client refreshing its
  timeout every few seconds costs a dict write and nothing else.
- :meth:`TypingService.run` (in the app's nursery) sleeps until the earliest deadline, on
  Trio's clock, so tests drive it with ``trio.testing.MockClock``. Deadlines sit in a heap;
  a refreshed deadline leaves a stale entry behind that is skipped when it comes up.
- ``/sync`` asks :meth:`TypingService.typing_events` for the rooms whose set changed after its
  token. A log of the last changes (position, room) answers that in proportion to the changes
  since the token, not to the number of rooms the user is in. A token older than the log, or
  from before a restart (position above ours), gets the full picture for its rooms instead.
"""

from __future__ import annotations

import heapq
import math
from collections import deque
from collections.abc import Callable, Collection
from typing import Any, Protocol

import trio

from homeserver.config import TypingConfig
from homeserver.errors import Forbidden, InvalidParam
from homeserver.services.notifier import Notifier
from homeserver.streams import StreamName

__all__ = ["MembershipReader", "TypingService"]

#: Changes kept for incremental ``/sync``; older tokens get the full picture of their rooms.
_LOG_SIZE = 10_000


class MembershipReader(Protocol):
    """Whether a user is joined to a room (the receipts store implements it)."""

    async def is_joined(self, room_id: str, user_id: str) -> bool: ...


class TypingService:
    """Who is typing where, with timeouts.

    Args:
        membership: the joined check (``M_FORBIDDEN`` for users not in the room).
        notifier: woken with the room on each change of its typing set.
        config: the ``typing`` section.
    """

    def __init__(
        self, membership: MembershipReader, notifier: Notifier, config: TypingConfig
    ) -> None:
        self._membership = membership
        self._notifier = notifier
        self._cfg = config
        # room ID → user ID → deadline (Trio clock seconds)
        self._typing: dict[str, dict[str, float]] = {}
        self._deadlines: list[tuple[float, str, str]] = []
        self._position = 0
        self._log: deque[tuple[int, str]] = deque()
        # changes at or below this position have left the log
        self._horizon = 0
        self._wakeup = trio.Event()
        self._listeners: list[Callable[[str, str, bool], None]] = []

    def add_listener(self, listener: Callable[[str, str, bool], None]) -> None:
        """Call ``listener(room_id, user_id, typing)`` on every start or refresh (True) and
        every stop or timeout (False): federation tells the room's other servers."""
        self._listeners.append(listener)

    # --- reads -----------------------------------------------------------------------------------

    def current_position(self) -> int:
        """The newest TYPING stream position (restarts at 0 with the process)."""
        return self._position

    def typing_users(self, room_id: str) -> list[str]:
        """Who is typing in ``room_id`` now, sorted."""
        return sorted(self._typing.get(room_id, ()))

    def _event(self, room_id: str) -> dict[str, Any]:
        return {"type": "m.typing", "content": {"user_ids": self.typing_users(room_id)}}

    def typing_events(
        self, room_ids: Collection[str], since_pos: int | None
    ) -> dict[str, dict[str, Any]]:
        """``m.typing`` events for the rooms among ``room_ids`` whose typing set changed after
        ``since_pos``.

        Args:
            room_ids: the rooms of the syncing user.
            since_pos: the TYPING position of the ``since`` token; None for an initial sync.
                A position above ours (a token from before a restart) is treated as None.

        Returns:
            room ID → ``{"type": "m.typing", "content": {"user_ids": [...]}}``. For an initial
            sync only rooms where someone is typing; otherwise every changed room, including
            those where the set became empty (clients replace their list).
        """
        if since_pos is None or since_pos > self._position:
            return {r: self._event(r) for r in room_ids if self._typing.get(r)}
        if since_pos < self._horizon:
            return {r: self._event(r) for r in room_ids}
        changed: set[str] = set()
        for position, room_id in reversed(self._log):
            if position <= since_pos:
                break
            changed.add(room_id)
        if not changed:
            return {}
        wanted = room_ids if isinstance(room_ids, set | frozenset) else set(room_ids)
        return {r: self._event(r) for r in sorted(changed) if r in wanted}

    # --- writes ----------------------------------------------------------------------------------

    async def set_typing(self, user_id: str, room_id: str, typing: bool, timeout_ms: int) -> None:
        """Start (or extend) or stop ``user_id`` typing in ``room_id``.

        The caller has checked that the requester is ``user_id``.

        Args:
            timeout_ms: how long the user counts as typing; cut to ``max_timeout_ms``.

        Raises:
            Forbidden: the user is not joined to the room.
            InvalidParam: a negative timeout.
        """
        if typing and timeout_ms < 0:
            raise InvalidParam("timeout must not be negative")
        if not await self._membership.is_joined(room_id, user_id):
            raise Forbidden("You are not in this room")
        if not typing:
            self._remove(room_id, user_id)
            return
        deadline = trio.current_time() + min(timeout_ms, self._cfg.max_timeout_ms) / 1000
        users = self._typing.setdefault(room_id, {})
        was_typing = user_id in users
        users[user_id] = deadline
        heapq.heappush(self._deadlines, (deadline, room_id, user_id))
        self._wakeup.set()
        for listener in self._listeners:
            listener(room_id, user_id, True)
        if not was_typing:
            self._changed(room_id)

    def _remove(self, room_id: str, user_id: str) -> None:
        users = self._typing.get(room_id)
        if users is None or user_id not in users:
            return
        del users[user_id]
        if not users:
            del self._typing[room_id]
        self._changed(room_id)
        for listener in self._listeners:
            listener(room_id, user_id, False)

    def _changed(self, room_id: str) -> None:
        self._position += 1
        self._log.append((self._position, room_id))
        if len(self._log) > _LOG_SIZE:
            self._horizon = self._log.popleft()[0]
        self._notifier.notify(StreamName.TYPING, self._position, room_ids=(room_id,))

    # --- timeouts --------------------------------------------------------------------------------

    def expire(self, now: float) -> None:
        """Stop everyone whose deadline is at or before ``now`` (Trio clock seconds)."""
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, room_id, user_id = heapq.heappop(self._deadlines)
            if self._typing.get(room_id, {}).get(user_id) == deadline:
                self._remove(room_id, user_id)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Expire typing users at their deadlines, forever (run in the app's nursery)."""
        task_status.started()
        while True:
            self.expire(trio.current_time())
            next_deadline = self._deadlines[0][0] if self._deadlines else math.inf
            with trio.move_on_at(next_deadline):
                await self._wakeup.wait()
            self._wakeup = trio.Event()
