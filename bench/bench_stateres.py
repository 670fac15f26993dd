"""Benchmark state resolution on a large forked room.

Builds a room with ``--members`` members and about ``--events`` events: a linear history
(joins, messages, power level and topic changes), then two forks of about
``--fork-events`` events each that conflict on power levels, join rules, memberships
(bans, kicks, leaves, new joins, and ``--profile-changes`` of the fork's events being
displayname changes) and the topic. Every generated state event is checked by
the auth rules against its own auth events while building, so the forks are valid
histories. Then it times ``federation.core.stateres.resolve`` on the two fork tips.

Run from the repository root:

    .venv/bin/python bench/bench_stateres.py                        # v2, v2.1 and v1
    .venv/bin/python bench/bench_stateres.py --room-version 12 --repeat 20
    .venv/bin/python bench/bench_stateres.py --profile              # cProfile of one run

``--digest`` prints a hash of the resolved state as the last line (the tests compare it
across ``PYTHONHASHSEED`` values).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import pstats
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from federation.core.auth_rules import auth_types_for_event, check_auth_rules
from federation.core.events import Event, StateKey
from federation.core.room_versions import RoomVersion, get_room_version
from federation.core.stateres import resolve
from tests.fakes import FakeStateResStore
from tests.federation.stateres_graphs import make_event, room_id_for

ADMIN = "@admin:example.com"


def user(i: int) -> str:
    return f"@u{i}:server{i % 7}.example"


class Branch:
    """One line of history: its tip, depth and state."""

    def __init__(self, tip: str | None, depth: int, state: dict[StateKey, str]) -> None:
        self.tip = tip
        self.depth = depth
        self.state = state

    def fork(self) -> Branch:
        return Branch(self.tip, self.depth, dict(self.state))


class RoomGenerator:
    def __init__(self, room_version: RoomVersion, seed: int) -> None:
        self.rv = room_version
        self.rnd = random.Random(seed)
        self.store = FakeStateResStore()
        self.ts = 1_700_000_000_000
        self.n = 0

    def emit(
        self,
        branch: Branch,
        type: str,
        sender: str,
        content: dict[str, Any],
        state_key: str | None = None,
    ) -> Event:
        auth_ids = [
            branch.state[k]
            for k in auth_types_for_event(self.rv, type, state_key, sender, content)
            if k in branch.state
        ]
        eid = "$CREATE" if type == "m.room.create" else f"$e{self.n}"
        self.n += 1
        self.ts += self.rnd.randint(1, 5000)
        event = make_event(
            self.rv,
            eid,
            type=type,
            sender=sender,
            content=content,
            state_key=state_key,
            prev_events=[branch.tip] if branch.tip else [],
            auth_events=auth_ids,
            ts=self.ts,
            depth=branch.depth + 1,
            room_id=room_id_for(self.rv),
        )
        if state_key is not None:
            auth_state = {}
            for aid in [*auth_ids, *(["$CREATE"] if type != "m.room.create" else [])]:
                aev = self.store.events[aid]
                assert aev.state_tuple is not None
                auth_state[aev.state_tuple] = aev
            check_auth_rules(self.rv, event, auth_state)  # the generator makes valid events
            branch.state[(type, state_key)] = eid
        self.store.add(event)
        branch.tip = eid
        branch.depth += 1
        return event

    # Helpers for the usual events.
    def join(self, b: Branch, u: str) -> None:
        self.emit(b, "m.room.member", u, {"membership": "join"}, u)

    def message(self, b: Branch, u: str) -> None:
        self.emit(b, "m.room.message", u, {"msgtype": "m.text", "body": f"hi {self.n}"})

    def power_levels(self, b: Branch, sender: str, users: dict[str, int]) -> None:
        listed = {
            u: lvl for u, lvl in users.items() if not (self.rv.privileged_creators and u == ADMIN)
        }
        self.emit(b, "m.room.power_levels", sender, {"users": listed, "users_default": 0}, "")


def build_room(
    rv: RoomVersion,
    members: int,
    events: int,
    fork_events: int,
    seed: int,
    profile_changes: float = 0.2,
) -> tuple[FakeStateResStore, list[dict[StateKey, str]]]:
    g = RoomGenerator(rv, seed)
    rnd = g.rnd
    main = Branch(None, 0, {})
    create_content: dict[str, Any] = {"room_version": rv.identifier}
    if not rv.implicit_room_creator:
        create_content["creator"] = ADMIN
    g.emit(main, "m.room.create", ADMIN, create_content, "")
    g.join(main, ADMIN)
    mods = [user(i) for i in range(1, 6)]
    levels: dict[str, int] = {ADMIN: 100, **dict.fromkeys(mods, 50)}
    g.power_levels(main, ADMIN, levels)
    g.emit(main, "m.room.join_rules", ADMIN, {"join_rule": "public"}, "")

    # Linear history: joins interleaved with messages, the odd promotion and topic.
    joined = [ADMIN]
    linear_budget = events - 2 * fork_events
    late_joiners = [user(i) for i in range(members - members // 10, members)]
    early = [user(i) for i in range(len(mods) + 1, members - members // 10)]
    for u in mods:
        g.join(main, u)
        joined.append(u)
    early.reverse()
    while g.n < linear_budget:
        if early and rnd.random() < len(early) / max(1, linear_budget - g.n):
            u = early.pop()
            g.join(main, u)
            joined.append(u)
            continue
        r = rnd.random()
        if r < 0.01 and len(joined) > 6:
            promoted = rnd.choice(joined[6:])
            levels = {**levels, promoted: 10}
            g.power_levels(main, ADMIN, levels)
        elif r < 0.02:
            g.emit(main, "m.room.topic", rnd.choice(mods), {"topic": f"topic {g.n}"}, "")
        else:
            g.message(main, rnd.choice(joined))

    # Two forks from here.
    a, b = main.fork(), main.fork()
    demoted = mods[0]
    a_levels = {**levels, demoted: 0}
    b_levels = {**levels, user(members // 2): 50}
    victims = rnd.sample([u for u in joined[10:] if u != user(members // 2)], 40)
    kicked, banned = victims[:20], victims[20:]
    a_joined, b_joined = list(joined), list(joined)
    a_leavers = rnd.sample(joined[10:], 20)

    start = g.n
    plan_a: list[tuple[float, str, str]] = (
        [(0.05, "pl", "")]
        + [(0.3, "join_rules", "")]
        + [(rnd.random(), "kick", u) for u in kicked]
        + [(rnd.random(), "leave", u) for u in a_leavers if u not in victims]
        + [(rnd.random(), "topic", "")]
    )
    plan_b: list[tuple[float, str, str]] = (
        [(rnd.random(), "ban", u) for u in banned]
        + [(0.1, "pl", "")]
        + [(rnd.random(), "join", u) for u in late_joiners]
        + [(rnd.random(), "topic", "")]
    )
    plan_a.sort()
    plan_b.sort()
    for branch, plan, side_joined, side in ((a, plan_a, a_joined, "a"), (b, plan_b, b_joined, "b")):
        budget = start + fork_events if side == "a" else g.n + fork_events
        slots = sorted(rnd.sample(range(fork_events), len(plan)))
        slot_i = 0
        for i in range(fork_events):
            if g.n >= budget:
                break
            if slot_i < len(plan) and slots[slot_i] == i:
                _, what, who = plan[slot_i]
                slot_i += 1
                if what == "pl":
                    g.power_levels(
                        branch,
                        ADMIN if side == "a" else demoted,
                        a_levels if side == "a" else b_levels,
                    )
                elif what == "join_rules":
                    g.emit(branch, "m.room.join_rules", ADMIN, {"join_rule": "invite"}, "")
                elif what == "kick":
                    g.emit(branch, "m.room.member", mods[1], {"membership": "leave"}, who)
                    side_joined.remove(who)
                elif what == "ban":
                    g.emit(branch, "m.room.member", demoted, {"membership": "ban"}, who)
                    side_joined.remove(who)
                elif what == "leave":
                    g.emit(branch, "m.room.member", who, {"membership": "leave"}, who)
                    side_joined.remove(who)
                elif what == "join":
                    g.join(branch, who)
                    side_joined.append(who)
                elif what == "topic":
                    sender = ADMIN if side == "a" else demoted
                    g.emit(branch, "m.room.topic", sender, {"topic": f"{side} {g.n}"}, "")
            elif rnd.random() < profile_changes:
                u = rnd.choice(side_joined)
                content = {"membership": "join", "displayname": f"{u[1:4]} {g.n}"}
                g.emit(branch, "m.room.member", u, content, u)
            else:
                g.message(branch, rnd.choice(side_joined))
    return g.store, [a.state, b.state]


def digest(state: dict[StateKey, str]) -> str:
    h = hashlib.sha256()
    for (t, k), v in sorted(state.items()):
        h.update(f"{t}\0{k}\0{v}\n".encode())
    return h.hexdigest()


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--members", type=int, default=1000)
    p.add_argument("--events", type=int, default=10_000)
    p.add_argument(
        "--fork-events", type=int, default=None, help="events per fork (default events/4)"
    )
    p.add_argument("--room-version", action="append", help="repeatable; default 11, 12 and 1")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--profile-changes",
        type=float,
        default=0.2,
        help="share of fork events that are displayname changes (conflicting members)",
    )
    p.add_argument("--profile", action="store_true")
    p.add_argument("--digest", action="store_true")
    args = p.parse_args()
    fork_events = args.fork_events or args.events // 4

    for version in args.room_version or ["11", "12", "1"]:
        rv = get_room_version(version)
        t0 = time.perf_counter()
        store, states = build_room(
            rv, args.members, args.events, fork_events, args.seed, args.profile_changes
        )
        build_s = time.perf_counter() - t0
        conflicted = sum(
            1 for k in states[0].keys() | states[1].keys() if states[0].get(k) != states[1].get(k)
        )
        times = []
        result: dict[StateKey, str] = {}
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            result = resolve(rv, states, store)
            times.append((time.perf_counter() - t0) * 1000)
        members_joined = sum(
            1
            for (t, _k), eid in result.items()
            if t == "m.room.member" and store.events[eid].membership == "join"
        )
        print(
            f"room v{version} ({rv.state_res.value}): {len(store.events)} events, "
            f"{len(states[0])}/{len(states[1])} state entries, {conflicted} conflicted keys; "
            f"resolve median {statistics.median(times):.1f} ms, min {min(times):.1f} ms "
            f"over {len(times)} runs; {members_joined} joined after; build {build_s:.1f} s"
        )
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            resolve(rv, states, store)
            prof.disable()
            pstats.Stats(prof).sort_stats("cumulative").print_stats(18)
        if args.digest:
            print(digest(result))


if __name__ == "__main__":
    main()
