"""Room history visibility: which events of a room a user may see.

Spec: client-server-api › Room History Visibility (``modules/history_visibility.md``), "Server
behaviour". The rule depends on the state of the room *at each event*:

1. ``history_visibility`` was ``world_readable``: allow;
2. the user's membership was ``join``: allow;
3. ``history_visibility`` was ``shared`` (also when unset or not understood) and the user joined
   the room at any point after the event: allow;
4. the user's membership was ``invite`` and ``history_visibility`` was ``invited``: allow;
5. otherwise deny.

For ``m.room.history_visibility`` events, and for the user's own ``m.room.member`` events, the
state before *or* after the event may allow it (a user sees the event that made them leave, and
both sides of a visibility change).

"At the event" is read from state groups: an event's ``state_group`` is the state after it; for
a non-state event that is also the state before it, and for other state events the two differ
only in a key that does not matter here. The "before" side of the two special kinds is the state
after the event's first prev event.

A user who forgot the room (``/forget``) is treated as never having been in it: only
``world_readable`` events remain visible.

Cost: :meth:`HistoryVisibility.filter_events_for_user` makes one read. When the user has been
joined since before the first event (the common case for ``/sync`` and ``/messages``), that read
is the user's current member event and nothing else; otherwise it walks each distinct state
group of the range for two keys.
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.services.events import room_id_of
from homeserver.storage.events import StoredEvent
from homeserver.storage.room_access import MemberState, RoomAccess, RoomAccessStore

__all__ = ["HistoryVisibility", "can_see"]

_WORLD_READABLE = "world_readable"
_SHARED = "shared"
_INVITED = "invited"
_JOINED = "joined"
_KNOWN = (_WORLD_READABLE, _SHARED, _INVITED, _JOINED)


def _effective(history_visibility: str | None) -> str:
    """Unset or not understood means ``shared`` (spec, "Server behaviour")."""
    if history_visibility in _KNOWN:
        return str(history_visibility)
    return _SHARED


def can_see(at: MemberState, *, joined_later: bool, forgotten: bool = False) -> bool:
    """The spec's rule for one event, given the state at it.

    Args:
        at: the user's membership and the room's visibility at the event.
        joined_later: the user joined the room at some point after the event.
        forgotten: the user forgot the room (then only world-readable events are visible).
    """
    visibility = _effective(at.history_visibility)
    if visibility == _WORLD_READABLE:
        return True
    if forgotten:
        return False
    if at.membership == "join":
        return True
    if visibility == _SHARED and joined_later:
        return True
    return at.membership == "invite" and visibility == _INVITED


class HistoryVisibility:
    """The history-visibility rule over stored events; ``/sync`` and every room read use it.

    Args:
        access: the store answering membership and visibility at state groups.
    """

    def __init__(self, access: RoomAccessStore) -> None:
        self._access = access

    async def get_access(self, room_id: str, user_id: str) -> RoomAccess:
        """The user's current relation to the room (membership, forgotten, visibility now)."""
        return await self._access.get_access(room_id, user_id)

    async def forget(self, user_id: str, room_id: str, member_event_id: str, ts: int) -> None:
        """Record a ``/forget``: until the user's membership changes, the room reads as one they
        were never in."""
        await self._access.forget(user_id, room_id, member_event_id, ts)

    async def filter_events_for_user(
        self, user_id: str, events: Sequence[StoredEvent]
    ) -> list[StoredEvent]:
        """Those of events (all from one room, in stream order) that user_id may see: checks the
        user's membership and the room's history_visibility AT each event (state before/at the
        event, via state groups) as the spec says."""
        if not events:
            return []
        room_id = room_id_of(events[0].event)
        groups = {e.state_group for e in events if e.state_group is not None}
        earlier: list[str] = []
        for stored in events:
            if _two_sided(stored, user_id) and stored.event.prev_event_ids:
                earlier.append(stored.event.prev_event_ids[0])
        facts = await self._access.get_visibility_facts(
            room_id,
            user_id,
            groups=groups,
            earlier_events=earlier,
            since_stream=min(e.stream_ordering for e in events),
        )
        if facts.joined_throughout:
            return [e for e in events if not e.outlier]
        forgotten = facts.access.forgotten
        out: list[StoredEvent] = []
        for stored in events:
            if _out_of_band_own_membership(stored, user_id):
                out.append(stored)  # (as Synapse: else a rejected invite never disappears)
                continue
            if stored.outlier or stored.state_group is None:
                continue  # no state known at it: nothing allows it
            position = (stored.depth, stored.stream_ordering)
            joined_later = any(join > position for join in facts.joins)
            after = facts.at_groups.get(stored.state_group)
            if after is not None and can_see(after, joined_later=joined_later, forgotten=forgotten):
                out.append(stored)
                continue
            if _two_sided(stored, user_id) and stored.event.prev_event_ids:
                group = facts.groups_of.get(stored.event.prev_event_ids[0])
                before = facts.at_groups.get(group) if group is not None else None
                if before is not None and can_see(
                    before, joined_later=joined_later, forgotten=forgotten
                ):
                    out.append(stored)
        return out


def _out_of_band_own_membership(stored: StoredEvent, user_id: str) -> bool:
    """The user's own invite, or leave rejecting it, in a room this server is not in
    (``FederationEventStore.persist_out_of_band_membership``: no state is known at it): the
    user always sees it."""
    event = stored.event
    return (
        not stored.outlier
        and stored.state_group is None
        and event.type == "m.room.member"
        and event.state_key == user_id
    )


def _two_sided(stored: StoredEvent, user_id: str) -> bool:
    """Events that are visible when the state before *or* after them allows it."""
    event = stored.event
    if event.type == "m.room.history_visibility" and event.state_key == "":
        return True
    return event.type == "m.room.member" and event.state_key == user_id
