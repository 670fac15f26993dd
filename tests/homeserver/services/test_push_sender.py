"""The push sender's per-pusher queue under Trio's autojump clock: exponential back-off,
giving up, rejected pushkeys, and a clean stop on cancel (an in-memory store fake)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import trio
import trio.testing

from federation.core.events import Event
from federation.core.room_versions import get_room_version
from homeserver.services.push_sender import PushGatewayError, PushSender, PushSettings
from homeserver.storage.events import StoredEvent
from homeserver.storage.pushers import NotificationRow, PusherRow, RoomPushState

ALICE = "@alice:hs"
ROOM = "!room:hs"
URL = "https://push.example.org/_matrix/push/v1/notify"


class TrioClock:
    """Wall time that follows Trio's (autojump) clock."""

    def time_ms(self) -> int:
        return int(trio.current_time() * 1000)

    def monotonic(self) -> float:
        return trio.current_time()


def _event(position: int) -> StoredEvent:
    pdu = {
        "type": "m.room.message",
        "room_id": ROOM,
        "sender": "@bob:hs",
        "content": {"msgtype": "m.text", "body": f"message {position}"},
        "origin_server_ts": 1,
        "depth": position,
        "prev_events": [],
        "auth_events": [],
    }
    return StoredEvent(
        Event(get_room_version("10"), pdu, f"$e{position}"),
        position,
        position,
        False,
        None,
        False,
        None,
    )


class FakeStore:
    """The parts of ``PusherStore`` the sender uses, in memory."""

    def __init__(self, pushers: Sequence[PusherRow], notified: Sequence[int]) -> None:
        self.pushers = {p.key: p for p in pushers}
        self.notifications = [
            NotificationRow(ALICE, ROOM, f"$e{n}", n, ["notify"], False, 0) for n in notified
        ]
        self.events = {f"$e{n}": _event(n) for n in notified}

    async def start_position(self) -> int:
        return 1000

    async def all_pushers(self) -> list[PusherRow]:
        return list(self.pushers.values())

    async def get_pusher(self, user_id: str, app_id: str, pushkey: str) -> PusherRow | None:
        return self.pushers.get((user_id, app_id, pushkey))

    async def notifications_after(
        self, user_id: str, after: int, limit: int
    ) -> list[tuple[NotificationRow, StoredEvent | None]]:
        rows = [n for n in self.notifications if n.user_id == user_id and n.stream_ordering > after]
        return [(n, self.events.get(n.event_id)) for n in rows[:limit]]

    async def advance_pusher(
        self,
        user_id: str,
        app_id: str,
        pushkey: str,
        position: int,
        *,
        failing_since: int | None = None,
    ) -> None:
        key = (user_id, app_id, pushkey)
        p = self.pushers[key]
        self.pushers[key] = _replace(p, last_stream_ordering=position, failing_since=failing_since)

    async def set_failing_since(
        self, user_id: str, app_id: str, pushkey: str, failing_since: int | None
    ) -> None:
        key = (user_id, app_id, pushkey)
        self.pushers[key] = _replace(self.pushers[key], failing_since=failing_since)

    async def delete_pusher(self, user_id: str, app_id: str, pushkey: str) -> bool:
        return self.pushers.pop((user_id, app_id, pushkey), None) is not None

    async def events_after(self, position: int, upto: int, limit: int) -> list[StoredEvent]:
        return []

    async def record(self, notifications: Sequence[NotificationRow], position: int) -> None:
        pass

    async def prune(self, before_ts: int) -> int:
        return 0

    async def notified_rooms(self, user_id: str) -> list[str]:
        return [ROOM]

    async def count_after(self, user_id: str, read_upto: Mapping[str, int]) -> dict[str, int]:
        return {ROOM: sum(n.stream_ordering > read_upto[ROOM] for n in self.notifications)}

    async def room_push_state(self, room_id: str, server_name: str) -> RoomPushState:
        return RoomPushState(room_id, 2)

    async def display_name(self, room_id: str, user_id: str) -> str | None:
        return None


def _replace(p: PusherRow, **changes: Any) -> PusherRow:
    import dataclasses

    return dataclasses.replace(p, **changes)


def _pusher(pushkey: str = "key") -> PusherRow:
    return PusherRow(
        user_id=ALICE,
        app_id="app",
        pushkey=pushkey,
        device_id="D",
        kind="http",
        app_display_name="App",
        device_display_name="Phone",
        profile_tag=None,
        lang="en",
        data={"url": URL},
        enabled=True,
        created_ts=0,
        last_stream_ordering=0,
    )


class FakeGateway:
    def __init__(self, failures: int = 0, reject: frozenset[str] = frozenset()) -> None:
        self.failures = failures
        self.reject = reject
        self.attempts: list[tuple[float, str]] = []
        self.delivered: list[str] = []

    async def notify(self, url: str, body: Mapping[str, Any]) -> list[str]:
        n = body["notification"]
        self.attempts.append((trio.current_time(), n.get("event_id", "")))
        if self.failures:
            self.failures -= 1
            raise PushGatewayError("down")
        self.delivered.append(n.get("event_id", ""))
        return [d["pushkey"] for d in n["devices"] if d["pushkey"] in self.reject]


def _sender(store: FakeStore, gateway: FakeGateway, **settings: float) -> PushSender:
    async def no_rules(user_id: str) -> None:
        return None

    async def read_upto(user_id: str, room_id: str) -> int:
        return -1

    return PushSender(
        store,  # type: ignore[arg-type]
        gateway,
        TrioClock(),
        server_name="hs",
        newest_position=lambda: 1000,
        push_rules=no_rules,
        read_upto=read_upto,
        settings=PushSettings(**settings),
    )


async def test_backoff_doubles_up_to_the_cap(autojump_clock: trio.testing.MockClock) -> None:
    store = FakeStore([_pusher()], [5, 6])
    gateway = FakeGateway(failures=5)
    sender = _sender(store, gateway, retry_initial_s=1.0, retry_max_s=4.0, give_up_after_s=3600)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(sender.run)
        with trio.fail_after(60):
            while len(gateway.delivered) < 2:
                await trio.testing.wait_all_tasks_blocked()
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()  # the sender stops cleanly on cancel
    times = [round(t - start, 1) for t, _ in gateway.attempts]
    # 5 failures of $e5 then success: waits 1, 2, 4, 4, 4 (capped); then $e6 at once
    assert times == [0.0, 1.0, 3.0, 7.0, 11.0, 15.0, 15.0]
    assert gateway.delivered == ["$e5", "$e6"]
    p = store.pushers[(ALICE, "app", "key")]
    assert p.last_stream_ordering == 6
    assert p.failing_since is None  # cleared by the success


async def test_gives_up_on_a_notification_after_the_limit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = FakeStore([_pusher()], [5, 6])
    gateway = FakeGateway(failures=4)
    sender = _sender(store, gateway, retry_initial_s=1.0, retry_max_s=8.0, give_up_after_s=5.0)
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        with trio.fail_after(60):
            while not gateway.delivered:
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    # $e5 tried at 0, 1, 3, 7: failing 7 s > 5 s, skipped; $e6 delivered
    assert [e for _, e in gateway.attempts] == ["$e5"] * 4 + ["$e6"]
    assert gateway.delivered == ["$e6"]


async def test_rejected_pushkey_deletes_the_pusher(autojump_clock: trio.testing.MockClock) -> None:
    store = FakeStore([_pusher("bad")], [5, 6])
    gateway = FakeGateway(reject=frozenset({"bad"}))
    sender = _sender(store, gateway)
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        with trio.fail_after(60):
            while store.pushers:
                await trio.sleep(0.5)
        await trio.sleep(5)
        nursery.cancel_scope.cancel()
    assert gateway.delivered == ["$e5"]  # nothing after the rejection
    assert store.pushers == {}


class FlakyStore(FakeStore):
    """Fails the first read of the pusher, as an unavailable database would."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.broken = True

    async def get_pusher(self, user_id: str, app_id: str, pushkey: str) -> PusherRow | None:
        if self.broken:
            self.broken = False
            raise RuntimeError("database unavailable")
        return await super().get_pusher(user_id, app_id, pushkey)


async def test_a_worker_that_fails_is_restarted(autojump_clock: trio.testing.MockClock) -> None:
    store = FlakyStore([_pusher()], [5])
    gateway = FakeGateway()
    sender = _sender(store, gateway, retry_initial_s=1.0, retry_max_s=100.0)
    async with trio.open_nursery() as nursery:
        start = trio.current_time()
        await nursery.start(sender.run)
        with trio.fail_after(60):
            while not gateway.delivered:
                await trio.sleep(0.5)
        nursery.cancel_scope.cancel()
    assert gateway.delivered == ["$e5"]
    assert round(gateway.attempts[0][0] - start) == 10  # retry_max_s / 10 later
