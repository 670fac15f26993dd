"""Unread notification counts for ``/sync``: ``unread_notifications`` and
``unread_thread_notifications`` of each joined room.

Spec: client-server-api/modules/push.md › Receiving notifications: "Servers MUST include the
number of unread notifications in a client's ``/sync`` stream, and MUST update it as it changes.
Notifications are determined by the push rules which apply to an event." › Marking
notifications as read: "When the user updates their read receipt (either by using the API or by
sending an event), notifications prior to and including that event MUST be marked as read";
``m.read`` and ``m.read.private`` both count, the one further ahead wins; with threaded receipts
"the server is to partition the notification count to each thread (with the main timeline being
its own thread)". And: "The updated notification count from a new event MUST appear in the same
``/sync`` response as the event itself."

How: the counts are worked out when a user's ``/sync`` looks at a room, not when an event is
sent, so a message costs nothing extra per member on the send path (``bench/README.md``, rooms).
For each (user, room) the service keeps, in memory, how far it has evaluated the room's events
and the user's unread notifying events after their read positions (position, thread,
highlight). A sync evaluates only the events after that point (usually the one or two events
the sync is delivering anyway, read from the shared window the sync already holds), drops what
the user's receipts or own events have covered since, and counts what is left.

A user's own event is an implicit read receipt (unthreaded) up to it. An event's thread is the
``m.thread`` relation's root, or for a relation to an event of a known thread (an edit or a
reaction in a thread), that thread: one hop, where the spec allows up to three.

Bounds: the first look at a room (after a restart, or the user's first sync) evaluates at most
the newest :data:`MAX_EVALUATED` events after the user's read position, and a (user, room)
keeps at most that many unread notifications: counts stop there ("99+" is what clients show).
Entries are dropped in bulk past :data:`MAX_ENTRIES` (they are rebuilt on the next look).
Encrypted events are counted by the rules for ``m.room.encrypted``; clients refine those after
decrypting, as the spec says.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from federation.core.power_levels import get_creators
from homeserver.services.push_evaluator import PushContext, PushEvaluator
from homeserver.services.push_ruleset import PushRuleset
from homeserver.storage.events import StoredEvent

__all__ = ["MAX_EVALUATED", "NotificationCounts", "RoomCounts"]

#: The most events evaluated at a first look, and the most unread notifications kept.
MAX_EVALUATED = 500
#: (user, room) entries kept before the cache starts over.
MAX_ENTRIES = 100_000
#: users whose compiled rules are kept before that cache starts over.
MAX_RULESETS = 20_000

MAIN = "main"
UNTHREADED = ""

JsonDict = dict[str, Any]


class EventSource(Protocol):
    """The newest ``limit`` events of a room in (from_pos, to_pos], newest first, and whether
    that is all of them."""

    async def __call__(
        self, room_id: str, from_pos: int, to_pos: int, limit: int
    ) -> tuple[Sequence[StoredEvent], bool]: ...


@dataclass(frozen=True, slots=True)
class Count:
    notification_count: int = 0
    highlight_count: int = 0

    def to_json(self) -> JsonDict:
        return {
            "notification_count": self.notification_count,
            "highlight_count": self.highlight_count,
        }


@dataclass(frozen=True, slots=True)
class RoomCounts:
    """The unread counts of one room: per thread ID (``"main"`` for the main timeline)."""

    by_thread: Mapping[str, Count]

    def total(self) -> Count:
        return Count(
            sum(c.notification_count for c in self.by_thread.values()),
            sum(c.highlight_count for c in self.by_thread.values()),
        )

    def sync_fields(self, threaded: bool) -> JsonDict:
        """The fields of a joined room's ``/sync`` entry (``unread_thread_notifications``
        only when the filter asked, and only threads with notifications)."""
        if not threaded:
            return {"unread_notifications": self.total().to_json()}
        out: JsonDict = {
            "unread_notifications": self.by_thread.get(MAIN, Count()).to_json(),
        }
        threads = {
            t: c.to_json() for t, c in self.by_thread.items() if t != MAIN and c.notification_count
        }
        if threads:
            out["unread_thread_notifications"] = threads
        return out


@dataclass(slots=True)
class _Entry:
    #: events up to this stream position have been evaluated
    upto: int
    #: read positions per thread ID ("" unthreaded)
    read: dict[str, int]
    #: unread notifying events: (stream position, thread, highlight), oldest first
    pending: list[tuple[int, str, bool]] = field(default_factory=list)
    #: thread of recent events that are in a thread (for relations to them)
    threads: dict[str, str] = field(default_factory=dict)
    context: PushContext | None = None
    #: held while the entry is brought forward: two syncs of one user (two devices) must not
    #: evaluate the same events twice, nor reset ``context`` under each other
    lock: trio.Lock = field(default_factory=trio.Lock)


class NotificationCounts:
    """Unread notification counts, kept per (user, room) in memory (see the module docstring).

    Args:
        events: reads a room's events in a stream range.
        read_positions: the user's read positions in a room per thread (from the receipts).
        push_state: the room's joined member count and, by type, the user's member event, the
            power levels and the create event (current state).
        push_rules: the user's stored ``m.push_rules`` content (None: never changed).
    """

    def __init__(
        self,
        events: EventSource,
        read_positions: Callable[[str, str], Awaitable[dict[str, int]]],
        push_state: Callable[[str, str], Awaitable[tuple[int, Mapping[str, StoredEvent]]]],
        push_rules: Callable[[str], Awaitable[Mapping[str, Any] | None]],
    ) -> None:
        self._events = events
        self._read_positions = read_positions
        self._push_state = push_state
        self._push_rules = push_rules
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._evaluators: dict[str, PushEvaluator] = {}

    # --- inputs ----------------------------------------------------------------------------------

    def on_read(self, user_id: str, room_id: str, thread_id: str, position: int) -> None:
        """A receipt of the user's moved to the event at ``position`` (``thread_id``: ""
        unthreaded, ``"main"`` or a root)."""
        entry = self._entries.get((user_id, room_id))
        if entry is not None and position > entry.read.get(thread_id, -1):
            entry.read[thread_id] = position
            _prune(entry)

    def rules_changed(self, user_id: str) -> None:
        """The user's push rules changed: counts from here on use the new ones."""
        self._evaluators.pop(user_id, None)

    # --- output ----------------------------------------------------------------------------------

    async def counts(
        self,
        user_id: str,
        room_id: str,
        upto: int,
        *,
        joined_at: int,
        window: Sequence[StoredEvent] = (),
        window_from: int | None = None,
        window_complete: bool = False,
    ) -> RoomCounts:
        """The user's unread counts in the room with events up to ``upto``.

        Args:
            joined_at: the user's join position (nothing before it is unread).
            window: the room's newest events in (window_from, upto] that the caller already
                read, newest first (used instead of reading them again).
            window_from: the lower end of ``window``'s range (None: the room's start).
            window_complete: ``window`` holds every event of its range.
        """
        key = (user_id, room_id)
        entry = self._entries.get(key)
        if entry is None:
            read = await self._read_positions(user_id, room_id)
            start = max(joined_at, min(read.values(), default=-1))
            entry = _Entry(upto=start, read=read)
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = entry
        if upto > entry.upto:
            async with entry.lock:
                if upto > entry.upto:
                    await self._bring_forward(
                        user_id, room_id, entry, upto, window, window_from, window_complete
                    )
        return _count(entry)

    async def _bring_forward(
        self,
        user_id: str,
        room_id: str,
        entry: _Entry,
        upto: int,
        window: Sequence[StoredEvent],
        window_from: int | None,
        window_complete: bool,
    ) -> None:
        """Evaluate the room's events in (entry.upto, upto]; the caller holds the entry's lock."""
        after = entry.upto
        for stored in window:  # newest first: the user's own newest event reads the rest
            if stored.stream_ordering <= after:
                break
            if stored.event.sender == user_id:
                self._sent(entry, stored.stream_ordering)
                if not _in_window(window, after, window_from, window_complete):
                    entry.context = None  # state events may hide in what is skipped
                after = stored.stream_ordering
                break
        if _in_window(window, after, window_from, window_complete):
            new = [e for e in window if e.stream_ordering > after]
        else:
            got, _complete = await self._events(room_id, after, upto, MAX_EVALUATED)
            new = list(got)
        new.reverse()
        await self._evaluate(user_id, room_id, entry, new)
        entry.upto = upto

    # --- internals -------------------------------------------------------------------------------

    @staticmethod
    def _sent(entry: _Entry, position: int) -> None:
        """The user sent the event at ``position``: everything up to it is read (spec: "by
        sending an event"), in every thread."""
        if position > entry.read.get(UNTHREADED, -1):
            entry.read[UNTHREADED] = position
            _prune(entry)

    async def _evaluate(
        self, user_id: str, room_id: str, entry: _Entry, new: Sequence[StoredEvent]
    ) -> None:
        evaluator: PushEvaluator | None = None
        for stored in new:
            event = stored.event
            pdu = event.pdu
            thread = _thread_of(pdu, entry.threads)
            if thread != MAIN:
                entry.threads[event.event_id] = thread
                if len(entry.threads) > MAX_EVALUATED:
                    entry.threads.pop(next(iter(entry.threads)))
            if event.sender == user_id:
                self._sent(entry, stored.stream_ordering)
                if event.state_key is not None:
                    entry.context = None
                continue
            if stored.stream_ordering <= _read_upto(entry.read, thread):
                if event.state_key is not None:
                    entry.context = None
                continue
            context = entry.context
            if context is None:
                context = entry.context = await self._context(user_id, room_id)
            if evaluator is None:
                evaluator = await self._evaluator(user_id)
            outcome = evaluator.evaluate(pdu, context)
            if event.state_key is not None:
                entry.context = None  # members, names or power levels may have changed
            if outcome.notify:
                entry.pending.append((stored.stream_ordering, thread, outcome.highlight))
                if len(entry.pending) > MAX_EVALUATED:
                    del entry.pending[0]

    async def _context(self, user_id: str, room_id: str) -> PushContext:
        joined, state = await self._push_state(room_id, user_id)
        name = None
        if (member := state.get("m.room.member")) is not None:
            value = member.event.content.get("displayname")
            name = value if isinstance(value, str) and value else None
        power = state.get("m.room.power_levels")
        create = state.get("m.room.create")
        version = None if create is None else create.event.room_version
        return PushContext(
            user_id=user_id,
            display_name=name,
            member_count=joined,
            power_levels=None if power is None else power.event.content,
            creators=(
                frozenset()
                if create is None or version is None
                else get_creators(version, create.event)
            ),
            privileged_creators=version is not None and version.privileged_creators,
        )

    async def _evaluator(self, user_id: str) -> PushEvaluator:
        evaluator = self._evaluators.get(user_id)
        if evaluator is None:
            content = await self._push_rules(user_id)
            evaluator = PushEvaluator(PushRuleset.from_content(user_id, content))
            if len(self._evaluators) >= MAX_RULESETS:
                self._evaluators.clear()
            self._evaluators[user_id] = evaluator
        return evaluator


def _in_window(
    window: Sequence[StoredEvent], after: int, window_from: int | None, complete: bool
) -> bool:
    """The window (newest first) holds every event of the room after ``after``: it was read
    completely from at or before ``after``, or it reaches back to ``after`` or beyond."""
    if complete and (window_from is None or window_from <= after):
        return True
    return bool(window) and window[-1].stream_ordering <= after


def _thread_of(pdu: Mapping[str, Any], known: Mapping[str, str]) -> str:
    content = pdu.get("content")
    relation = content.get("m.relates_to") if isinstance(content, Mapping) else None
    if not isinstance(relation, Mapping):
        return MAIN
    target = relation.get("event_id")
    if not isinstance(target, str):
        return MAIN
    if relation.get("rel_type") == "m.thread":
        return target
    return known.get(target, MAIN)


def _read_upto(read: Mapping[str, int], thread: str) -> int:
    return max(read.get(UNTHREADED, -1), read.get(thread, -1))


def _prune(entry: _Entry) -> None:
    read = entry.read
    entry.pending = [p for p in entry.pending if p[0] > _read_upto(read, p[1])]


def _count(entry: _Entry) -> RoomCounts:
    notifications: dict[str, int] = {}
    highlights: dict[str, int] = {}
    for _pos, thread, highlight in entry.pending:
        notifications[thread] = notifications.get(thread, 0) + 1
        if highlight:
            highlights[thread] = highlights.get(thread, 0) + 1
    return RoomCounts({t: Count(n, highlights.get(t, 0)) for t, n in notifications.items()})
