"""NotificationCounts with fake sources: what it reads, when, and what it keeps."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio
import trio.testing

from federation.core.events import Event
from federation.core.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.services.notification_counts import MAX_EVALUATED, NotificationCounts
from homeserver.storage.events import StoredEvent

ROOM = "!room:a"
ALICE = "@alice:a"
BOB = "@bob:a"
V11 = KNOWN_ROOM_VERSIONS["11"]


def _event(pos: int, sender: str = BOB, **content: Any) -> StoredEvent:
    pdu = {
        "type": "m.room.message",
        "room_id": ROOM,
        "sender": sender,
        "content": {"msgtype": "m.text", "body": f"message {pos}", **content},
    }
    return StoredEvent(Event(V11, pdu, f"$e{pos}"), pos, pos, False, None, False, None)


class Sources:
    """The room's events by position, the receipts, the state and the rules, with call logs."""

    def __init__(self) -> None:
        self.events: dict[int, StoredEvent] = {}
        self.reads: dict[str, int] = {}
        self.rules: Mapping[str, Any] | None = None
        self.event_reads: list[tuple[int, int, int]] = []
        self.rule_reads = 0
        self.state_reads = 0

    def add(self, *events: StoredEvent) -> None:
        for e in events:
            self.events[e.stream_ordering] = e

    def newest_first(self, after: int, upto: int) -> list[StoredEvent]:
        return [self.events[p] for p in sorted(self.events, reverse=True) if after < p <= upto]

    async def room_events(
        self, room_id: str, from_pos: int, to_pos: int, limit: int
    ) -> tuple[Sequence[StoredEvent], bool]:
        self.event_reads.append((from_pos, to_pos, limit))
        found = self.newest_first(from_pos, to_pos)
        return found[:limit], len(found) <= limit

    async def read_positions(self, user_id: str, room_id: str) -> dict[str, int]:
        return dict(self.reads)

    async def push_state(self, room_id: str, user_id: str) -> tuple[int, dict[str, StoredEvent]]:
        self.state_reads += 1
        return 5, {}

    async def push_rules(self, user_id: str) -> Mapping[str, Any] | None:
        self.rule_reads += 1
        return self.rules

    def counts(self) -> NotificationCounts:
        return NotificationCounts(
            self.room_events, self.read_positions, self.push_state, self.push_rules
        )


async def _total(counts: NotificationCounts, upto: int, **kwargs: Any) -> int:
    result = await counts.counts(ALICE, ROOM, upto, joined_at=kwargs.pop("joined_at", 0), **kwargs)
    return result.total().notification_count


async def test_a_complete_window_is_used_instead_of_reading_again() -> None:
    src = Sources()
    src.add(_event(1), _event(2))
    counts = src.counts()
    assert await _total(counts, 2) == 2  # first look: read from the store
    assert len(src.event_reads) == 1
    src.add(_event(3))
    window = src.newest_first(2, 3)
    assert await _total(counts, 3, window=window, window_from=2, window_complete=True) == 3
    assert len(src.event_reads) == 1  # the sync's own window was enough
    # a window that starts after what was evaluated is not enough: the gap is read
    src.add(_event(4), _event(5))
    window = src.newest_first(4, 5)
    assert await _total(counts, 5, window=window, window_from=4, window_complete=True) == 5
    assert src.event_reads[-1] == (3, 5, MAX_EVALUATED)


async def test_the_users_own_newest_message_in_the_window_spares_older_reads() -> None:
    src = Sources()
    src.add(*(_event(p) for p in range(1, 50)), _event(50, ALICE), _event(51))
    counts = src.counts()
    window = src.newest_first(40, 51)  # a limited timeline: the newest events only
    assert await _total(counts, 51, window=window, window_from=None) == 1
    assert src.event_reads == []  # everything before alice's message is read anyway


async def test_receipts_prune_and_the_first_look_starts_at_the_read_position() -> None:
    src = Sources()
    src.add(*(_event(p) for p in range(1, 11)))
    src.reads = {"": 6}
    counts = src.counts()
    assert await _total(counts, 10) == 4
    assert src.event_reads == [(6, 10, MAX_EVALUATED)]
    counts.on_read(ALICE, ROOM, "", 8)
    assert await _total(counts, 10) == 2
    counts.on_read(ALICE, ROOM, "", 7)  # receipts only move forward
    assert await _total(counts, 10) == 2
    counts.on_read(ALICE, ROOM, "main", 10)  # main timeline: all of these
    assert await _total(counts, 10) == 0


async def test_counts_stop_at_the_cap() -> None:
    src = Sources()
    src.add(*(_event(p) for p in range(1, MAX_EVALUATED + 100)))
    counts = src.counts()
    assert await _total(counts, MAX_EVALUATED + 99) == MAX_EVALUATED


async def test_rules_are_read_once_per_user_until_they_change() -> None:
    src = Sources()
    counts = src.counts()
    for pos in range(1, 4):
        src.add(_event(pos))
        await _total(counts, pos)
    assert src.rule_reads == 1
    assert src.state_reads == 1  # no state event passed: the room context is kept
    src.rules = {"global": {"room": [{"rule_id": ROOM, "actions": [], "enabled": True}]}}
    counts.rules_changed(ALICE)
    src.add(_event(4))
    assert await _total(counts, 4) == 3  # the muted room counts nothing more
    assert src.rule_reads == 2


async def test_nothing_before_the_join_counts() -> None:
    src = Sources()
    src.add(*(_event(p) for p in range(1, 11)))
    counts = src.counts()
    assert await _total(counts, 10, joined_at=7) == 3


async def test_two_syncs_at_once_count_each_event_once() -> None:
    """Two devices' syncs bring the same entry forward at the same time: the second waits for
    the first (before, both evaluated the same events, and one could reset the push context
    while the other awaited the rules: a /sync answered 500)."""
    src = Sources()
    src.add(_event(1), _event(2), _event(3))
    gate = trio.Event()
    plain_rules = src.push_rules

    async def slow_rules(user_id: str) -> Mapping[str, Any] | None:
        await gate.wait()
        return await plain_rules(user_id)

    src.push_rules = slow_rules  # type: ignore[method-assign]
    counts = src.counts()
    results: list[int] = []

    async def one() -> None:
        results.append(await _total(counts, 3))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(one)
        nursery.start_soon(one)
        await trio.testing.wait_all_tasks_blocked()
        gate.set()
    assert results == [3, 3]
    assert src.rule_reads == 1
