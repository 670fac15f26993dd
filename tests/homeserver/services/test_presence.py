"""The presence service: states, timers, coalesced writes, notifications and privacy."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from homeserver.clock import FakeClock
from homeserver.config import PresenceConfig
from homeserver.errors import MatrixError
from homeserver.services.notifier import InProcessNotifier
from homeserver.services.presence import PRIVACY_TYPE, PresenceService
from homeserver.storage import Database, Stores, open_stores
from homeserver.streams import StreamName
from tests.homeserver._live_env import RoomsEnv, uid

ALICE, BOB, CAROL = uid("alice"), uid("bob"), uid("carol")


class TrioTimeClock:
    """Wall time that follows Trio's clock, so a MockClock drives both sleeps and timestamps."""

    def time_ms(self) -> int:
        return 1_700_000_000_000 + int(trio.current_time() * 1000)

    def monotonic(self) -> float:
        return trio.current_time()


class Env:
    def __init__(self, stores: Stores, clock: Any = None, **cfg: Any) -> None:
        self.stores = stores
        self.clock = clock or FakeClock()
        self.notifier = InProcessNotifier()
        self.rooms = RoomsEnv(stores, self.notifier)
        self.svc = PresenceService(
            stores.presence,
            stores.users,
            self.notifier,
            self.clock,
            PresenceConfig(**cfg),
            server_name="test.local",
        )

    def pos(self) -> int:
        return self.notifier.position(StreamName.PRESENCE)

    async def advance(self, seconds: float) -> None:
        """Move the fake clock in sweep-sized steps, ticking after each."""
        while seconds > 0:
            step = min(seconds, 5.0)
            self.clock.advance(step)
            seconds -= step
            await self.svc.tick()

    async def seen_by(self, viewer: str, since: int | None = None) -> dict[str, Any]:
        events = await self.svc.presence_events(viewer, since, self.pos())
        assert all(e["type"] == "m.presence" for e in events)
        return {e["sender"]: e["content"] for e in events}

    async def privacy(self, user: str, choice: str) -> None:
        await self.stores.account_data.put(user, "", PRIVACY_TYPE, {"last_seen": choice})
        self.svc.on_account_data_changed(user, PRIVACY_TYPE)


@pytest.fixture
async def env(stores: Stores) -> Env:
    for user in (ALICE, BOB, CAROL):
        await stores.users.create_user(user, password_hash=None, created_ts=1)
    return Env(stores)


async def test_sync_publishes_online_to_room_mates(env: Env) -> None:
    room = await env.rooms.room(ALICE, BOB)
    await env.svc.on_sync(ALICE, None)
    assert env.pos() == 0  # coalesced: nothing is written before the flush
    woken = trio.Event()

    async def wait() -> None:
        await env.notifier.wait_for(room)
        woken.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        await env.svc.tick()
    assert woken.is_set() and env.pos() == 1
    assert (await env.seen_by(BOB)) == {
        ALICE: {"presence": "online", "last_active_ago": 0, "currently_active": True}
    }
    env.clock.advance(2)
    assert (await env.seen_by(BOB, 0))[ALICE]["last_active_ago"] == 2000  # computed when read
    assert await env.seen_by(BOB, 1) == {}
    assert await env.seen_by(CAROL) == {}  # shares no room
    assert set(await env.seen_by(ALICE)) == {ALICE}  # one's own presence


async def test_activity_is_coalesced(env: Env) -> None:
    await env.rooms.room(ALICE, BOB)
    await env.svc.on_sync(ALICE, None)
    await env.svc.tick()
    assert env.pos() == 1
    for _ in range(100):
        env.svc.on_activity(ALICE)
        env.clock.advance(0.1)
    await env.svc.tick()
    # still online and currently active: nothing others see changed, no position
    assert env.pos() == 1
    row = await env.stores.presence.get(ALICE)
    assert row is not None and row.last_active_ts == env.clock.time_ms() - 10_000
    # the last-active time alone is written once the write interval has passed
    env.svc.on_activity(ALICE)
    await env.advance(60)
    row = await env.stores.presence.get(ALICE)
    assert row is not None and row.last_active_ts > env.clock.time_ms() - 61_000
    assert row.last_active_ts == env.clock.time_ms() - 60_000


async def test_timers(env: Env) -> None:
    await env.rooms.room(ALICE, BOB)
    await env.svc.on_sync(ALICE, None)
    await env.svc.tick()
    # keep syncing (connected) but do nothing: currently_active ends at 60 s, idle at 300 s
    for _ in range(12):
        await env.advance(25)
        await env.svc.on_sync(ALICE, None)
    seen = (await env.seen_by(BOB))[ALICE]
    assert seen == {"presence": "unavailable", "last_active_ago": 300_000}
    assert env.pos() == 3  # currently_active false, then unavailable
    # activity brings the user back online
    env.svc.on_activity(ALICE)
    await env.svc.tick()
    assert (await env.seen_by(BOB, 3))[ALICE] == {
        "presence": "online",
        "last_active_ago": 0,
        "currently_active": True,
    }
    # no sync and no activity for 90 s: offline; then activity is ignored
    await env.advance(90)
    assert (await env.seen_by(BOB))[ALICE]["presence"] == "offline"
    position = env.pos()
    env.svc.on_activity(ALICE)
    await env.advance(5)
    assert env.pos() == position and (await env.seen_by(BOB))[ALICE]["presence"] == "offline"
    # offline users are dropped from memory; a sync brings them back online
    assert env.svc.tracked_users == 0
    await env.svc.on_sync(ALICE, None)
    await env.svc.tick()
    assert (await env.seen_by(BOB))[ALICE]["presence"] == "online"


async def test_set_presence_and_set_presence_in_sync(env: Env) -> None:
    await env.rooms.room(ALICE, BOB)
    env.svc.on_activity(ALICE)  # the PUT request's own activity
    await env.svc.set_presence(ALICE, "unavailable", "lunch")
    await env.svc.tick()
    assert (await env.seen_by(BOB))[ALICE] == {"presence": "unavailable", "status_msg": "lunch"}
    assert await env.svc.get_presence(BOB, ALICE) == {
        "presence": "unavailable",
        "status_msg": "lunch",
    }
    # syncing with the default does not override an explicit unavailable
    await env.svc.on_sync(ALICE, None)
    await env.svc.on_sync(ALICE, "offline")
    await env.svc.tick()
    assert (await env.svc.get_presence(BOB, ALICE))["presence"] == "unavailable"
    await env.svc.set_presence(ALICE, "online", None)
    await env.svc.on_sync(ALICE, "unavailable")
    await env.svc.tick()
    assert (await env.svc.get_presence(ALICE, ALICE))["presence"] == "unavailable"
    await env.svc.set_presence(ALICE, "offline", None)
    await env.svc.tick()
    assert (await env.svc.get_presence(BOB, ALICE)) == {"presence": "offline", "last_active_ago": 0}
    for bad in ("away", ""):
        with pytest.raises(MatrixError) as e:
            await env.svc.set_presence(ALICE, bad, None)
        assert e.value.errcode == "M_INVALID_PARAM"
    with pytest.raises(MatrixError) as e:
        await env.svc.set_presence(ALICE, "online", "x" * 1025)
    assert e.value.errcode == "M_INVALID_PARAM"
    with pytest.raises(MatrixError) as e:
        await env.svc.on_sync(ALICE, "busy")
    assert e.value.errcode == "M_INVALID_PARAM"


async def test_get_presence_privacy(env: Env) -> None:
    await env.rooms.room(ALICE, BOB)
    await env.svc.set_presence(ALICE, "online", None)
    await env.svc.tick()

    async def status(viewer: str, target: str = ALICE) -> int | str:
        try:
            state: str = (await env.svc.get_presence(viewer, target))["presence"]
            return state
        except MatrixError as e:
            assert e.errcode in ("M_FORBIDDEN", "M_NOT_FOUND", "M_INVALID_PARAM")
            return e.status

    # default: people who share a room
    assert [await status(u) for u in (ALICE, BOB, CAROL)] == ["online", "online", 403]
    await env.privacy(ALICE, "everyone")
    assert [await status(u) for u in (ALICE, BOB, CAROL)] == ["online", "online", "online"]
    await env.privacy(ALICE, "nobody")
    assert [await status(u) for u in (ALICE, BOB, CAROL)] == ["online", 403, 403]
    await env.privacy(ALICE, "contacts")
    assert [await status(u) for u in (ALICE, BOB, CAROL)] == ["online", "online", 403]
    # garbage means the default
    await env.stores.account_data.put(ALICE, "", PRIVACY_TYPE, {"last_seen": 7})
    assert await status(CAROL) == 403
    # unknown, remote, malformed
    assert await status(BOB, uid("nobody")) == 404
    assert await status(BOB, "@x:elsewhere.example") == 404
    assert await status(BOB, "not-a-user") == 400
    # a user who never had presence is offline
    assert await status(ALICE, BOB) == "offline"


async def test_sync_privacy_hides_and_clears(env: Env) -> None:
    await env.rooms.room(ALICE, BOB)
    await env.svc.on_sync(ALICE, None)
    await env.svc.on_sync(BOB, None)
    await env.svc.tick()
    before = env.pos()
    await env.privacy(ALICE, "nobody")
    await env.svc.tick()
    # once: the redacted form, so Bob's client stops showing Alice online
    assert (await env.seen_by(BOB, before)) == {ALICE: {"presence": "offline"}}
    assert set(await env.seen_by(BOB)) == {BOB}  # initial sync: hidden users are left out
    assert (await env.seen_by(ALICE))[ALICE]["presence"] == "online"  # not from herself
    # later changes of a hidden user are not sent at all
    hidden = env.pos()
    await env.svc.set_presence(ALICE, "unavailable", "away")
    await env.svc.tick()
    assert env.pos() > hidden and await env.seen_by(BOB, hidden) == {}
    # visible again: the real presence
    again = env.pos()
    await env.privacy(ALICE, "everyone")
    await env.svc.tick()
    assert (await env.seen_by(BOB, again))[ALICE] == {
        "presence": "unavailable",
        "status_msg": "away",
        "last_active_ago": 0,
    }
    # other account data types do nothing
    position = env.pos()
    env.svc.on_account_data_changed(ALICE, "m.direct")
    await env.svc.tick()
    assert env.pos() == position


async def test_restart_loads_online_users_and_expires_them(env: Env, stores: Stores) -> None:
    await env.rooms.room(ALICE, BOB)
    await env.svc.on_sync(ALICE, None)
    await env.svc.tick()
    restarted = Env(stores, env.clock)
    await restarted.svc.load_online()
    assert restarted.svc.tracked_users == 1
    await restarted.advance(95)  # Alice never came back
    assert (await stores.presence.get(ALICE)).state == "offline"  # type: ignore[union-attr]


async def test_disabled(stores: Stores) -> None:
    for user in (ALICE, BOB):
        await stores.users.create_user(user, password_hash=None, created_ts=1)
    env = Env(stores, enabled=False)
    await env.rooms.room(ALICE, BOB)
    await env.svc.on_sync(ALICE, None)
    await env.svc.set_presence(ALICE, "online", "x")
    env.svc.on_activity(ALICE)
    await env.svc.tick()
    assert env.pos() == 0 and env.svc.tracked_users == 0
    assert await env.svc.get_presence(BOB, ALICE) == {"presence": "offline"}
    assert await env.svc.presence_events(BOB, None, 10) == []


async def test_run_on_the_mock_clock(
    sqlite_db: Database, autojump_clock: trio.testing.MockClock
) -> None:
    # SQLite only: PostgreSQL calls wait on another thread, which an autojump clock sees as
    # "every task blocked" and jumps over; the stores run on both databases in other tests.
    stores = open_stores(sqlite_db)
    for user in (ALICE, BOB):
        await stores.users.create_user(user, password_hash=None, created_ts=1)
    env = Env(stores, TrioTimeClock(), idle_timeout_s=120.0, offline_timeout_s=600.0)
    await env.rooms.room(ALICE, BOB)
    async with trio.open_nursery() as nursery:
        await nursery.start(env.svc.run)
        await env.svc.on_sync(ALICE, None)
        await trio.sleep(1.5)  # one flush interval
        assert (await env.seen_by(BOB))[ALICE]["presence"] == "online"
        await trio.sleep(130)  # idle: the background task's timers make her unavailable
        assert (await env.seen_by(BOB))[ALICE]["presence"] == "unavailable"
        env.svc.on_activity(ALICE)
        await trio.sleep(1.5)
        assert (await env.seen_by(BOB))[ALICE]["presence"] == "online"
        # pending changes are written when the task is cancelled
        await env.svc.set_presence(ALICE, "unavailable", "bye")
        nursery.cancel_scope.cancel()
    row = await stores.presence.get(ALICE)
    assert row is not None and (row.state, row.status_msg) == ("unavailable", "bye")
