"""State resolution v1, v2 and v2.1: scenarios, building blocks and order independence."""

from __future__ import annotations

import functools
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from federation.core.events import StateKey
from federation.core.room_versions import get_room_version
from federation.core.stateres import AuthChainDifferenceStore, StateResStore, resolve
from federation.core.stateres._common import EventCache
from federation.core.stateres.v2 import (
    auth_difference,
    conflicted_state_subgraph,
    is_power_event,
    mainline_sort,
    reverse_topological_power_sort,
    separate,
)
from tests.fakes import FakeStateResStore, FakeStateResStoreWithDifference
from tests.federation.stateres_graphs import (
    ALICE,
    BOB,
    CHARLIE,
    CLASSIC_SCENARIOS,
    EVELYN,
    MESSAGE,
    POWER_LEVELS,
    TOPIC,
    ZARA,
    Ev,
    Graph,
    Scenario,
    build_graph,
    changed_state,
    event_id,
    make_event,
    member,
    power_levels,
    topic,
)

V2_VERSIONS = ["2", "3", "4", "5", "6", "7", "8", "9", "10", "11"]
ALL_V2_VERSIONS = [*V2_VERSIONS, "12"]


@functools.cache
def built(version: str, name: str) -> Graph:
    scenario = next(s for s in [*CLASSIC_SCENARIOS, *EXTRA_SCENARIOS] if s.name == name)
    return build_graph(get_room_version(version), scenario.events, scenario.edges)


# ------------------------------------------------------------------ classic scenarios


@pytest.mark.parametrize("version", ALL_V2_VERSIONS)
@pytest.mark.parametrize("scenario", CLASSIC_SCENARIOS, ids=lambda s: s.name)
def test_classic_scenarios_v2(scenario: Scenario, version: str) -> None:
    graph = built(version, scenario.name)
    expected, actual = changed_state(graph, scenario.expected)
    assert actual == expected


# Room version 1 resets state in exactly the ways v2 was designed to fix.
V1_OUTCOMES = {
    # Alice's ban is checked against the unconflicted state only, where Alice's own
    # membership is conflicted: the ban fails and Bob stays joined.
    "ban_vs_pl": ["PA", "MA", "IMB"],
    # Evelyn's join is checked without the new join rule (resolved in the same pass).
    "join_rule_evasion": ["JR", "ME"],
    # PB, which gave Charlie the power to send PC, is in neither state: PC fails.
    "offtopic_pl": ["PA"],
    "topic_basic": ["PA2", "T2"],
    "topic_reset": ["T1", "MB", "PA"],
    "topic": ["T4", "PA2"],
    "mainline_sort": ["T3", "PA2"],
}


@pytest.mark.parametrize("scenario", CLASSIC_SCENARIOS, ids=lambda s: s.name)
def test_classic_scenarios_v1(scenario: Scenario) -> None:
    graph = built("1", scenario.name)
    expected, actual = changed_state(graph, V1_OUTCOMES[scenario.name])
    assert actual == expected


# ---------------------------------------------------------------- more scenarios

EXTRA_SCENARIOS = [
    # Alice gives Charlie admin (PL1). Charlie changes power levels (PL2) while, on another
    # fork, leaving the room (LC); MB merges the two. Resolving the fork that only saw LC
    # with MB's state: LC is unconflicted, PL1 and PL2 conflict. v2 checks PL2 against the
    # unconflicted state, where Charlie has left, and resets power levels to PL1. v2.1
    # starts from empty state, checks PL2 against its own auth events, and keeps it.
    Scenario(
        "state_reset_after_leave",
        [
            power_levels("PL1", ALICE, {ALICE: 100, CHARLIE: 100}),
            power_levels("PL2", CHARLIE, {ALICE: 100, CHARLIE: 100, ZARA: 50}),
            member("LC", CHARLIE, CHARLIE, "leave"),
            Ev("MB", ZARA, MESSAGE, None, {"body": "merge"}),
        ],
        [["END", "MB", "PL2", "PL1", "START"], ["MB", "LC", "PL1"], ["END", "LC"]],
        [],
    ),
    # Alice demotes Bob while Bob, concurrently, bans Charlie and sets the topic: both of
    # Bob's events lose.
    Scenario(
        "demoted_moderator",
        [
            power_levels("PA", ALICE, {ALICE: 100, BOB: 50}),
            power_levels("PD", ALICE, {ALICE: 100, BOB: 0}),
            member("BC", BOB, CHARLIE, "ban"),
            topic("TB", BOB),
        ],
        [["END", "PD", "PA", "START"], ["END", "TB", "BC", "PA"]],
        ["PD"],
    ),
    # Join rules go invite-only while Evelyn joins and then sets a topic. The join rule
    # wins; Evelyn's join, and the topic that needed it, are dropped.
    Scenario(
        "join_rules_race_joins",
        [
            Ev("JR", ALICE, "m.room.join_rules", "", {"join_rule": "invite"}),
            member("ME", EVELYN, EVELYN, "join"),
            topic("TE", EVELYN),
        ],
        [["END", "JR", "START"], ["END", "TE", "ME", "START"]],
        ["JR"],
    ),
]


@pytest.mark.parametrize("version", V2_VERSIONS)
def test_state_reset_v2_allows(version: str) -> None:
    graph = built(version, "state_reset_after_leave")
    end = graph.state_after["END"]
    assert end[(POWER_LEVELS, "")] == event_id("PL1")  # PL2 was lost
    assert end[("m.room.member", CHARLIE)] == event_id("LC")


def test_state_reset_v2_1_prevents() -> None:
    graph = built("12", "state_reset_after_leave")
    end = graph.state_after["END"]
    assert end[(POWER_LEVELS, "")] == event_id("PL2")
    assert end[("m.room.member", CHARLIE)] == event_id("LC")


@pytest.mark.parametrize("version", ALL_V2_VERSIONS)
def test_demoted_moderator(version: str) -> None:
    graph = built(version, "demoted_moderator")
    end = graph.state_after["END"]
    assert end[(POWER_LEVELS, "")] == event_id("PD")
    assert end[("m.room.member", CHARLIE)] == event_id("IMC")
    assert (TOPIC, "") not in end


@pytest.mark.parametrize("version", ALL_V2_VERSIONS)
def test_join_rules_race_joins(version: str) -> None:
    graph = built(version, "join_rules_race_joins")
    end = graph.state_after["END"]
    assert end[("m.room.join_rules", "")] == event_id("JR")
    assert ("m.room.member", EVELYN) not in end
    assert (TOPIC, "") not in end


# ------------------------------------------------------------------- edge cases


def test_no_state_sets_and_one_state_set() -> None:
    rv = get_room_version("10")
    store = FakeStateResStore()
    assert resolve(rv, [], store) == {}
    state = {("m.room.topic", ""): "$T"}
    result = resolve(rv, [state], store)
    assert result == state and result is not state


@pytest.mark.parametrize("version", ["1", "10", "12"])
def test_identical_state_sets_need_no_store(version: str) -> None:
    graph = built(version, "topic_basic")
    state = graph.state_after["T3"]
    store = FakeStateResStore()  # empty: nothing may be looked up
    assert resolve(get_room_version(version), [state, dict(state)], store) == state
    assert store.calls == []


@pytest.mark.parametrize("version", ["10", "12"])
def test_unconflicted_state_is_kept_even_if_it_would_fail(version: str) -> None:
    # TB (Bob's topic, allowed under PB) is in both state sets, so it is unconflicted and
    # kept although Alice's PD, which wins, leaves Bob without the power to set topics.
    rv = get_room_version(version)
    graph = build_graph(
        rv,
        [
            power_levels("PA", ALICE, {ALICE: 100, BOB: 50}),
            topic("TB", BOB),
            power_levels("PD", ALICE, {ALICE: 100, BOB: 0}),
            Ev("M", ZARA, MESSAGE, None, {}),
        ],
        [["END", "PD", "TB", "PA", "START"], ["END", "M", "TB"]],
    )
    end = graph.state_after["END"]
    assert end[(TOPIC, "")] == event_id("TB")
    assert end[(POWER_LEVELS, "")] == event_id("PD")


@pytest.mark.parametrize("version", ["10", "12"])
def test_rejected_events_are_not_admitted(version: str) -> None:
    graph = built(version, "topic_basic")
    states = [graph.state_after[n] for n in graph.prev_nodes["END"]]
    rv = get_room_version(version)
    assert resolve(rv, states, graph.store)[(TOPIC, "")] == event_id("T2")
    # Had this server rejected T2, the topic would have no candidate left: T3 fails under
    # PA2 and T2 is never admitted. (T1 is the topic of neither state.)
    store = FakeStateResStore(graph.store.events.values(), rejected=[event_id("T2")])
    assert (TOPIC, "") not in resolve(rv, states, store)


@pytest.mark.parametrize("version", ["10", "12"])
def test_rejected_power_levels_not_used(version: str) -> None:
    # With PA2 rejected, Bob's PB is the only power levels candidate and wins; Bob may set
    # the topic under PB, and T3 cites PB, which is later on the new mainline than T2's PA1.
    graph = built(version, "topic_basic")
    states = [graph.state_after[n] for n in graph.prev_nodes["END"]]
    rv = get_room_version(version)
    store = FakeStateResStore(graph.store.events.values(), rejected=[event_id("PA2")])
    result = resolve(rv, states, store)
    assert result[(POWER_LEVELS, "")] == event_id("PB")
    assert result[(TOPIC, "")] == event_id("T3")


def test_unknown_conflicted_events_are_skipped() -> None:
    graph = built("10", "topic_basic")
    states = [dict(graph.state_after[n]) for n in graph.prev_nodes["END"]]
    states[0][("m.room.name", "")] = "$UNKNOWN"
    states[1][("m.room.name", "")] = "$ALSO_UNKNOWN"
    result = resolve(get_room_version("10"), states, graph.store)
    assert ("m.room.name", "") not in result
    assert result[(POWER_LEVELS, "")] == event_id("PA2")


@pytest.mark.parametrize("version", ALL_V2_VERSIONS)
@pytest.mark.parametrize("scenario", CLASSIC_SCENARIOS, ids=lambda s: s.name)
def test_store_auth_chain_difference_gives_same_result(scenario: Scenario, version: str) -> None:
    graph = built(version, scenario.name)
    states = [graph.state_after[n] for n in graph.prev_nodes["END"]]
    store = FakeStateResStoreWithDifference(graph.store.events.values())
    assert isinstance(store, AuthChainDifferenceStore)
    rv = get_room_version(version)
    assert resolve(rv, states, store) == resolve(rv, states, graph.store)
    assert any(call[0] == "get_auth_chain_difference" for call in store.calls)


def test_fakes_satisfy_protocol() -> None:
    store: StateResStore = FakeStateResStore()
    assert not isinstance(store, AuthChainDifferenceStore)


# -------------------------------------------------------------- building blocks


def test_separate_v2() -> None:
    a = {("t", ""): "$1", ("u", ""): "$2", ("only_a", ""): "$3"}
    b = {("t", ""): "$1", ("u", ""): "$4"}
    unconflicted, conflicted = separate([a, b])
    assert unconflicted == {("t", ""): "$1"}
    assert conflicted == {("u", ""): {"$2", "$4"}, ("only_a", ""): {"$3"}}


def test_is_power_event() -> None:
    rv = get_room_version("10")

    def ev(type: str, sender: str, state_key: str | None, content: dict[str, str]) -> bool:
        return is_power_event(
            make_event(rv, "$X", type=type, sender=sender, state_key=state_key, content=content)
        )

    assert ev(POWER_LEVELS, ALICE, "", {})
    assert ev("m.room.join_rules", ALICE, "", {})
    assert ev("m.room.create", ALICE, "", {})
    assert ev("m.room.member", ALICE, BOB, {"membership": "ban"})
    assert ev("m.room.member", ALICE, BOB, {"membership": "leave"})  # kick
    assert not ev("m.room.member", BOB, BOB, {"membership": "leave"})  # own leave
    assert not ev("m.room.member", ALICE, BOB, {"membership": "invite"})
    assert not ev(TOPIC, ALICE, "", {})
    assert not ev(POWER_LEVELS, ALICE, "x", {})


def _chain_store(version: str, spec: dict[str, tuple[str, list[str], int]]) -> FakeStateResStore:
    """Events ``node → (sender, auth nodes, ts)``: all power levels events unless named T*."""
    rv = get_room_version(version)
    store = FakeStateResStore()
    for node, (sender, auth, ts) in spec.items():
        store.add(
            make_event(
                rv,
                event_id(node),
                type=TOPIC if node.startswith("T") else POWER_LEVELS,
                sender=sender,
                state_key="",
                content={"users": {ALICE: 100, BOB: 50}},
                auth_events=[event_id(a) for a in auth],
                ts=ts,
            )
        )
    return store


def test_reverse_topological_power_sort_order() -> None:
    # P1 ← P2 ← P4 and P1 ← P3: P2 and P3 are both ready after P1; Alice (100) beats Bob
    # (50) although Bob's P3 is older. Then P3 and P4 (both Bob's): the older first.
    store = _chain_store(
        "10",
        {
            "P1": (ALICE, [], 0),
            "P2": (ALICE, ["P1"], 5),
            "P3": (BOB, ["P1"], 1),
            "P4": (BOB, ["P2"], 2),
        },
    )
    cache = EventCache(get_room_version("10"), store)
    ids = [event_id(n) for n in ("P4", "P3", "P2", "P1")]
    cache.fetch(ids)
    out = reverse_topological_power_sort(get_room_version("10"), ids[:2], set(ids), cache)
    assert out == ["$P1", "$P2", "$P3", "$P4"]


def test_reverse_topological_power_sort_ties() -> None:
    # Same power: older first; same power and timestamp: smaller event ID first.
    store = _chain_store(
        "10",
        {
            "P1": (ALICE, [], 0),
            "PB": (ALICE, ["P1"], 3),
            "PA": (ALICE, ["P1"], 3),
            "PC": (ALICE, ["P1"], 2),
        },
    )
    cache = EventCache(get_room_version("10"), store)
    ids = {"$P1", "$PA", "$PB", "$PC"}
    cache.fetch(ids)
    out = reverse_topological_power_sort(get_room_version("10"), sorted(ids), ids, cache)
    assert out == ["$P1", "$PC", "$PA", "$PB"]


def test_mainline_sort() -> None:
    # Mainline P3 → P2 → P1. T_a cites P1, T_b cites P3, T_c cites PX (off the mainline,
    # citing P2), T_d cites nothing: T_d, T_a, T_c, T_b.
    store = _chain_store(
        "10",
        {
            "P1": (ALICE, [], 0),
            "P2": (ALICE, ["P1"], 1),
            "P3": (ALICE, ["P2"], 2),
            "PX": (ALICE, ["P2"], 3),
            "Ta": (ALICE, ["P1"], 9),
            "Tb": (ALICE, ["P3"], 4),
            "Tc": (ALICE, ["PX"], 5),
            "Td": (ALICE, [], 10),
        },
    )
    cache = EventCache(get_room_version("10"), store)
    out = mainline_sort(["$Tb", "$Tc", "$Ta", "$Td"], "$P3", cache)
    assert out == ["$Td", "$Ta", "$Tc", "$Tb"]
    assert mainline_sort([], "$P3", cache) == []


def test_conflicted_state_subgraph() -> None:
    # C1 → M → C2 → R, C1 → S (S reaches no conflicted event), C3 alone.
    store = _chain_store(
        "12",
        {
            "R": (ALICE, [], 0),
            "C2": (ALICE, ["R"], 1),
            "M": (ALICE, ["C2"], 2),
            "S": (ALICE, [], 3),
            "C1": (ALICE, ["M", "S"], 4),
            "C3": (ALICE, [], 5),
        },
    )
    # v12 events: the implied create ($CREATE from the room ID) is unknown here: ignored.
    cache = EventCache(get_room_version("12"), store)
    sub = conflicted_state_subgraph({"$C1", "$C2", "$C3"}, cache)
    assert sub == {"$C1", "$M", "$C2", "$C3"}


def test_auth_difference_includes_state_events_themselves() -> None:
    graph = built("10", "topic_reset")
    states = [graph.state_after[n] for n in graph.prev_nodes["END"]]
    unconflicted, _ = separate(states)
    diff = auth_difference(states, unconflicted, graph.store)
    # One state has T1 as its topic, the other PA, T2 and MB on top of START's state: each
    # set's own events count as part of its full auth chain.
    assert diff == {"$PA", "$MB", "$T1", "$T2"}
    naive = FakeStateResStoreWithDifference(graph.store.events.values())
    assert diff == naive.get_auth_chain_difference([set(s.values()) for s in states])


# ------------------------------------------------------------ order independence


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from(["1", "2", "10", "11", "12"]),
    name=st.sampled_from([s.name for s in [*CLASSIC_SCENARIOS, *EXTRA_SCENARIOS]]),
    k=st.integers(min_value=2, max_value=4),
    rnd=st.randoms(use_true_random=False),
)
def test_result_independent_of_input_order(
    version: str, name: str, k: int, rnd: random.Random
) -> None:
    """Any choice of 2-4 states of a scenario resolves the same whatever the order of the
    state sets, of their entries and of the store's events."""
    graph = built(version, name)
    rv = get_room_version(version)
    nodes = sorted(graph.state_after)
    chosen = rnd.sample(nodes, k)
    states = [graph.state_after[n] for n in chosen]
    baseline = resolve(rv, states, graph.store)

    def shuffled_dict(d: dict[StateKey, str]) -> dict[StateKey, str]:
        items = list(d.items())
        rnd.shuffle(items)
        return dict(items)

    permuted = [shuffled_dict(s) for s in states]
    rnd.shuffle(permuted)
    events = list(graph.store.events.values())
    rnd.shuffle(events)
    store = FakeStateResStore(events)
    assert resolve(rv, permuted, store) == baseline
    # Duplicating a state set changes nothing either.
    assert resolve(rv, [*permuted, permuted[0]], store) == baseline


BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_stateres.py"


@pytest.mark.slow
@pytest.mark.parametrize("version", ["1", "11", "12"])
def test_result_independent_of_hash_seed(version: str) -> None:
    outputs = set()
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        out = subprocess.run(
            [
                sys.executable,
                str(BENCH),
                "--members",
                "60",
                "--events",
                "800",
                "--room-version",
                version,
                "--repeat",
                "1",
                "--digest",
            ],
            capture_output=True,
            text=True,
            env=env,
            check=True,
            cwd=BENCH.parents[1],
        ).stdout
        outputs.add(out.strip().splitlines()[-1])
    assert len(outputs) == 1
