"""Helpers shared by state resolution v1 and v2: constants and an event cache over the store."""

from __future__ import annotations

from collections.abc import Collection, Iterable

from federation.core.events import Event, StateKey
from federation.core.room_versions import RoomVersion
from federation.core.stateres.protocol import StateResStore

CREATE = "m.room.create"
POWER_LEVELS = "m.room.power_levels"
JOIN_RULES = "m.room.join_rules"
MEMBER = "m.room.member"

CREATE_KEY: StateKey = (CREATE, "")
POWER_LEVELS_KEY: StateKey = (POWER_LEVELS, "")


def implied_create_event_id(room_version: RoomVersion, event: Event) -> str | None:
    """The create event an event cites without listing it (room version 12), else None.

    From room version 12 the room ID is ``!`` + the create event's reference hash, and
    ``auth_events`` leave the create event out; every other event is still authorised
    against it.
    """
    if room_version.create_event_in_auth_events or event.type == CREATE:
        return None
    room_id = event.room_id
    return "$" + room_id[1:] if room_id.startswith("!") else None


class EventCache:
    """Events and rejection flags fetched from a :class:`StateResStore`, fetched once each.

    Also memoises the parsed fields the algorithms read many times (auth event IDs), since
    :class:`Event` properties parse the PDU on every access.
    """

    __slots__ = ("_auth_ids", "_events", "_missing", "_rejected", "room_version", "store")

    def __init__(self, room_version: RoomVersion, store: StateResStore) -> None:
        self.room_version = room_version
        self.store = store
        self._events: dict[str, Event] = {}
        self._missing: set[str] = set()
        self._rejected: set[str] = set()
        self._auth_ids: dict[str, tuple[str, ...]] = {}

    def fetch(self, event_ids: Iterable[str]) -> None:
        """Load every event of ``event_ids`` not yet loaded, in one store call."""
        wanted = {eid for eid in event_ids if eid not in self._events and eid not in self._missing}
        if not wanted:
            return
        found = self.store.get_events(wanted)
        for eid in wanted:
            event = found.get(eid)
            if event is None:
                self._missing.add(eid)
            else:
                self._events[eid] = event
        if found:
            self._rejected.update(self.store.get_rejected(list(found)))

    def fetch_auth_events(self, event_ids: Iterable[str]) -> None:
        """Load the auth events of the (loaded) events ``event_ids``, in one store call."""
        self.fetch(
            aid
            for eid in event_ids
            if (ev := self._events.get(eid)) is not None
            for aid in self.auth_event_ids(ev)
        )

    def get(self, event_id: str) -> Event | None:
        """Return the event, fetching it if needed; None if the store does not know it."""
        event = self._events.get(event_id)
        if event is None and event_id not in self._missing:
            self.fetch((event_id,))
            event = self._events.get(event_id)
        return event

    def __getitem__(self, event_id: str) -> Event:
        event = self.get(event_id)
        if event is None:
            raise KeyError(event_id)
        return event

    def known(self, event_ids: Collection[str]) -> list[str]:
        """The event IDs among ``event_ids`` the store knows (fetching them if needed)."""
        self.fetch(event_ids)
        return [eid for eid in event_ids if eid in self._events]

    def is_rejected(self, event_id: str) -> bool:
        """True if the (loaded) event was rejected by this server."""
        return event_id in self._rejected

    def auth_event_ids(self, event: Event) -> tuple[str, ...]:
        """The event's auth events, with the implied create event of room version 12."""
        ids = self._auth_ids.get(event.event_id)
        if ids is None:
            listed = tuple(event.auth_event_ids)
            create_id = implied_create_event_id(self.room_version, event)
            if create_id is not None and create_id not in listed:
                listed = (*listed, create_id)
            ids = self._auth_ids[event.event_id] = listed
        return ids

    def auth_events_by_key(self, event: Event, *, skip_rejected: bool) -> dict[StateKey, Event]:
        """The event's auth events by (type, state key); later entries win on a clash."""
        out: dict[StateKey, Event] = {}
        for aid in self.auth_event_ids(event):
            aev = self.get(aid)
            if aev is None or (skip_rejected and aid in self._rejected):
                continue
            key = aev.state_tuple
            if key is not None:
                out[key] = aev
        return out

    def power_levels_auth_event(self, event: Event) -> Event | None:
        """The ``m.room.power_levels`` event among the event's auth events, if any."""
        for aid in self.auth_event_ids(event):
            aev = self.get(aid)
            if aev is not None and aev.type == POWER_LEVELS and aev.state_key == "":
                return aev
        return None
