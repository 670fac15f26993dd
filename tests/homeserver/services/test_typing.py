"""The typing service: sets, positions, timeouts on Trio's (mock) clock, /sync reads."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from homeserver.config import TypingConfig
from homeserver.errors import MatrixError
from homeserver.services import typing as typing_module
from homeserver.services.notifier import InProcessNotifier
from homeserver.services.typing import TypingService
from homeserver.streams import StreamName

ALICE, BOB, CAROL = "@alice:t", "@bob:t", "@carol:t"
R1, R2, R3 = "!r1:t", "!r2:t", "!r3:t"


class Members:
    """A fake membership reader: (room, user) pairs that are joined."""

    def __init__(self, *pairs: tuple[str, str]) -> None:
        self.joined = set(pairs)

    async def is_joined(self, room_id: str, user_id: str) -> bool:
        return (room_id, user_id) in self.joined


def make(**cfg: int) -> tuple[TypingService, InProcessNotifier]:
    notifier = InProcessNotifier()
    members = Members(*[(r, u) for r in (R1, R2, R3) for u in (ALICE, BOB)])
    return TypingService(members, notifier, TypingConfig(**cfg)), notifier


def users(events: dict[str, dict[str, Any]], room: str) -> list[str]:
    assert events[room]["type"] == "m.typing"
    found: list[str] = events[room]["content"]["user_ids"]
    return found


async def test_typing_on_off_and_positions() -> None:
    svc, notifier = make()
    assert svc.current_position() == 0
    await svc.set_typing(ALICE, R1, True, 30_000)
    assert svc.current_position() == 1 == notifier.position(StreamName.TYPING)
    # a refresh changes no set: no position, no wake-up
    await svc.set_typing(ALICE, R1, True, 30_000)
    assert svc.current_position() == 1
    await svc.set_typing(BOB, R1, True, 30_000)
    assert svc.typing_users(R1) == [ALICE, BOB]
    events = svc.typing_events([R1, R2], 1)
    assert list(events) == [R1] and users(events, R1) == [ALICE, BOB]
    assert svc.typing_events([R1, R2], 2) == {}
    await svc.set_typing(ALICE, R1, False, 0)
    await svc.set_typing(BOB, R1, False, 0)
    await svc.set_typing(BOB, R1, False, 0)  # not typing: nothing
    assert svc.current_position() == 4
    # the empty set is reported to incremental syncs, not to initial ones
    assert users(svc.typing_events([R1], 2), R1) == []
    assert svc.typing_events([R1], None) == {}


async def test_initial_and_restarted_tokens() -> None:
    svc, _ = make()
    await svc.set_typing(ALICE, R1, True, 30_000)
    await svc.set_typing(BOB, R2, True, 30_000)
    assert set(svc.typing_events({R1, R2, R3}, None)) == {R1, R2}
    # a token from before a restart (above our counter) gets the full picture
    assert set(svc.typing_events([R1, R2, R3], 99)) == {R1, R2}
    # only the user's rooms
    assert set(svc.typing_events([R2], 0)) == {R2}


async def test_old_tokens_beyond_the_log_get_every_room(monkeypatch) -> None:
    monkeypatch.setattr(typing_module, "_LOG_SIZE", 2)
    svc, _ = make()
    for room in (R1, R2, R3):
        await svc.set_typing(ALICE, room, True, 30_000)
    await svc.set_typing(ALICE, R1, False, 0)
    # positions 1..4, log keeps 3..4: since=1 is older than the log
    events = svc.typing_events([R1, R2, R3], 1)
    assert {r: users(events, r) for r in events} == {R1: [], R2: [ALICE], R3: [ALICE]}
    assert set(svc.typing_events([R1, R2, R3], 2)) == {R1, R3}


async def test_not_joined_is_forbidden_and_bad_timeout() -> None:
    svc, _ = make()
    for typing in (True, False):
        with pytest.raises(MatrixError) as e:
            await svc.set_typing(CAROL, R1, typing, 1000)
        assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")
    with pytest.raises(MatrixError) as e:
        await svc.set_typing(ALICE, R1, True, -1)
    assert e.value.errcode == "M_INVALID_PARAM"
    assert svc.current_position() == 0


async def test_timeouts_on_the_mock_clock(autojump_clock: trio.testing.MockClock) -> None:
    svc, _ = make(max_timeout_ms=60_000)
    async with trio.open_nursery() as nursery:
        await nursery.start(svc.run)
        start = trio.current_time()
        await svc.set_typing(ALICE, R1, True, 10_000)
        await svc.set_typing(BOB, R1, True, 500_000)  # cut to 60 s
        await trio.sleep(5)
        await svc.set_typing(ALICE, R1, True, 10_000)  # refreshed: now ends at 15 s
        await trio.sleep(9)
        assert svc.typing_users(R1) == [ALICE, BOB]
        position = svc.current_position()
        await trio.sleep(2)  # t = 16: alice's refreshed timeout passed
        assert svc.typing_users(R1) == [BOB]
        assert users(svc.typing_events([R1], position), R1) == [BOB]
        await trio.sleep(60 - (trio.current_time() - start) - 0.5)
        assert svc.typing_users(R1) == [BOB]
        await trio.sleep(1)
        assert svc.typing_users(R1) == []
        # a new, shorter deadline wakes the sleeping task early
        await svc.set_typing(ALICE, R2, True, 1_000)
        await trio.sleep(1.01)
        assert svc.typing_users(R2) == []
        nursery.cancel_scope.cancel()
