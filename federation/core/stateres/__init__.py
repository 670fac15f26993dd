"""State resolution: the state of a room where its DAG forks.

Spec: rooms/v1.md › State resolution (v1), rooms/fragments/v2-state-res.md (v2, room
versions 2-11), rooms/v12.md › State resolution (v2.1, room version 12).

:func:`resolve` is pure and synchronous: it reads the event graph through a
:class:`StateResStore` (storage implements it over events it has pre-fetched; an in-memory
fake lives in ``tests/fakes.py``) and calls ``federation.core.auth_rules`` for every auth
check. The same inputs give the same output whatever the order of the state sets, of their
entries, or of the store's answers: every ordering decision is made by a total order on
event fields, never by set or dict iteration order.

Layering (each module imports only those above it)::

    protocol    StateResStore, AuthChainDifferenceStore, StateMap
    _common     EventCache over a store, event type constants
    v1          room version 1
    v2          room versions 2-12 (v2.1 for 12 is two flags inside)
    __init__    resolve(): dispatch on RoomVersion.state_res
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from federation.core.events import StateKey
from federation.core.room_versions import RoomVersion, StateResAlgorithm
from federation.core.stateres.protocol import AuthChainDifferenceStore, StateMap, StateResStore
from federation.core.stateres.v1 import resolve_v1
from federation.core.stateres.v2 import resolve_v2

__all__ = ["AuthChainDifferenceStore", "StateMap", "StateResStore", "resolve"]


def resolve(
    room_version: RoomVersion,
    state_sets: Sequence[Mapping[StateKey, str]],
    store: StateResStore,
) -> dict[StateKey, str]:
    """Resolve the states of a room's forks into one state.

    Args:
        room_version: the room's version; its ``state_res`` picks v1, v2 or v2.1.
        state_sets: the states after each fork (e.g. each ``prev_event``):
            (event type, state key) → event ID.
        store: the room's events, rejection flags and auth chains.

    Returns:
        The resolved state, a new dict. No state sets give an empty state; one state set
        gives a copy of it.
    """
    if not state_sets:
        return {}
    if len(state_sets) == 1:
        return dict(state_sets[0])
    if room_version.state_res is StateResAlgorithm.V1:
        return resolve_v1(room_version, state_sets, store)
    return resolve_v2(room_version, state_sets, store)
