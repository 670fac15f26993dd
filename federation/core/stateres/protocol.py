"""What state resolution needs from storage.

State resolution is a pure, synchronous function. Whatever it reads about the room's
event graph comes through :class:`StateResStore`, which storage implements over events it
has already loaded (the service pre-fetches the state sets' events and their auth chains,
then calls :func:`federation.core.stateres.resolve` from a worker thread or directly).
``tests/fakes.py`` holds the in-memory fake every test uses.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Protocol, runtime_checkable

from federation.core.events import Event, StateKey

#: A room state: (event type, state key) → event ID.
StateMap = Mapping[StateKey, str]


class StateResStore(Protocol):
    """The room's event graph, as state resolution reads it.

    Every method takes a batch of event IDs. Unknown event IDs are left out of the answer
    rather than raising: the algorithms skip events they cannot see, as Synapse and Ruma do.
    """

    def get_events(self, event_ids: Collection[str]) -> Mapping[str, Event]:
        """Return the known events among ``event_ids``, rejected ones included."""
        ...

    def get_rejected(self, event_ids: Collection[str]) -> AbstractSet[str]:
        """Return which of ``event_ids`` this server rejected (a subset of the argument).

        Rejected events are never admitted into the resolved state by the iterative auth
        checks, and never used as auth events there.
        """
        ...

    def get_auth_chain(self, event_ids: Collection[str]) -> AbstractSet[str]:
        """Return the union of the auth chains of ``event_ids``.

        The auth chain of an event is every event reachable from it through
        ``auth_events`` (transitively). The given events themselves are not included
        unless one is in the auth chain of another. In room version 12 the create event
        counts as an auth event of every other event even though it is not listed.
        """
        ...


@runtime_checkable
class AuthChainDifferenceStore(StateResStore, Protocol):
    """A store that can compute the auth difference itself (e.g. from a chain cover index).

    When the store passed to ``resolve`` has this method, v2 and v2.1 call it instead of
    computing the difference from :meth:`StateResStore.get_auth_chain`.
    """

    def get_auth_chain_difference(self, state_sets: Sequence[AbstractSet[str]]) -> AbstractSet[str]:
        """Return the events in some but not all of the full auth chains of ``state_sets``.

        Args:
            state_sets: the event IDs of each state set. The full auth chain of a set
                includes the set's own events as well as their auth chains (as Synapse and
                Ruma compute it).
        """
        ...
