"""The inbound PDU pipeline and transactions, with a fake key ring and a fake remote server,
on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pytest
from sqlalchemy import select

from federation.core.builder import build_event
from federation.core.events import Event
from federation.core.room_versions import get_room_version
from federation.core.signing import KnownKey, SigningKey
from homeserver.clock import FakeClock
from homeserver.services.events import EventCreationService
from homeserver.services.federation_inbound import EduRegistry, FederationInbound
from homeserver.services.notifier import InProcessNotifier
from homeserver.services.requester import Requester
from homeserver.services.rooms import CreateRoomRequest, RoomService, StateEventSpec
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage import Database, Stores
from homeserver.storage.federation_events import FederationEventStore
from homeserver.storage.schema import event_relations
from homeserver.streams import StreamName

SERVER = "hs.test"
REMOTE = "remote.test"
ALICE = Requester("@alice:hs.test", "ADEV")
ROB = "@rob:remote.test"


class FakeKeyRing:
    def __init__(self) -> None:
        self.keys: dict[str, dict[str, KnownKey]] = {}
        self.asked: list[str] = []

    def add(self, server: str, key: SigningKey) -> None:
        self.keys.setdefault(server, {})[key.key_id] = KnownKey(key.verify_key, 2**60)

    async def known_keys(
        self, server_name: str, key_ids: Collection[str], *, at_ts: int
    ) -> Mapping[str, KnownKey]:
        self.asked.append(server_name)
        known = self.keys.get(server_name, {})
        return {k: known[k] for k in key_ids if k in known}


class FakeRemote:
    """A remote server's room graph: events by ID, what /get_missing_events answers, the
    state before each event."""

    def __init__(self) -> None:
        self.events: dict[str, Event] = {}
        self.missing: list[Event] = []
        self.state_before: dict[str, list[str]] = {}
        self.auth_chains: dict[str, list[Event]] = {}
        self.calls: list[str] = []

    async def get_event(self, destination: str, event_id: str) -> Mapping[str, Any] | None:
        self.calls.append(f"event {event_id}")
        found = self.events.get(event_id)
        return None if found is None else found.pdu

    async def get_missing_events(
        self,
        destination: str,
        room_id: str,
        *,
        earliest_events: Sequence[str],
        latest_events: Sequence[str],
        limit: int,
        min_depth: int,
    ) -> list[Mapping[str, Any]]:
        self.calls.append("missing")
        return [e.pdu for e in self.missing][:limit]

    async def get_state_ids(
        self, destination: str, room_id: str, event_id: str
    ) -> tuple[list[str], list[str]]:
        self.calls.append(f"state_ids {event_id}")
        return self.state_before[event_id], []

    async def get_event_auth(
        self, destination: str, room_id: str, event_id: str
    ) -> list[Mapping[str, Any]]:
        self.calls.append(f"event_auth {event_id}")
        return [e.pdu for e in self.auth_chains.get(event_id, [])]


class Env:
    def __init__(self, stores: Stores, db: Database, version: str) -> None:
        self.version = get_room_version(version)
        self.version_id = version
        self.key = SigningKey.generate("v1")
        self.remote_key = SigningKey.generate("r1")
        self.clock = FakeClock()
        self.notifier = InProcessNotifier()
        self.events = stores.events
        self.creator = EventCreationService(
            stores.events, self.key, self.clock, self.notifier, server_name=SERVER
        )
        self.rooms = RoomService(
            stores.events,
            self.creator,
            visibility=HistoryVisibility(stores.room_access),
            clock=self.clock,
            server_name=SERVER,
            default_room_version=version,
        )
        self.keyring = FakeKeyRing()
        self.keyring.add(SERVER, self.key)
        self.keyring.add(REMOTE, self.remote_key)
        self.remote = FakeRemote()
        self.fed_events = FederationEventStore(db)
        self.edus = EduRegistry()
        self.inbound = FederationInbound(
            stores.events,
            self.fed_events,
            self.creator,
            self.notifier,
            self.keyring,
            self.remote,
            self.edus,
            self.clock,
            server_name=SERVER,
        )
        self.room_id = ""
        self.txn = 0

    async def create_room(self, initial_state: list[StateEventSpec] | None = None) -> None:
        self.room_id = await self.rooms.create_room(
            ALICE,
            CreateRoomRequest(
                preset="public_chat",
                room_version=self.version_id,
                initial_state=initial_state or [],
            ),
        )

    async def state_ids(self) -> dict[tuple[str, str], str]:
        return await self.events.get_current_state_ids(self.room_id)

    async def remote_event(
        self,
        event_type: str,
        content: Mapping[str, Any],
        *,
        state_key: str | None = None,
        prevs: list[Event] | None = None,
        sender: str = ROB,
        key: SigningKey | None = None,
        auth_keys: list[tuple[str, str]] | None = None,
        state: Mapping[tuple[str, str], str] | None = None,
        redacts: str | None = None,
    ) -> Event:
        """An event by the remote server on the current tip (or on ``prevs``), with auth
        events from the current state (or ``state``)."""
        if state is None:
            state = await self.state_ids()
        if prevs is None:
            tips = await self.events.get_forward_extremities(self.room_id)
            prev_ids = [t.event_id for t in tips]
            depth = max(t.depth for t in tips) + 1
        else:
            prev_ids = [p.event_id for p in prevs]
            depth = max(p.depth for p in prevs) + 1
        wanted = [("m.room.power_levels", ""), ("m.room.member", sender)]
        if self.version.create_event_in_auth_events:
            wanted.insert(0, ("m.room.create", ""))
        if event_type == "m.room.member":
            wanted += [("m.room.join_rules", ""), ("m.room.member", state_key or "")]
        wanted += auth_keys or []
        auth = list(dict.fromkeys(state[k] for k in wanted if k in state))
        return build_event(
            self.version,
            room_id=self.room_id,
            sender=sender,
            type=event_type,
            content=content,
            prev_event_ids=prev_ids,
            auth_event_ids=auth,
            depth=depth,
            origin_server_ts=self.clock.time_ms(),
            origin=REMOTE,
            signing_key=key or self.remote_key,
            state_key=state_key,
            redacts=redacts,
        )

    async def send(self, *events: Event | Mapping[str, Any], txn_id: str | None = None) -> Any:
        self.txn += 1
        pdus = [e.pdu if isinstance(e, Event) else e for e in events]
        return await self.inbound.on_transaction(REMOTE, txn_id or f"t{self.txn}", pdus, [])

    async def join_rob(self) -> Event:
        join = await self.remote_event("m.room.member", {"membership": "join"}, state_key=ROB)
        answer = await self.send(join)
        assert answer == {"pdus": {join.event_id: {}}}
        return join


@pytest.fixture(params=["10", "12"])
async def env(stores: Stores, db: Database, request: pytest.FixtureRequest) -> Env:
    e = Env(stores, db, request.param)
    await e.create_room()
    return e


async def test_good_pdus_reach_the_timeline_and_the_current_state(env: Env) -> None:
    before = env.notifier.current_token().positions[StreamName.EVENTS]
    join = await env.join_rob()
    state = await env.state_ids()
    assert state[("m.room.member", ROB)] == join.event_id
    message = await env.remote_event("m.room.message", {"body": "hi", "msgtype": "m.text"})
    assert await env.send(message) == {"pdus": {message.event_id: {}}}
    stored = await env.events.get_event(message.event_id)
    assert stored is not None and not stored.outlier and stored.rejected_reason is None
    assert [e.event_id for e in await env.events.get_forward_extremities(env.room_id)] == [
        message.event_id
    ]
    assert env.notifier.current_token().positions[StreamName.EVENTS] > before
    # a local send after remote events builds on the remote tip (room_written_elsewhere)
    created = await env.rooms.send(ALICE, env.room_id, "m.room.message", {"body": "back"})
    local = await env.events.get_event(created.event_id)
    assert local is not None and list(local.event.prev_event_ids) == [message.event_id]
    # the same PDU again is accepted without a second copy
    assert await env.send(message) == {"pdus": {message.event_id: {}}}


async def test_bad_content_hash_is_redacted_and_stored(env: Env) -> None:
    await env.join_rob()
    message = await env.remote_event("m.room.message", {"body": "original", "msgtype": "m.text"})
    tampered = dict(message.pdu)
    tampered["content"] = {"body": "changed", "msgtype": "m.text"}  # signatures still verify
    answer = await env.send(tampered)
    assert answer == {"pdus": {message.event_id: {}}}
    stored = await env.events.get_event(message.event_id)
    assert stored is not None and not stored.outlier
    assert dict(stored.event.content) == {}


async def test_bad_signature_is_dropped(env: Env) -> None:
    await env.join_rob()
    forged = await env.remote_event("m.room.message", {"body": "x"}, key=SigningKey.generate("r1"))
    answer = await env.send(forged)
    assert "signature" in answer["pdus"][forged.event_id]["error"].lower()
    assert await env.events.get_event(forged.event_id) is None


async def test_oversize_and_malformed_pdus_are_dropped(env: Env) -> None:
    await env.join_rob()
    big = await env.remote_event("m.room.message", {"body": "x" * 70_000})
    answer = await env.send(big)
    assert "Invalid event" in answer["pdus"][big.event_id]["error"]
    assert await env.events.get_event(big.event_id) is None
    no_sender = dict((await env.remote_event("m.room.message", {"body": "y"})).pdu)
    del no_sender["sender"]
    answer = await env.send(no_sender)
    assert next(v["error"] for v in answer["pdus"].values()).startswith("Invalid event")


async def test_event_failing_auth_is_stored_rejected(env: Env) -> None:
    # rob never joined: his message fails the auth rules against its own auth events
    message = await env.remote_event("m.room.message", {"body": "let me in"})
    answer = await env.send(message)
    assert answer["pdus"][message.event_id] == {}  # stored, so handled (as in Synapse)
    stored = await env.events.get_event(message.event_id)
    assert stored is not None and stored.rejected_reason is not None and stored.outlier
    tips = await env.events.get_forward_extremities(env.room_id)
    assert message.event_id not in [t.event_id for t in tips]


async def test_event_failing_current_state_is_soft_failed(env: Env) -> None:
    join = await env.join_rob()
    at_join = await env.state_ids()
    await env.rooms.set_membership(ALICE, env.room_id, ROB, "ban")
    # rob's server has not seen the ban: its message follows the join
    message = await env.remote_event(
        "m.room.message", {"body": "late"}, prevs=[join], state=at_join
    )
    answer = await env.send(message)
    assert answer["pdus"][message.event_id] == {}
    stored = await env.events.get_event(message.event_id)
    assert stored is not None and stored.outlier and stored.rejected_reason is None
    assert stored.state_group is not None
    assert await env.fed_events.soft_failed([message.event_id]) == {message.event_id}
    tips = await env.events.get_forward_extremities(env.room_id)
    assert message.event_id not in [t.event_id for t in tips]


async def test_missing_prev_events_come_from_get_missing_events(env: Env) -> None:
    join = await env.join_rob()
    first = await env.remote_event("m.room.message", {"body": "1"}, prevs=[join])
    second = await env.remote_event("m.room.message", {"body": "2"}, prevs=[first])
    env.remote.missing = [first]
    assert await env.send(second) == {"pdus": {second.event_id: {}}}
    assert env.remote.calls == ["missing"]
    for event in (first, second):
        stored = await env.events.get_event(event.event_id)
        assert stored is not None and not stored.outlier
    tips = await env.events.get_forward_extremities(env.room_id)
    assert [t.event_id for t in tips] == [second.event_id]


async def test_a_gap_behind_pulled_events_is_filled_with_the_state_at_it(env: Env) -> None:
    join = await env.join_rob()
    first = await env.remote_event("m.room.message", {"body": "1"}, prevs=[join])
    second = await env.remote_event("m.room.message", {"body": "2"}, prevs=[first])
    third = await env.remote_event("m.room.message", {"body": "3"}, prevs=[second])
    # /get_missing_events gives only the second; its prev is the gap
    env.remote.missing = [second]
    env.remote.events[first.event_id] = first
    env.remote.state_before[first.event_id] = list((await env.state_ids()).values())
    assert await env.send(third) == {"pdus": {third.event_id: {}}}
    assert env.remote.calls == ["missing", f"event {first.event_id}", f"state_ids {first.event_id}"]
    gap = await env.events.get_event(first.event_id)
    assert gap is not None and gap.outlier
    for event in (second, third):
        stored = await env.events.get_event(event.event_id)
        assert stored is not None and not stored.outlier
    tips = {t.event_id for t in await env.events.get_forward_extremities(env.room_id)}
    # the join stays a tip: the gap (an outlier) does not replace it
    assert tips == {join.event_id, third.event_id}


async def test_pushed_event_with_missing_prev_events_is_dropped(env: Env) -> None:
    join = await env.join_rob()
    first = await env.remote_event("m.room.message", {"body": "1"}, prevs=[join])
    second = await env.remote_event("m.room.message", {"body": "2"}, prevs=[first])
    env.remote.events[first.event_id] = first  # /event would give it, but it is not asked
    answer = await env.send(second)
    assert "prev_events" in answer["pdus"][second.event_id]["error"]
    assert env.remote.calls == ["missing"]  # no /state_ids for a pushed event
    assert await env.events.get_event(second.event_id) is None


async def test_redaction_of_an_event_in_another_room_is_rejected(env: Env) -> None:
    await env.join_rob()
    elsewhere = await env.rooms.create_room(
        ALICE, CreateRoomRequest(preset="public_chat", room_version=env.version_id)
    )
    target = await env.rooms.send(ALICE, elsewhere, "m.room.message", {"body": "keep"})
    redaction = await env.remote_event("m.room.redaction", {}, redacts=target.event_id)
    assert await env.send(redaction) == {"pdus": {redaction.event_id: {}}}
    stored = await env.events.get_event(redaction.event_id)
    assert stored is not None and stored.rejected_reason is not None
    kept = await env.events.get_event(target.event_id)
    assert kept is not None and not kept.redacted


async def test_unreachable_gap_is_an_error_for_that_pdu_only(env: Env) -> None:
    join = await env.join_rob()
    first = await env.remote_event("m.room.message", {"body": "1"}, prevs=[join])
    second = await env.remote_event("m.room.message", {"body": "2"}, prevs=[first])
    good = await env.remote_event("m.room.message", {"body": "3"}, prevs=[join])
    forged = await env.remote_event("m.room.message", {"body": "4"}, key=SigningKey.generate("r1"))
    answer = await env.send(second, forged, good)
    assert "error" in answer["pdus"][second.event_id]
    assert "error" in answer["pdus"][forged.event_id]
    assert answer["pdus"][good.event_id] == {}
    assert await env.events.get_event(second.event_id) is None


async def test_repeated_transaction_gets_the_first_answer(env: Env) -> None:
    join = await env.remote_event("m.room.member", {"membership": "join"}, state_key=ROB)
    first = await env.send(join, txn_id="same")
    message = await env.remote_event("m.room.message", {"body": "new"})
    again = await env.send(message, txn_id="same")
    assert again == first == {"pdus": {join.event_id: {}}}
    assert await env.events.get_event(message.event_id) is None


async def test_room_we_are_not_in(env: Env) -> None:
    join = await env.join_rob()
    other = dict(join.pdu)
    other["room_id"] = "!elsewhere:remote.test"
    answer = await env.send(other)
    [(event_id, result)] = answer["pdus"].items()
    assert result == {"error": "This server is not in the room"}
    assert await env.events.get_event(event_id) is None
    # a room we left
    await env.rooms.set_membership(ALICE, env.room_id, ALICE.user_id, "leave")
    message = await env.remote_event("m.room.message", {"body": "anyone?"})
    answer = await env.send(message)
    assert answer["pdus"][message.event_id] == {"error": "This server is not in the room"}


async def test_server_acl_denies_pdus(stores: Stores, db: Database) -> None:
    env = Env(stores, db, "10")
    await env.create_room(
        [StateEventSpec("m.room.server_acl", "", {"allow": ["*"], "deny": ["remote.test"]})]
    )
    join = await env.remote_event("m.room.member", {"membership": "join"}, state_key=ROB)
    answer = await env.send(join)
    assert "ACL" in answer["pdus"][join.event_id]["error"]
    assert await env.events.get_event(join.event_id) is None


async def test_edus_go_to_their_handler_and_unknown_ones_are_ignored(env: Env) -> None:
    seen: list[tuple[str, Any]] = []

    async def on_typing(origin: str, content: Mapping[str, Any]) -> None:
        seen.append((origin, dict(content)))

    async def broken(origin: str, content: Mapping[str, Any]) -> None:
        raise RuntimeError("handler bug")

    env.edus.register("m.typing", on_typing)
    env.edus.register("m.receipt", broken)
    edus: list[Any] = [
        {"edu_type": "m.typing", "content": {"room_id": env.room_id}},
        {"edu_type": "m.receipt", "content": {}},
        {"edu_type": "org.example.unknown", "content": {}},
        {"edu_type": 5, "content": []},
    ]
    answer = await env.inbound.on_transaction(REMOTE, "edus", [], edus)
    assert answer == {"pdus": {}}
    assert seen == [(REMOTE, {"room_id": env.room_id})]
    with pytest.raises(ValueError):
        env.edus.register("m.typing", on_typing)


async def test_remote_relations_are_indexed(env: Env, db: Database) -> None:
    await env.join_rob()
    root = await env.remote_event("m.room.message", {"body": "root"})
    await env.send(root)
    reply = await env.remote_event(
        "m.room.message",
        {"body": "in thread", "m.relates_to": {"rel_type": "m.thread", "event_id": root.event_id}},
    )
    assert await env.send(reply) == {"pdus": {reply.event_id: {}}}

    async def work(conn: Any) -> Any:
        stmt = select(event_relations.c.event_id, event_relations.c.rel_type).where(
            event_relations.c.relates_to_id == root.event_id
        )
        return await conn.fetch_all(stmt)

    assert [tuple(r) for r in await db.read(work, name="test")] == [(reply.event_id, "m.thread")]


async def test_remote_redaction_redacts_its_target(env: Env) -> None:
    await env.join_rob()
    message = await env.remote_event("m.room.message", {"body": "oops"})
    await env.send(message)
    redaction = build_event(
        env.version,
        room_id=env.room_id,
        sender=ROB,
        type="m.room.redaction",
        content={},
        prev_event_ids=[message.event_id],
        auth_event_ids=list(message.auth_event_ids),
        depth=message.depth + 1,
        origin_server_ts=env.clock.time_ms(),
        origin=REMOTE,
        signing_key=env.remote_key,
        redacts=message.event_id,
    )
    assert await env.send(redaction) == {"pdus": {redaction.event_id: {}}}
    stored = await env.events.get_event(message.event_id)
    assert stored is not None and stored.redacted and dict(stored.event.content) == {}


async def test_old_transaction_answers_are_forgotten(env: Env) -> None:
    join = await env.remote_event("m.room.member", {"membership": "join"}, state_key=ROB)
    assert await env.send(join, txn_id="old") == {"pdus": {join.event_id: {}}}
    assert await env.fed_events.get_txn_response(REMOTE, "old") is not None
    env.clock.advance(2 * 24 * 3600)
    await env.send(txn_id="later")
    assert await env.fed_events.get_txn_response(REMOTE, "old") is None
    assert await env.fed_events.get_txn_response(REMOTE, "later") == {"pdus": {}}


async def test_server_in_room(env: Env) -> None:
    assert await env.inbound.server_in_room(env.room_id, SERVER)
    assert not await env.inbound.server_in_room(env.room_id, REMOTE)
    await env.join_rob()
    assert await env.inbound.server_in_room(env.room_id, REMOTE)
    # LIKE wildcards in a server name match nothing else
    assert not await env.inbound.server_in_room(env.room_id, "remote_test")
    assert not await env.inbound.server_in_room(env.room_id, "%")
    assert not await env.inbound.server_in_room(env.room_id, "test")
    assert not await env.inbound.server_in_room("!unknown:hs.test", SERVER)


async def _rob_renames(env: Env, rob_join: Event) -> tuple[Event, Event, Event]:
    """Two display name changes of rob and a message after them, made on the remote server
    only (each member event is the next one's auth event)."""
    state = dict(await env.state_ids())
    first = await env.remote_event(
        "m.room.member",
        {"membership": "join", "displayname": "Rob 1"},
        state_key=ROB,
        prevs=[rob_join],
        state=state,
    )
    state[("m.room.member", ROB)] = first.event_id
    second = await env.remote_event(
        "m.room.member",
        {"membership": "join", "displayname": "Rob 2"},
        state_key=ROB,
        prevs=[first],
        state=state,
    )
    state[("m.room.member", ROB)] = second.event_id
    message = await env.remote_event(
        "m.room.message", {"body": "hi"}, prevs=[rob_join], state=state
    )
    return first, second, message


async def test_unknown_auth_events_come_with_their_auth_chain(env: Env) -> None:
    rob_join = await env.join_rob()
    first, second, message = await _rob_renames(env, rob_join)
    env.remote.events[second.event_id] = second
    env.remote.auth_chains[second.event_id] = [first, rob_join]
    assert await env.send(message) == {"pdus": {message.event_id: {}}}
    assert env.remote.calls == [f"event {second.event_id}", f"event_auth {second.event_id}"]
    for event in (first, second):
        stored = await env.events.get_event(event.event_id)
        assert stored is not None and stored.outlier and stored.rejected_reason is None
        assert stored.state_group is None
    stored = await env.events.get_event(message.event_id)
    assert stored is not None and not stored.outlier and stored.rejected_reason is None


async def test_auth_event_whose_chain_is_unavailable_is_rejected(env: Env) -> None:
    rob_join = await env.join_rob()
    _first, second, message = await _rob_renames(env, rob_join)
    env.remote.events[second.event_id] = second  # but no auth chain for it
    assert await env.send(message) == {"pdus": {message.event_id: {}}}
    stored = await env.events.get_event(second.event_id)
    assert stored is not None and stored.rejected_reason is not None
    assert "missing" in stored.rejected_reason and stored.state_group is None
    rejected = await env.events.get_event(message.event_id)
    assert rejected is not None and rejected.rejected_reason is not None
