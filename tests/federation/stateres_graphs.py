"""Build room DAGs for state resolution tests from short scenario descriptions.

A scenario is a list of events (node name, sender, type, state key, content) and a list of
*edge chains*: ``["END", "T2", "PA", "START"]`` means END's prev events include T2, T2's
include PA, and so on. Every scenario starts from the same room (:data:`INITIAL_EVENTS`,
chained by :data:`INITIAL_EDGES`): Alice creates it and is admin, Bob, Charlie and Zara
join, Zara sends START. The events are then created in topological order (ties broken by
node name), each citing as ``auth_events`` what the auth rules select from the state before
it, that state being the resolution (by the algorithm under test) of the states after its
prev events. Timestamps increase in that order.

Event IDs are ``$`` + node name; no hashing, no signatures. In room version 12 the room ID
is ``!CREATE`` (the create event's ID with ``!``) and the create event is left out of
``auth_events``, as the room version requires.

The scenario encoding follows the classic set in Synapse's tests/state/test_v2.py (ban vs
power levels, join rule evasion, offtopic power levels, topic basic/reset/topic, mainline
sort), re-encoded here.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from federation.core.auth_rules import auth_types_for_event
from federation.core.events import Event, StateKey
from federation.core.room_versions import RoomVersion
from federation.core.stateres import resolve
from tests.fakes import FakeStateResStore

ALICE = "@alice:example.com"
BOB = "@bob:example.com"
CHARLIE = "@charlie:example.com"
EVELYN = "@evelyn:example.com"
ZARA = "@zara:example.com"

CREATE = "m.room.create"
MEMBER = "m.room.member"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
TOPIC = "m.room.topic"
MESSAGE = "m.room.message"

LEGACY_ROOM_ID = "!room:example.com"


@dataclass(frozen=True)
class Ev:
    """One event of a scenario."""

    node: str
    sender: str
    type: str
    state_key: str | None
    content: Mapping[str, Any] = field(default_factory=dict)


def member(node: str, sender: str, target: str, membership: str) -> Ev:
    return Ev(node, sender, MEMBER, target, {"membership": membership})


def power_levels(node: str, sender: str, users: Mapping[str, int], **extra: Any) -> Ev:
    return Ev(node, sender, POWER_LEVELS, "", {"users": dict(users), **extra})


def topic(node: str, sender: str) -> Ev:
    return Ev(node, sender, TOPIC, "", {"topic": node})


INITIAL_EVENTS = [
    Ev("CREATE", ALICE, CREATE, ""),
    member("IMA", ALICE, ALICE, "join"),
    power_levels("IPOWER", ALICE, {ALICE: 100}),
    Ev("IJR", ALICE, JOIN_RULES, "", {"join_rule": "public"}),
    member("IMB", BOB, BOB, "join"),
    member("IMC", CHARLIE, CHARLIE, "join"),
    member("IMZ", ZARA, ZARA, "join"),
    Ev("START", ZARA, MESSAGE, None, {"body": "start"}),
    Ev("END", ZARA, MESSAGE, None, {"body": "end"}),
]
INITIAL_EDGES = ["START", "IMZ", "IMC", "IMB", "IJR", "IPOWER", "IMA", "CREATE"]


def event_id(node: str) -> str:
    return "$" + node


def room_id_for(room_version: RoomVersion) -> str:
    return "!CREATE" if not room_version.create_event_in_auth_events else LEGACY_ROOM_ID


def make_event(
    room_version: RoomVersion,
    eid: str,
    *,
    type: str,
    sender: str,
    content: Mapping[str, Any],
    state_key: str | None = None,
    prev_events: Sequence[str] = (),
    auth_events: Sequence[str] = (),
    ts: int = 0,
    depth: int = 0,
    room_id: str | None = None,
) -> Event:
    """Build an :class:`Event` directly from fields (no hashes, made-up event ID)."""

    def refs(ids: Sequence[str]) -> list[Any]:
        if room_version.event_ids_in_event:
            return [[i, {}] for i in ids]
        return list(ids)

    pdu: dict[str, Any] = {
        "type": type,
        "sender": sender,
        "content": dict(content),
        "origin_server_ts": ts,
        "depth": depth,
        "prev_events": refs(prev_events),
        "auth_events": refs(auth_events),
    }
    if not (type == CREATE and not room_version.create_event_in_auth_events):
        pdu["room_id"] = room_id or room_id_for(room_version)
    if room_version.event_ids_in_event:
        pdu["event_id"] = eid
    if state_key is not None:
        pdu["state_key"] = state_key
    return Event(room_version, pdu, eid)


def adapt_content(room_version: RoomVersion, ev: Ev) -> dict[str, Any]:
    """Make a scenario's content valid in the room version.

    The create event names the creator (v1-10) and room version; from v12 the creator has
    infinite power and may not appear in power levels ``users``, so Alice is dropped there.
    """
    content = dict(ev.content)
    if ev.type == CREATE:
        content.setdefault("room_version", room_version.identifier)
        if not room_version.implicit_room_creator:
            content.setdefault("creator", ev.sender)
    if ev.type == POWER_LEVELS and room_version.privileged_creators:
        users = content.get("users")
        if isinstance(users, Mapping):
            content["users"] = {u: lvl for u, lvl in users.items() if u != ALICE}
    return content


@dataclass
class Graph:
    """A built scenario: its events, the store over them and the state after each node."""

    room_version: RoomVersion
    store: FakeStateResStore
    events: dict[str, Event]  # node → event
    prev_nodes: dict[str, list[str]]
    state_after: dict[str, dict[StateKey, str]]

    def state_before(self, node: str) -> dict[StateKey, str]:
        prevs = self.prev_nodes[node]
        return resolve(self.room_version, [self.state_after[p] for p in prevs], self.store)


def build_graph(
    room_version: RoomVersion,
    events: Iterable[Ev],
    edges: Iterable[Sequence[str]],
    *,
    initial: bool = True,
) -> Graph:
    """Create the events of a scenario in topological order, computing state as we go."""
    all_events = [*(INITIAL_EVENTS if initial else ()), *events]
    by_node = {ev.node: ev for ev in all_events}
    prevs: dict[str, set[str]] = {ev.node: set() for ev in all_events}
    chains = [INITIAL_EDGES, *edges] if initial else list(edges)
    for chain in chains:
        for a, b in itertools.pairwise(chain):
            prevs[a].add(b)

    # Kahn's algorithm, smallest node name first.
    children: dict[str, list[str]] = {n: [] for n in prevs}
    pending = {n: len(p) for n, p in prevs.items()}
    for n, ps in prevs.items():
        for p in ps:
            children[p].append(n)
    ready = [n for n, k in pending.items() if k == 0]
    heapq.heapify(ready)

    store = FakeStateResStore()
    graph = Graph(room_version, store, {}, {}, {})
    ts = 0
    while ready:
        node = heapq.heappop(ready)
        for c in children[node]:
            pending[c] -= 1
            if pending[c] == 0:
                heapq.heappush(ready, c)
        ev = by_node[node]
        prev_nodes = sorted(prevs[node])
        graph.prev_nodes[node] = prev_nodes
        before = graph.state_before(node) if prev_nodes else {}
        content = adapt_content(room_version, ev)
        auth_ids = [
            before[key]
            for key in auth_types_for_event(room_version, ev.type, ev.state_key, ev.sender, content)
            if key in before
        ]
        depth = 1 + max((graph.events[p].depth for p in prev_nodes), default=0)
        event = make_event(
            room_version,
            event_id(node),
            type=ev.type,
            sender=ev.sender,
            content=content,
            state_key=ev.state_key,
            prev_events=[event_id(p) for p in prev_nodes],
            auth_events=auth_ids,
            ts=ts,
            depth=depth,
        )
        ts += 1
        store.add(event)
        graph.events[node] = event
        after = dict(before)
        if ev.state_key is not None:
            after[(ev.type, ev.state_key)] = event.event_id
        graph.state_after[node] = after
    assert len(graph.events) == len(all_events), "the edges have a cycle"
    return graph


def changed_state(
    graph: Graph, expected_nodes: Iterable[str]
) -> tuple[dict[StateKey, str], dict[StateKey, str]]:
    """(expected, actual): the state at END restricted to the expected keys and to the keys
    whose event differs from the state at START (as Synapse's do_check compares)."""
    expected: dict[StateKey, str] = {}
    for node in expected_nodes:
        key = graph.events[node].state_tuple
        assert key is not None
        expected[key] = event_id(node)
    start = graph.state_after["START"]
    end = graph.state_after["END"]
    actual = {k: v for k, v in end.items() if k in expected or start.get(k) != v}
    return expected, actual


# ---------------------------------------------------------------------------- scenarios


@dataclass(frozen=True)
class Scenario:
    name: str
    events: list[Ev]
    edges: list[list[str]]
    expected: list[str]


CLASSIC_SCENARIOS = [
    # Alice bans Bob while Bob, concurrently, sends power levels. The ban wins: Alice is
    # more powerful, so her ban is applied first and Bob's power levels then fail.
    Scenario(
        "ban_vs_pl",
        [
            power_levels("PA", ALICE, {ALICE: 100, BOB: 50}),
            member("MA", ALICE, ALICE, "join"),
            member("MB", ALICE, BOB, "ban"),
            power_levels("PB", BOB, {ALICE: 100, BOB: 50}),
        ],
        [["END", "MB", "MA", "PA", "START"], ["END", "PB", "PA"]],
        ["PA", "MA", "MB"],
    ),
    # Alice makes the room invite-only while Evelyn joins: the join rule wins.
    Scenario(
        "join_rule_evasion",
        [
            Ev("JR", ALICE, JOIN_RULES, "", {"join_rule": "invite"}),
            member("ME", EVELYN, EVELYN, "join"),
        ],
        [["END", "JR", "START"], ["END", "ME", "START"]],
        ["JR"],
    ),
    # Power levels that only one fork has seen: the newest valid one wins.
    Scenario(
        "offtopic_pl",
        [
            power_levels("PA", ALICE, {ALICE: 100, BOB: 50}),
            power_levels("PB", BOB, {ALICE: 100, BOB: 50, CHARLIE: 50}),
            power_levels("PC", CHARLIE, {ALICE: 100, BOB: 50, CHARLIE: 0}),
        ],
        [["END", "PC", "PB", "PA", "START"], ["END", "PA"]],
        ["PC"],
    ),
    # Alice demotes Bob (PA2) while Bob sets the topic (T3): Bob's topic loses.
    Scenario(
        "topic_basic",
        [
            topic("T1", ALICE),
            power_levels("PA1", ALICE, {ALICE: 100, BOB: 50}),
            topic("T2", ALICE),
            power_levels("PA2", ALICE, {ALICE: 100, BOB: 0}),
            power_levels("PB", BOB, {ALICE: 100, BOB: 50}),
            topic("T3", BOB),
        ],
        [["END", "PA2", "T2", "PA1", "T1", "START"], ["END", "T3", "PB", "PA1"]],
        ["PA2", "T2"],
    ),
    # Bob is banned after setting the topic; the other fork saw only the first topic. The
    # topic resets to T1, since Bob's T2 no longer passes once the ban is applied.
    Scenario(
        "topic_reset",
        [
            topic("T1", ALICE),
            power_levels("PA", ALICE, {ALICE: 100, BOB: 50}),
            topic("T2", BOB),
            member("MB", ALICE, BOB, "ban"),
        ],
        [["END", "MB", "T2", "PA", "T1", "START"], ["END", "T1"]],
        ["T1", "MB", "PA"],
    ),
    # A longer version of topic_basic, with a message merging the forks and a later topic.
    Scenario(
        "topic",
        [
            topic("T1", ALICE),
            power_levels("PA1", ALICE, {ALICE: 100, BOB: 50}),
            topic("T2", ALICE),
            power_levels("PA2", ALICE, {ALICE: 100, BOB: 0}),
            power_levels("PB", BOB, {ALICE: 100, BOB: 50}),
            topic("T3", BOB),
            Ev("MZ1", ZARA, MESSAGE, None, {"body": "merge"}),
            topic("T4", ALICE),
        ],
        [
            ["END", "T4", "MZ1", "PA2", "T2", "PA1", "T1", "START"],
            ["END", "MZ1", "T3", "PB", "PA1"],
        ],
        ["T4", "PA2"],
    ),
    # Mainline ordering: T3 cites the newer power levels (PA2) on the mainline, T4 an older
    # one (PA1, via PB), so T3 wins although T4 was sent later.
    Scenario(
        "mainline_sort",
        [
            topic("T1", ALICE),
            power_levels("PA1", ALICE, {ALICE: 100, BOB: 50}),
            topic("T2", ALICE),
            power_levels("PA2", ALICE, {ALICE: 100, BOB: 50}, events={POWER_LEVELS: 100}),
            power_levels("PB", BOB, {ALICE: 100, BOB: 50}),
            topic("T3", BOB),
            topic("T4", ALICE),
        ],
        [["END", "T3", "PA2", "T2", "PA1", "T1", "START"], ["END", "T4", "PB", "PA1"]],
        ["T3", "PA2"],
    ),
]
