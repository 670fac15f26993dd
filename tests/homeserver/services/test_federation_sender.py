"""The federation sender with a fake transaction client, on SQLite and PostgreSQL: new local
events are on the wire at once, one transaction in flight per destination (≤ 50 PDUs, ≤ 100
EDUs), queued PDUs survive a restart, back-off grows, is capped, and ends when the server
contacts us, catch-up keeps the newest event per room."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
import trio
import trio.testing
from sqlalchemy import insert

from federation.client.api import TransactionResult
from federation.client.errors import DestinationBlocked, DestinationUnreachable
from federation.core.hashing import compute_event_id
from federation.core.room_versions import get_room_version
from federation.core.signing import SigningKey
from homeserver.services.events import EventCreationService
from homeserver.services.federation_sender import FederationSender
from homeserver.services.notifier import InProcessNotifier
from homeserver.services.requester import Requester
from homeserver.services.rooms import CreateRoomRequest, RoomService
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage import Conn, Database, Stores
from homeserver.storage.federation_queue import FederationQueueStore
from homeserver.storage.schema import current_state

SERVER = "hs.test"
V10 = get_room_version("10")
ALICE = Requester("@alice:hs.test", "ADEV")


class TrioWallClock:
    """Wall time that moves with Trio's (mock) clock."""

    def time_ms(self) -> int:
        return 1_700_000_000_000 + int(trio.current_time() * 1000)

    def monotonic(self) -> float:
        return trio.current_time()


class FakeClient:
    """Records transactions; ``down`` servers fail; ``hold`` makes sends wait for ``release``."""

    def __init__(self) -> None:
        self.sent: list[
            tuple[str, str, list[Mapping[str, Any]], list[Mapping[str, Any]], float]
        ] = []
        self.attempts: list[tuple[str, float]] = []
        self.down: set[str] = set()
        self.blocked: set[str] = set()
        self.crash: set[str] = set()
        self.hold = False
        self.release = trio.Event()
        self.in_flight: dict[str, int] = {}
        self.max_in_flight = 0
        self.changed = trio.Event()

    async def send_transaction(
        self,
        destination: str,
        txn_id: str,
        pdus: Sequence[Mapping[str, Any]],
        edus: Sequence[Mapping[str, Any]],
        origin_server_ts: int,
    ) -> TransactionResult:
        self.attempts.append((destination, trio.current_time()))
        self._changed()
        self.in_flight[destination] = self.in_flight.get(destination, 0) + 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight[destination])
        try:
            if self.hold:
                await self.release.wait()
            if destination in self.crash:
                raise ValueError("not JSON")
            if destination in self.blocked:
                raise DestinationBlocked(destination, "private address")
            if destination in self.down:
                raise DestinationUnreachable(destination, "connection refused")
            self.sent.append((destination, txn_id, list(pdus), list(edus), trio.current_time()))
            self._changed()
            return TransactionResult({})
        finally:
            self.in_flight[destination] -= 1

    def _changed(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def event_ids(self, destination: str) -> list[str]:
        return [
            compute_event_id(V10, p)
            for d, _, pdus, _, _ in self.sent
            if d == destination
            for p in pdus
        ]


class Env:
    def __init__(self, stores: Stores, db: Database) -> None:
        self.db = db
        self.clock = TrioWallClock()
        self.notifier = InProcessNotifier()
        self.creator = EventCreationService(
            stores.events, SigningKey.generate("v1"), self.clock, self.notifier, server_name=SERVER
        )
        self.rooms = RoomService(
            stores.events,
            self.creator,
            visibility=HistoryVisibility(stores.room_access),
            clock=self.clock,
            server_name=SERVER,
            default_room_version="10",
        )
        self.queue = FederationQueueStore(db)
        self.client = FakeClient()
        self.sender = self.new_sender()

    def new_sender(self, **kwargs) -> FederationSender:
        sender = FederationSender(self.queue, self.client, self.clock, server_name=SERVER, **kwargs)
        self.creator.add_event_listener(sender.on_local_event)
        return sender

    async def room(self, *remote_users: str) -> str:
        room_id = await self.rooms.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
        for user in remote_users:
            await self.add_member(room_id, user)
        return room_id

    async def add_member(self, room_id: str, user_id: str, membership: str = "join") -> None:
        """A remote member in the current state (as the inbound side would write it)."""

        async def work(conn: Conn) -> None:
            await conn.execute(
                insert(current_state).values(
                    room_id=room_id,
                    type="m.room.member",
                    state_key=user_id,
                    event_id=f"$fake-{user_id}",
                    membership=membership,
                )
            )

        await self.db.run(work, name="test_add_member")

    async def say(self, room_id: str, text: str = "hi") -> str:
        created = await self.creator.create_event(
            room_id, sender=ALICE.user_id, event_type="m.room.message", content={"body": text}
        )
        return created.event_id


@pytest.fixture
async def env(stores: Stores, db: Database) -> Env:
    return Env(stores, db)


@pytest.fixture
def clock(
    mock_clock: trio.testing.MockClock, request: pytest.FixtureRequest
) -> trio.testing.MockClock:
    # jump only after real idleness, so PostgreSQL's round trips (another thread, slow on a
    # busy machine) are not mistaken for sleeping; SQLite runs inline
    postgres = "postgres" in str(request.node.callspec.params.get("database_url", ""))
    mock_clock.autojump_threshold = 0.3 if postgres else 0.02
    return mock_clock


async def settle() -> None:
    """Let the sender finish what it is doing (half a second on the mock clock: less than any
    back-off, more than any amount of local work)."""
    await trio.sleep(0.5)


async def wait_until(env: Env, predicate, timeout: float = 30.0) -> None:
    """Wait (on the mock clock) until ``predicate()``, re-checked at each send attempt."""
    with trio.fail_after(timeout):
        while not predicate():
            await env.client.changed.wait()


async def test_new_event_is_sent_at_once_to_remote_servers_only(env: Env, nursery, clock) -> None:
    room = await env.room("@rob:remote.test", "@eve:other.test", "@bob:hs.test")
    await nursery.start(env.sender.run)
    start = trio.current_time()
    event_id = await env.say(room)
    await wait_until(env, lambda: len(env.client.sent) >= 2)
    assert {d for d, *_ in env.client.sent} == {"remote.test", "other.test"}
    assert env.client.event_ids("remote.test") == [event_id]
    assert env.client.sent[0][4] - start < 0.05  # no timer in the way
    pdu = env.client.sent[0][2][0]
    assert pdu["sender"] == ALICE.user_id and pdu["room_id"] == room and "signatures" in pdu
    await settle()  # the accepted rows are deleted after the answer
    assert await env.queue.count("remote.test") == 0


async def test_only_new_events_after_first_start_and_not_remote_ones(
    env: Env, nursery, clock
) -> None:
    room = await env.room("@rob:remote.test")
    await env.say(room, "before federation existed")
    await nursery.start(env.sender.run)
    await settle()
    assert env.client.sent == []
    event_id = await env.say(room)
    await wait_until(env, lambda: env.client.sent)
    assert env.client.event_ids("remote.test") == [event_id]


async def test_one_transaction_in_flight_per_destination_and_batches_of_50(
    env: Env, nursery, clock
) -> None:
    room = await env.room("@rob:remote.test")
    await nursery.start(env.sender.run)
    env.client.hold = True
    ids = [await env.say(room, f"m{i}") for i in range(121)]
    await wait_until(env, lambda: len(env.client.attempts) == 1)
    await settle()
    assert len(env.client.attempts) == 1
    env.client.release.set()
    await wait_until(env, lambda: sum(len(p) for _, _, p, _, _ in env.client.sent) == 121)
    assert env.client.max_in_flight == 1
    sizes = [len(p) for _, _, p, _, _ in env.client.sent]
    assert max(sizes) == 50 and len(sizes) <= 5  # the first went alone, the rest in 50s
    assert env.client.event_ids("remote.test") == ids
    assert len({txn for _, txn, *_ in env.client.sent}) == 4


async def test_membership_target_server_hears_of_kick(env: Env, nursery, clock) -> None:
    room = await env.room("@rob:remote.test")
    await nursery.start(env.sender.run)
    await env.creator.create_event(
        room,
        sender=ALICE.user_id,
        event_type="m.room.member",
        state_key="@rob:remote.test",
        content={"membership": "leave"},
    )
    await wait_until(env, lambda: env.client.sent)
    assert env.client.sent[0][0] == "remote.test"


async def test_an_invited_users_server_is_not_sent_the_invite_again(
    env: Env, nursery, clock
) -> None:
    """The invitee's server got the invite through /invite; only the room's servers get it in
    a transaction (as in Synapse)."""
    room = await env.room("@rob:remote.test")
    await nursery.start(env.sender.run)
    await env.creator.create_event(
        room,
        sender=ALICE.user_id,
        event_type="m.room.member",
        state_key="@carol:third.test",
        content={"membership": "invite"},
    )
    await wait_until(env, lambda: env.client.sent)
    await settle()
    assert {dest for dest, *_ in env.client.sent} == {"remote.test"}


async def test_back_off_doubles_is_capped_and_ends_on_contact(env: Env, nursery, clock) -> None:
    room = await env.room("@rob:remote.test")
    env.client.down.add("remote.test")
    sender = env.new_sender(min_backoff=1.0, max_backoff=8.0)
    await nursery.start(sender.run)
    await env.say(room)
    await wait_until(env, lambda: len(env.client.attempts) >= 6, timeout=1000)
    times = [t for _, t in env.client.attempts]
    gaps = [b - a for a, b in itertools.pairwise(times)]
    for gap, base in zip(gaps, [1, 2, 4, 8, 8], strict=True):
        assert base * 0.8 - 0.01 <= gap <= base * 1.2 + 0.01
    await settle()
    stored = await env.queue.destination("remote.test")
    assert stored is not None and stored.failures == 6
    # the server comes back and talks to us: the queue goes at once
    env.client.down.clear()
    before = trio.current_time()
    sender.on_server_contacted("remote.test")
    await wait_until(env, lambda: env.client.sent)
    assert env.client.sent[0][4] - before < 1
    await settle()
    stored = await env.queue.destination("remote.test")
    assert stored is not None and stored.failures == 0 and stored.last_success_ts is not None


async def test_contact_from_a_server_that_is_fine_costs_nothing(env: Env, nursery, clock) -> None:
    await nursery.start(env.sender.run)
    env.sender.on_server_contacted("never.test")
    await settle()
    assert await env.queue.destination("never.test") is None


async def test_restart_loses_no_queued_event(stores: Stores, env: Env, clock) -> None:
    room = await env.room("@rob:remote.test")
    env.client.down.add("remote.test")
    ids = []
    async with trio.open_nursery() as nursery:
        await nursery.start(env.sender.run)
        ids += [await env.say(room, f"m{i}") for i in range(3)]
        await wait_until(env, lambda: len(env.client.attempts) >= 1)
        await settle()  # the back-off is written down
        nursery.cancel_scope.cancel()
    # written while no sender runs
    ids += [await env.say(room, f"later{i}") for i in range(2)]
    # some are in the outbox, the rest only in the events table (found from the position)
    assert 1 <= await env.queue.count("remote.test") <= 3
    # a new process: the remote is up now
    env.client = FakeClient()
    sender = env.new_sender()
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        # the stored back-off is honoured ...
        await settle()
        assert env.client.sent == []
        # ... until the remote contacts us
        sender.on_server_contacted("remote.test")
        await wait_until(env, lambda: len(env.client.event_ids("remote.test")) == 5)
        await settle()
        nursery.cancel_scope.cancel()
    assert env.client.event_ids("remote.test") == ids
    assert await env.queue.count("remote.test") == 0


async def test_cancel_mid_transaction_keeps_the_events(env: Env, clock) -> None:
    room = await env.room("@rob:remote.test")
    env.client.hold = True
    async with trio.open_nursery() as nursery:
        await nursery.start(env.sender.run)
        event_id = await env.say(room)
        await wait_until(env, lambda: env.client.attempts)
        nursery.cancel_scope.cancel()
    assert await env.queue.count("remote.test") == 1
    env.client = FakeClient()
    sender = env.new_sender()
    async with trio.open_nursery() as nursery:
        await nursery.start(sender.run)
        await wait_until(env, lambda: env.client.sent)
        nursery.cancel_scope.cancel()
    assert env.client.event_ids("remote.test") == [event_id]


async def test_catch_up_sends_newest_event_per_room(env: Env, nursery, clock) -> None:
    room1 = await env.room("@rob:remote.test")
    room2 = await env.room("@rob:remote.test")
    env.client.down.add("remote.test")
    await nursery.start(env.sender.run)
    await env.say(room1, "first")
    await wait_until(env, lambda: env.client.attempts)
    last1 = [await env.say(room1, f"a{i}") for i in range(40)][-1]
    last2 = [await env.say(room2, f"b{i}") for i in range(20)][-1]
    await settle()  # all queued
    env.client.down.clear()
    env.sender.on_server_contacted("remote.test")
    await wait_until(env, lambda: env.client.sent)
    await settle()
    assert sorted(env.client.event_ids("remote.test")) == sorted([last1, last2])
    assert await env.queue.count("remote.test") == 0


async def test_small_backlog_is_sent_whole_after_an_outage(env: Env, nursery, clock) -> None:
    room = await env.room("@rob:remote.test")
    env.client.down.add("remote.test")
    await nursery.start(env.sender.run)
    ids = [await env.say(room, f"m{i}") for i in range(5)]
    await wait_until(env, lambda: env.client.attempts)
    env.client.down.clear()
    await wait_until(env, lambda: len(env.client.event_ids("remote.test")) == 5, timeout=100)
    assert env.client.event_ids("remote.test") == ids


async def test_edus_ride_along_and_are_kept_on_failure(env: Env, nursery, clock) -> None:
    await nursery.start(env.sender.run)
    env.client.down.add("remote.test")
    for i in range(150):
        env.sender.send_edu("remote.test", "m.typing", {"n": i})
    env.sender.send_edu(SERVER, "m.typing", {"to": "ourselves"})
    await wait_until(env, lambda: env.client.attempts)
    env.client.down.clear()
    env.sender.on_server_contacted("remote.test")
    await wait_until(env, lambda: len(env.client.sent) == 2)
    assert [len(e) for _, _, _, e, _ in env.client.sent] == [100, 50]
    assert [e["content"]["n"] for *_, edus, _ in env.client.sent for e in edus] == list(range(150))
    assert env.client.sent[0][3][0] == {"edu_type": "m.typing", "content": {"n": 0}}
    assert all(d == "remote.test" for d, *_ in env.client.sent)


async def test_blocked_destination_queue_is_dropped(env: Env, nursery, clock) -> None:
    room = await env.room("@rob:remote.test", "@eve:other.test")
    env.client.blocked.add("remote.test")
    await nursery.start(env.sender.run)
    await env.say(room)
    await wait_until(env, lambda: env.client.sent)
    await settle()
    assert await env.queue.count("remote.test") == 0
    assert [d for d, *_ in env.client.sent] == ["other.test"]
    assert len([a for a in env.client.attempts if a[0] == "remote.test"]) == 1


async def test_event_written_without_the_listener_is_found_by_the_poll(
    env: Env, nursery, clock
) -> None:
    room = await env.room("@rob:remote.test")
    sender = FederationSender(env.queue, env.client, env.clock, server_name=SERVER)  # no hook
    await nursery.start(sender.run)
    start = trio.current_time()
    event_id = await env.say(room)
    await wait_until(env, lambda: env.client.sent)
    assert env.client.event_ids("remote.test") == [event_id]
    assert 0 < env.client.sent[0][4] - start <= 10.5


async def test_wake_finds_the_event_at_once(env: Env, nursery, clock) -> None:
    room = await env.room("@rob:remote.test")
    sender = FederationSender(env.queue, env.client, env.clock, server_name=SERVER)
    await nursery.start(sender.run)
    start = trio.current_time()
    await env.say(room)
    sender.wake()
    await wait_until(env, lambda: env.client.sent)
    assert env.client.sent[0][4] - start < 0.1


async def test_unexpected_error_backs_off_instead_of_spinning(env: Env, nursery, clock) -> None:
    room = await env.room("@rob:remote.test")
    env.client.crash.add("remote.test")
    await nursery.start(env.sender.run)
    start = trio.current_time()
    await env.say(room)
    await wait_until(env, lambda: len(env.client.attempts) >= 3, timeout=200)
    # 10 s, then 20 s (±20 %) between attempts
    assert trio.current_time() - start >= 0.8 * 30
    env.client.crash.clear()
    env.sender.on_server_contacted("remote.test")
    await wait_until(env, lambda: env.client.sent)
