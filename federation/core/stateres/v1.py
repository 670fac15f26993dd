"""State resolution v1 (room version 1).

Spec: rooms/v1.md › State resolution. Room version 1 is known to reset state; it is here so
we can take part in old rooms, and follows what every server deployed does (Synapse's
``state/v1.py``), which is more precise than the spec text in a few places:

* A key is *conflicted* only if the state sets hold different events for it; a key some
  sets lack is not a conflict.
* Conflicted events the store does not know are dropped; a conflict left with one event is
  no conflict.
* The state the conflicted events are checked against (*R*) starts as the unconflicted
  entries for the keys the auth rules select for any conflicted event, then grows with
  each resolved pass: power levels, then join rules, then memberships (each key resolved
  separately against the state *before* its pass), then everything else.
* Power levels, join rules and membership conflicts: sort by ascending ``depth`` then
  descending ``sha1(event_id)``, take the first, then each next one while it passes the
  auth rules against *R* plus the one taken before; stop at the first that fails.
* Other conflicts: in order of descending ``depth`` then ascending ``sha1(event_id)``, the
  first that passes against *R*; if none does, the last.

Rejection flags play no part in v1.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

from federation.core.auth_rules import auth_types_for_event, check_auth_rules
from federation.core.errors import AuthError
from federation.core.events import Event, StateKey
from federation.core.room_versions import RoomVersion
from federation.core.stateres._common import JOIN_RULES, MEMBER, POWER_LEVELS_KEY, EventCache
from federation.core.stateres.protocol import StateResStore

__all__ = ["resolve_v1"]


def resolve_v1(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    store: StateResStore,
) -> dict[StateKey, str]:
    """Resolve ``state_sets`` with the room version 1 algorithm.

    Args:
        room_version: a room version whose ``state_res`` is V1.
        state_sets: the states to resolve: (type, state key) → event ID.
        store: where the events come from.

    Returns:
        The resolved state.
    """
    if not state_sets:
        return {}
    unconflicted, conflicted = separate(state_sets)
    if not conflicted:
        return unconflicted

    cache = EventCache(room_version, store)
    cache.fetch(eid for ids in conflicted.values() for eid in ids)

    # R starts from the unconflicted entries the conflicted events' auth rules ask for.
    auth_keys: set[StateKey] = set()
    for ids in conflicted.values():
        for eid in ids:
            event = cache.get(eid)
            if event is not None:
                auth_keys.update(_auth_types(room_version, event))
    cache.fetch(unconflicted[k] for k in auth_keys if k in unconflicted)
    auth_state: dict[StateKey, Event] = {}
    for key in auth_keys:
        unconflicted_id = unconflicted.get(key)
        auth_event = cache.get(unconflicted_id) if unconflicted_id is not None else None
        if auth_event is not None:
            auth_state[key] = auth_event

    conflicted_events: dict[StateKey, list[Event]] = {}
    for key, ids in conflicted.items():
        events = [ev for eid in ids if (ev := cache.get(eid)) is not None]
        if len(events) > 1:
            conflicted_events[key] = events
        elif events:
            unconflicted[key] = events[0].event_id

    resolved: dict[StateKey, Event] = {}
    if POWER_LEVELS_KEY in conflicted_events:
        resolved[POWER_LEVELS_KEY] = _resolve_auth_events(
            room_version, conflicted_events[POWER_LEVELS_KEY], auth_state
        )
    for pass_type in (JOIN_RULES, MEMBER):
        auth_state.update(resolved)
        for key, events in conflicted_events.items():
            if key[0] == pass_type:
                resolved[key] = _resolve_auth_events(room_version, events, auth_state)
    auth_state.update(resolved)
    for key, events in conflicted_events.items():
        if key not in resolved:
            resolved[key] = _resolve_normal_events(room_version, events, auth_state)

    result = unconflicted
    for key, event in resolved.items():
        result[key] = event.event_id
    return result


def separate(
    state_sets: Sequence[Mapping[StateKey, str]],
) -> tuple[dict[StateKey, str], dict[StateKey, set[str]]]:
    """Split into unconflicted state and conflicts (keys with more than one event)."""
    seen: dict[StateKey, set[str]] = {}
    for s in state_sets:
        for key, eid in s.items():
            seen.setdefault(key, set()).add(eid)
    unconflicted: dict[StateKey, str] = {}
    conflicted: dict[StateKey, set[str]] = {}
    for key, ids in seen.items():
        if len(ids) == 1:
            unconflicted[key] = next(iter(ids))
        else:
            conflicted[key] = ids
    return unconflicted, conflicted


def _auth_types(room_version: RoomVersion, event: Event) -> list[StateKey]:
    return auth_types_for_event(
        room_version, event.type, event.state_key, event.sender, event.content
    )


def _sha1(event_id: str) -> str:
    return hashlib.sha1(event_id.encode("utf-8")).hexdigest()


def _newest_first(events: list[Event]) -> list[Event]:
    """Descending ``depth``, then ascending ``sha1(event_id)`` (then event ID, for ties)."""
    return sorted(events, key=lambda e: (-e.depth, _sha1(e.event_id), e.event_id))


def _passes(room_version: RoomVersion, event: Event, auth_state: Mapping[StateKey, Event]) -> bool:
    try:
        check_auth_rules(room_version, event, auth_state)
    except AuthError:
        return False
    return True


def _resolve_auth_events(
    room_version: RoomVersion, events: list[Event], auth_state: Mapping[StateKey, Event]
) -> Event:
    """Power levels, join rules or one membership: oldest first, while each next one passes."""
    ordered = list(reversed(_newest_first(events)))
    keys = {key for event in events for key in _auth_types(room_version, event)}
    state = {key: auth_state[key] for key in keys if key in auth_state}
    prev = ordered[0]
    for event in ordered[1:]:
        prev_key = prev.state_tuple
        assert prev_key is not None  # conflicted events are state events
        state[prev_key] = prev
        if not _passes(room_version, event, state):
            break
        prev = event
    return prev


def _resolve_normal_events(
    room_version: RoomVersion, events: list[Event], auth_state: Mapping[StateKey, Event]
) -> Event:
    """Any other key: the newest event that passes the auth rules, else the oldest."""
    ordered = _newest_first(events)
    for event in ordered:
        if _passes(room_version, event, auth_state):
            return event
    return ordered[-1]
