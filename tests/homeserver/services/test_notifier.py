"""InProcessNotifier and its listeners: who is woken, and how a long-poll waits."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from homeserver.errors import ClientGone
from homeserver.services.notifier import InProcessNotifier
from homeserver.streams import StreamName


async def test_notify_wakes_only_listeners_under_the_given_keys() -> None:
    notifier = InProcessNotifier()
    in_room = notifier.listen(["!room:a", "@alice:a"])
    other = notifier.listen(["!other:a", "@bob:a"])
    notifier.notify(StreamName.EVENTS, 5, room_ids=["!room:a"])
    assert in_room.woken and not other.woken
    assert notifier.position(StreamName.EVENTS) == 5
    notifier.unlisten(in_room)
    notifier.unlisten(other)
    assert notifier.listener_count == 0


async def test_wait_returns_true_when_woken(autojump_clock: trio.testing.MockClock) -> None:
    notifier = InProcessNotifier()
    listener = notifier.listen(["@alice:a"])
    results: list[bool] = []

    async def waiter() -> None:
        results.append(await listener.wait(trio.current_time() + 30))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(waiter)
        await trio.sleep(1)
        notifier.notify(StreamName.EVENTS, 1, user_ids=["@alice:a"])
    assert results == [True]
    assert trio.current_time() < 2  # woken at once, not at the deadline


async def test_wait_returns_false_at_the_deadline(autojump_clock: trio.testing.MockClock) -> None:
    listener = InProcessNotifier().listen(["@alice:a"])
    start = trio.current_time()
    assert await listener.wait(start + 30) is False
    assert trio.current_time() - start == pytest.approx(30)


async def test_a_listener_woken_before_waiting_does_not_wait() -> None:
    notifier = InProcessNotifier()
    listener = notifier.listen(["!room:a"])
    notifier.on_new_event("!room:a", 3, ())
    with trio.fail_after(1):
        assert await listener.wait() is True


async def test_the_wait_beside_runs_in_the_same_task_and_can_end_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The HTTP layer's disconnect watch: it raises, and the waiting long-poll ends with it."""
    listener = InProcessNotifier().listen(["@alice:a"])
    gone = trio.Event()

    async def until_disconnect() -> None:
        await gone.wait()
        raise ClientGone()

    async def disconnect_later() -> None:
        await trio.sleep(5)
        gone.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(disconnect_later)
        with pytest.raises(ClientGone):
            await listener.wait(trio.current_time() + 30, until_disconnect)
    assert trio.current_time() == pytest.approx(5)


async def test_a_beside_that_returns_leaves_the_wait_running(
    autojump_clock: trio.testing.MockClock,
) -> None:
    notifier = InProcessNotifier()
    listener = notifier.listen(["@alice:a"])

    async def returns_at_once() -> None:
        return None

    async def wake_later() -> None:
        await trio.sleep(7)
        notifier.notify(StreamName.TYPING, 1, user_ids=["@alice:a"])

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wake_later)
        assert await listener.wait(trio.current_time() + 30, returns_at_once) is True
    assert trio.current_time() == pytest.approx(7)
