"""Waking ``/sync`` long-polls when something they care about happens.

Every write that ``/sync`` must report takes a position on one of the streams
(:class:`~homeserver.streams.StreamName`) in its transaction and, after the commit, calls
:meth:`Notifier.notify` with that position and the rooms and users it concerns. A waiting
``/sync`` registers a :class:`Listener` keyed by its user ID and the rooms it is in; ``notify``
wakes exactly the listeners keyed by one of the given rooms or users, so an idle long-poll costs
no CPU and a write costs in proportion to the listeners it concerns, not to all of them.

The notifier also keeps the newest position of every stream (:meth:`Notifier.current_token`),
which is what ``/sync`` hands out as ``next_batch``: a position is only reported after its
transaction has committed, so nothing below it can still appear.

Multi-process deployments would feed :meth:`Notifier.notify` from PostgreSQL ``LISTEN/NOTIFY``;
the interface takes plain values so that is a transport change, not a redesign.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Protocol

import trio

from homeserver.streams import StreamName, StreamToken

__all__ = ["InProcessNotifier", "Listener", "Notifier"]


class Notifier(Protocol):
    """Told about every committed write that ``/sync`` reports."""

    def on_new_event(self, room_id: str, stream_ordering: int, user_ids: Collection[str]) -> None:
        """An event at ``stream_ordering`` was stored in ``room_id``; ``user_ids`` are users it
        concerns beyond the room's members (e.g. the target of an invite)."""
        ...

    def notify(
        self,
        stream: StreamName,
        position: int,
        *,
        room_ids: Collection[str] = (),
        user_ids: Collection[str] = (),
    ) -> None:
        """``stream`` reached ``position`` with a change for the members of ``room_ids`` and
        for ``user_ids``."""
        ...


class Listener:
    """One waiting ``/sync``: woken when a key it is registered under is notified.

    An idle long-poll is one of these plus the cancel scope of its :meth:`wait` (no event, no
    second task): :meth:`wake` cancels that scope.
    """

    __slots__ = ("_scope", "_woken", "keys")

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = keys
        self._woken = False
        self._scope: trio.CancelScope | None = None

    def wake(self) -> None:
        self._woken = True
        if self._scope is not None:
            self._scope.cancel()

    @property
    def woken(self) -> bool:
        return self._woken

    async def wait(
        self, deadline: float = math.inf, beside: Callable[[], Awaitable[None]] | None = None
    ) -> bool:
        """Wait until woken (True; at once if already woken) or until ``deadline`` (False).

        ``beside`` is awaited meanwhile in this same task: the HTTP layer's wait for the client
        to disconnect, which raises to end the long-poll. If it returns, the wait goes on
        without it.
        """
        if self._woken:
            return True
        with trio.CancelScope(deadline=deadline) as scope:
            self._scope = scope
            try:
                if beside is not None:
                    await beside()
                await trio.sleep_forever()
            finally:
                self._scope = None
        return self._woken


class InProcessNotifier:
    """The notifier of a single-process server.

    Keys are room IDs and user IDs (they cannot collide: ``!``/``@`` sigils). Listeners are kept
    in a dict of sets per key and removed when their waiter leaves, so nothing is held for keys
    nobody waits on.
    """

    def __init__(self, positions: dict[StreamName, int] | None = None) -> None:
        self._listeners: dict[str, set[Listener]] = {}
        self._positions: dict[StreamName, int] = dict(positions or {})

    # --- positions

    def current_token(self) -> StreamToken:
        """The newest committed position of every stream."""
        return StreamToken({name: self._positions.get(name, 0) for name in StreamName})

    def position(self, stream: StreamName) -> int:
        return self._positions.get(stream, 0)

    def advance(self, stream: StreamName, position: int) -> None:
        """Record ``position`` as committed without waking anyone (start-up, ephemeral resets)."""
        if position > self._positions.get(stream, 0):
            self._positions[stream] = position

    # --- Notifier

    def on_new_event(self, room_id: str, stream_ordering: int, user_ids: Collection[str]) -> None:
        self.notify(StreamName.EVENTS, stream_ordering, room_ids=(room_id,), user_ids=user_ids)

    def notify(
        self,
        stream: StreamName,
        position: int,
        *,
        room_ids: Collection[str] = (),
        user_ids: Collection[str] = (),
    ) -> None:
        self.advance(stream, position)
        for key in (*room_ids, *user_ids):
            listeners = self._listeners.pop(key, None)
            if listeners:
                for listener in listeners:
                    listener.wake()

    # --- waiting

    def listen(self, keys: Iterable[str]) -> Listener:
        """Register a listener under ``keys``; pair with :meth:`unlisten` (use :meth:`wait_for`)."""
        listener = Listener(frozenset(keys))
        for key in listener.keys:
            self._listeners.setdefault(key, set()).add(listener)
        return listener

    def unlisten(self, listener: Listener) -> None:
        for key in listener.keys:
            listeners = self._listeners.get(key)
            if listeners is not None:
                listeners.discard(listener)
                if not listeners:
                    del self._listeners[key]

    async def wait_for(self, key: str) -> None:
        """Return at the next notification concerning room or user ``key``."""
        await self.wait_any((key,))

    async def wait_any(self, keys: Iterable[str]) -> None:
        """Return at the next notification concerning any of ``keys``."""
        listener = self.listen(keys)
        try:
            await listener.wait()
        finally:
            self.unlisten(listener)

    @property
    def listener_count(self) -> int:
        """Registered (key, listener) pairs, for metrics and tests."""
        return sum(len(v) for v in self._listeners.values())
