"""State resolution v2 (room versions 2-11) and v2.1 (room version 12).

Spec: rooms/fragments/v2-state-res.md; rooms/v12.md › State resolution (v2.1).

Outline of :func:`resolve_v2`, numbered as in the spec's Algorithm section:

0. Split the state sets into the *unconflicted state map* (keys present in every set with
   the same event) and the *conflicted state set*. Nothing conflicted: done. Compute the
   *full conflicted set* = conflicted set ∪ *auth difference* (∪ the *conflicted state
   subgraph* in v2.1). Events the store does not know are dropped.
1. Take the *power events* of the full conflicted set plus their auth chain within the full
   conflicted set, and sort them by the *reverse topological power ordering* (Kahn's
   algorithm over auth edges, ties broken by sender power level desc, ``origin_server_ts``,
   event ID).
2. *Iterative auth checks* of those, starting from the unconflicted state (v2) or from an
   empty state (v2.1).
3. Sort the remaining events by *mainline ordering* on the power levels event the previous
   step resolved.
4. Iterative auth checks of those, on top of the partial state.
5. Lay the unconflicted state map over the result.

Conventions shared with Synapse and Ruma where the spec leaves room (both agree):

* The full auth chain of a state set includes the set's own events.
* ``m.room.create`` counts as a power event, next to power levels, join rules and kicks/bans.
* The graph for step 1 follows auth edges only through events of the full conflicted set.
* A previously rejected event is never admitted by the iterative auth checks, and rejected
  events are never used as auth events; events that fail the checks are dropped.
* An event's sender power level for step 1 is read from the power levels and create events
  among the event's own ``auth_events``.

Cost: every step is linear or ``n log n`` in the full conflicted set (and, for the auth
difference and the v2.1 subgraph, in the auth chains involved); power levels and mainline
positions are memoised per power levels event.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet

from federation.core.auth_rules import auth_types_for_event, check_auth_rules, get_power_level
from federation.core.errors import AuthError
from federation.core.events import Event, StateKey
from federation.core.room_versions import RoomVersion, StateResAlgorithm
from federation.core.stateres._common import (
    CREATE,
    JOIN_RULES,
    MEMBER,
    POWER_LEVELS,
    POWER_LEVELS_KEY,
    EventCache,
)
from federation.core.stateres.protocol import AuthChainDifferenceStore, StateResStore

__all__ = ["resolve_v2"]


def resolve_v2(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    store: StateResStore,
) -> dict[StateKey, str]:
    """Resolve ``state_sets`` with state resolution v2, or v2.1 for room version 12.

    Args:
        room_version: a room version whose ``state_res`` is V2 or V2_1.
        state_sets: the states to resolve: (type, state key) → event ID.
        store: where events, rejection flags and auth chains come from.

    Returns:
        The resolved state.
    """
    v2_1 = room_version.state_res is StateResAlgorithm.V2_1
    if not state_sets:
        return {}
    unconflicted, conflicted = separate(state_sets)
    if not conflicted:
        return unconflicted

    conflicted_ids: set[str] = set().union(*conflicted.values())
    full_conflicted = conflicted_ids | auth_difference(state_sets, unconflicted, store)

    cache = EventCache(room_version, store)
    if v2_1:
        full_conflicted |= conflicted_state_subgraph(conflicted_ids, cache)
    cache.fetch(full_conflicted)
    full_set = set(cache.known(full_conflicted))
    # Auth events of the full conflicted set: read by the power levels of step 1 and by the
    # iterative auth checks. One batch.
    cache.fetch_auth_events(full_set)

    power_events = [eid for eid in full_set if is_power_event(cache[eid])]
    sorted_power = reverse_topological_power_sort(room_version, power_events, full_set, cache)

    base: dict[StateKey, str] = {} if v2_1 else dict(unconflicted)
    resolved = iterative_auth_checks(room_version, sorted_power, base, cache)

    picked = set(sorted_power)
    leftover = [eid for eid in full_set if eid not in picked]
    leftover = mainline_sort(leftover, resolved.get(POWER_LEVELS_KEY), cache)
    resolved = iterative_auth_checks(room_version, leftover, resolved, cache)

    resolved.update(unconflicted)
    return resolved


def separate(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Split the state sets into the unconflicted state map and the conflicted state set.

    A key is unconflicted only if every state set has it, with the same event.

    Returns:
        ``(unconflicted, conflicted)``: conflicted maps each conflicted key to its events.
    """
    first, rest = state_sets[0], state_sets[1:]
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for key, eid in first.items():
        if all(s.get(key) == eid for s in rest):
            unconflicted[key] = eid
    for s in state_sets:
        for key, eid in s.items():
            if key not in unconflicted:
                conflicted.setdefault(key, set()).add(eid)
    return unconflicted, conflicted


def auth_difference(
    state_sets: Sequence[Mapping[StateKey, str]],
    unconflicted: Mapping[StateKey, str],
    store: StateResStore,
) -> set[str]:
    """The auth difference: events in some but not all full auth chains of the state sets.

    The full auth chain ``C_i`` of a state set is its events plus their auth chains. The
    unconflicted events are in every set, so with ``U`` their full auth chain,
    ``C_i = U ∪ D_i`` where ``D_i`` is the full auth chain of set ``i``'s other events, and
    ``∪C_i − ∩C_i = (∪D_i − ∩D_i) − U``: the (large) chain of the unconflicted state is
    walked once, not once per set.
    """
    if isinstance(store, AuthChainDifferenceStore):
        return set(store.get_auth_chain_difference([set(s.values()) for s in state_sets]))
    unconflicted_ids = set(unconflicted.values())
    common = unconflicted_ids | store.get_auth_chain(unconflicted_ids)
    chains: list[set[str]] = []
    for s in state_sets:
        own = {eid for eid in s.values() if eid not in common}
        chains.append(own | set(store.get_auth_chain(own)))
    union = set().union(*chains)
    intersection = set(chains[0]).intersection(*chains[1:])
    return union - intersection - common


def conflicted_state_subgraph(conflicted_ids: AbstractSet[str], cache: EventCache) -> set[str]:
    """v2.1: every event on an auth-event path between two conflicted events, ends included.

    An event is on such a path iff it is in the auth chain of a conflicted event (or is
    one) and a conflicted event is in *its* auth chain (or it is one). So: take the auth
    chain ``A`` of the conflicted events, then walk ``A`` forwards (from an event to those
    citing it) starting at the conflicted events.
    """
    chain = set(cache.store.get_auth_chain(conflicted_ids)) | set(conflicted_ids)
    cache.fetch(chain)
    cited_by: dict[str, list[str]] = {}
    for eid in chain:
        event = cache.get(eid)
        if event is None:
            continue
        for aid in cache.auth_event_ids(event):
            if aid in chain:
                cited_by.setdefault(aid, []).append(eid)
    found = {eid for eid in conflicted_ids if eid in chain}
    todo = list(found)
    while todo:
        for citing in cited_by.get(todo.pop(), ()):
            if citing not in found:
                found.add(citing)
                todo.append(citing)
    return found


def is_power_event(event: Event) -> bool:
    """True for power levels, join rules and create events, and for kicks and bans."""
    etype = event.type
    if etype in (POWER_LEVELS, JOIN_RULES, CREATE):
        return event.state_key == ""
    if etype == MEMBER and event.membership in ("leave", "ban"):
        return event.state_key is not None and event.sender != event.state_key
    return False


def reverse_topological_power_sort(
    room_version: RoomVersion,
    event_ids: Iterable[str],
    full_conflicted: AbstractSet[str],
    cache: EventCache,
) -> list[str]:
    """Sort ``event_ids`` and their auth chain within ``full_conflicted``, earliest first.

    Kahn's algorithm over auth edges; among the events whose auth events are all placed,
    take the smallest by (sender power level descending, ``origin_server_ts``, event ID).
    """
    # graph: event → its auth events within the full conflicted set.
    graph: dict[str, set[str]] = {}
    todo = list(event_ids)
    while todo:
        eid = todo.pop()
        if eid in graph:
            continue
        edges = graph[eid] = set()
        for aid in cache.auth_event_ids(cache[eid]):
            if aid in full_conflicted:
                edges.add(aid)
                if aid not in graph:
                    todo.append(aid)

    levels = _SenderPowerLevels(room_version, cache)
    cited_by: dict[str, list[str]] = {eid: [] for eid in graph}
    pending: dict[str, int] = {}
    ready: list[tuple[int | float, int, str]] = []
    for eid, edges in graph.items():
        pending[eid] = len(edges)
        for aid in edges:
            cited_by[aid].append(eid)
        if not edges:
            ready.append(_power_order(cache[eid], levels))
    heapq.heapify(ready)

    out: list[str] = []
    while ready:
        eid = heapq.heappop(ready)[2]
        out.append(eid)
        for citing in cited_by[eid]:
            pending[citing] -= 1
            if pending[citing] == 0:
                heapq.heappush(ready, _power_order(cache[citing], levels))
    return out


def _power_order(event: Event, levels: _SenderPowerLevels) -> tuple[int | float, int, str]:
    return (-levels.of(event), event.origin_server_ts, event.event_id)


class _SenderPowerLevels:
    """The power level of an event's sender according to the event's own auth events.

    Memoised on (power levels event, create event, sender): most events of a conflict cite
    one of a handful of power levels events.
    """

    def __init__(self, room_version: RoomVersion, cache: EventCache) -> None:
        self._room_version = room_version
        self._cache = cache
        self._memo: dict[tuple[str | None, str | None, str], int | float] = {}

    def of(self, event: Event) -> int | float:
        auth = self._cache.auth_events_by_key(event, skip_rejected=False)
        pl = auth.get(POWER_LEVELS_KEY)
        create = auth.get((CREATE, ""))
        sender = event.sender
        memo_key = (
            pl.event_id if pl is not None else None,
            create.event_id if create is not None else None,
            sender,
        )
        level = self._memo.get(memo_key)
        if level is None:
            level = self._memo[memo_key] = get_power_level(self._room_version, auth, sender)
        return level


def iterative_auth_checks(
    room_version: RoomVersion,
    event_ids: Sequence[str],
    base_state: Mapping[StateKey, str],
    cache: EventCache,
) -> dict[StateKey, str]:
    """Apply ``event_ids`` in order to a copy of ``base_state``, each if the auth rules allow.

    Each event is checked against its own (non-rejected) auth events, overridden by the
    state resolved so far for the keys the auth rules select for it. Rejected events and
    events that fail the checks are left out.
    """
    state = dict(base_state)
    # The state events the checks will read: one batch.
    cache.fetch(state.values())
    for eid in event_ids:
        event = cache[eid]
        if cache.is_rejected(eid):
            continue
        state_key = event.state_key
        if state_key is None:
            continue
        auth_state = cache.auth_events_by_key(event, skip_rejected=True)
        for key in auth_types_for_event(
            room_version, event.type, state_key, event.sender, event.content
        ):
            current = state.get(key)
            if current is None:
                continue
            current_event = cache.get(current)
            if current_event is not None and not cache.is_rejected(current):
                auth_state[key] = current_event
        try:
            check_auth_rules(room_version, event, auth_state)
        except AuthError:
            continue
        state[(event.type, state_key)] = eid
    return state


def mainline_sort(
    event_ids: Sequence[str], power_levels_id: str | None, cache: EventCache
) -> list[str]:
    """Sort ``event_ids`` by mainline ordering on the power levels event ``power_levels_id``.

    Key: (mainline position, ``origin_server_ts``, event ID), where the position counts
    from the oldest power levels event of the mainline (1) up to ``power_levels_id``, and is
    0 for events whose power levels chain never meets the mainline: those sort first.
    """
    if not event_ids:
        return []
    mainline: list[str] = []
    pl_id = power_levels_id
    while pl_id is not None:
        mainline.append(pl_id)
        pl_event = cache.get(pl_id)
        parent = cache.power_levels_auth_event(pl_event) if pl_event is not None else None
        pl_id = parent.event_id if parent is not None else None
    # Position of each power levels event seen so far (mainline or not), memoised.
    position: dict[str, int] = {eid: i for i, eid in enumerate(reversed(mainline), start=1)}

    def position_of(event: Event) -> int:
        path: list[str] = []
        pl = cache.power_levels_auth_event(event)
        found = 0
        while pl is not None:
            known = position.get(pl.event_id)
            if known is not None:
                found = known
                break
            path.append(pl.event_id)
            pl = cache.power_levels_auth_event(pl)
        for eid in path:
            position[eid] = found
        return found

    keyed = []
    for eid in event_ids:
        event = cache[eid]
        keyed.append((position_of(event), event.origin_server_ts, eid))
    keyed.sort()
    return [k[2] for k in keyed]
