"""Serving this server's view of a room's event graph to other servers.

Spec: server-server-api.md › Retrieving events (``/event``, ``/state``, ``/state_ids``,
``/event_auth``), › Backfilling and retrieving missing events (``/backfill``,
``/get_missing_events``), › Timestamp to event; › Server Access Control Lists.

Every request names a room (``/event`` through the event's room) and is answered only to a
server that is in that room now (a user of it joined: else ``403 M_FORBIDDEN``) and that the
room's server ACL lets in (``403 M_FORBIDDEN``).

History visibility for a server (Synapse's rule, as the spec leaves it open): an event is
visible to a server when, in the state at the event, ``history_visibility`` is
``world_readable`` or ``shared`` (or unset), or one of the server's users was joined (or invited,
with ``invited``). Other events are served redacted, so the graph stays walkable.

Events that are rejected are never served (``404``); the state of an outlier or a rejected
event is unknown (``404``). ``/state`` and ``/state_ids`` give the state *before* the event, as
Synapse does and as the receiving side of this server expects.

In-memory state: none.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, Literal

from federation.core.events import Event, StateKey
from federation.core.redaction import redact
from federation.core.stateres import resolve
from homeserver.errors import Forbidden, NotFound
from homeserver.services.federation_inbound import FederationInbound
from homeserver.storage.events import EventStore, StoredEvent

__all__ = ["MAX_BACKFILL", "MAX_MISSING_EVENTS", "RoomGraphService"]

JsonDict = dict[str, Any]

#: The most events one /backfill answers (Synapse caps at 100).
MAX_BACKFILL = 100
#: The most events one /get_missing_events answers (Synapse caps at 20).
MAX_MISSING_EVENTS = 20
_HV = ("m.room.history_visibility", "")


def pdu_json(event: Event) -> JsonDict:
    """An event as sent over federation (``unsigned`` as received is dropped)."""
    out = dict(event.pdu)
    out.pop("unsigned", None)
    return out


class RoomGraphService:
    """Answers other servers' reads of a room's graph.

    Args:
        events: the event store.
        inbound: the inbound service (room membership of servers, server ACLs).
    """

    def __init__(self, events: EventStore, inbound: FederationInbound) -> None:
        self._events = events
        self._inbound = inbound

    async def check_access(self, origin: str, room_id: str) -> None:
        """``origin`` may read ``room_id``: it is in the room and the ACL lets it in.

        Raises:
            Forbidden: otherwise (also for a room we do not know, so existence does not leak).
        """
        if not await self._inbound.server_allowed(room_id, origin):
            raise Forbidden("Server is banned from this room by its server ACL")
        if not await self._inbound.server_in_room(room_id, origin):
            raise Forbidden(f"{origin} is not in the room")

    async def _event_in_room(self, room_id: str, event_id: str) -> StoredEvent:
        stored = await self._events.get_event(event_id)
        if stored is None or stored.event.pdu.get("room_id", room_id) != room_id:
            raise NotFound("Unknown event")
        if stored.rejected_reason is not None:
            raise NotFound("Unknown event")
        return stored

    # --- events -------------------------------------------------------------------------------

    async def get_event(self, origin: str, event_id: str) -> JsonDict:
        """``GET /event/{eventId}``: the event, redacted if ``origin`` may not see it."""
        stored = await self._events.get_event(event_id)
        if stored is None or stored.rejected_reason is not None:
            raise NotFound("Unknown event")
        room_id = stored.event.pdu.get("room_id")
        if not isinstance(room_id, str):  # a v12 create event: the room ID is derived
            room_id = "!" + event_id[1:]
        await self.check_access(origin, room_id)
        [pdu] = await self._visible(origin, [stored])
        return pdu

    async def state_ids(
        self, origin: str, room_id: str, event_id: str
    ) -> tuple[list[str], list[str]]:
        """``GET /state_ids/{roomId}?event_id=``: the state before the event and its auth
        chain, as event IDs."""
        await self.check_access(origin, room_id)
        state = await self._state_before(room_id, event_id)
        chain = await self._events.get_auth_chain(state.values())
        return sorted(state.values()), sorted(chain)

    async def state(
        self, origin: str, room_id: str, event_id: str
    ) -> tuple[list[JsonDict], list[JsonDict]]:
        """``GET /state/{roomId}?event_id=``: as :meth:`state_ids`, with the events (each
        list oldest first)."""
        state_ids, chain_ids = await self.state_ids(origin, room_id, event_id)
        return await self._pdus_in_order(state_ids), await self._pdus_in_order(chain_ids)

    async def event_auth(self, origin: str, room_id: str, event_id: str) -> list[JsonDict]:
        """``GET /event_auth/{roomId}/{eventId}``: the event's auth chain, oldest first."""
        await self.check_access(origin, room_id)
        await self._event_in_room(room_id, event_id)
        return await self._pdus_in_order(await self._events.get_auth_chain([event_id]))

    async def state_for_join(
        self, room_id: str, event_id: str
    ) -> tuple[list[JsonDict], list[JsonDict]]:
        """The state before an accepted join, and the auth chain of that state and of the join
        (``send_join``'s answer; the joining server was not in the room before it)."""
        state = await self._state_before(room_id, event_id)
        chain_ids = await self._events.get_auth_chain([*state.values(), event_id])
        return await self._pdus_in_order(state.values()), await self._pdus_in_order(chain_ids)

    async def _pdus_in_order(self, event_ids: Iterable[str]) -> list[JsonDict]:
        """The events, oldest first (depth, then stream position): a receiver that replays
        an auth chain into a state map in order (SyTest does) ends with the newest of each
        key, as with Synapse's topologically ordered answers."""
        found = await self._events.get_events(event_ids)
        ordered = sorted(found.values(), key=lambda s: (s.event.depth, s.stream_ordering))
        return [pdu_json(s.event) for s in ordered]

    async def _state_before(self, room_id: str, event_id: str) -> dict[StateKey, str]:
        stored = await self._event_in_room(room_id, event_id)
        if stored.state_group is None:
            raise NotFound("The state at this event is not known here")
        after = await self._events.get_state_group_ids(stored.state_group)
        key = stored.event.state_tuple
        if key is None:
            return after
        prevs = list(dict.fromkeys(stored.event.prev_event_ids))
        found = await self._events.get_events(prevs)
        sets = [
            await self._events.get_state_group_ids(s.state_group)
            for s in found.values()
            if s.state_group is not None
        ]
        if len(sets) == len(prevs) and sets:
            if len(sets) == 1:
                return sets[0]
            store = await self._events.load_state_res_store(sets)
            return resolve(stored.event.room_version, sets, store)
        before = dict(after)  # prev state unknown here: drop the event's own key
        before.pop(key, None)
        return before

    # --- walking the graph --------------------------------------------------------------------

    async def backfill(
        self, origin: str, room_id: str, from_ids: Sequence[str], limit: int
    ) -> list[JsonDict]:
        """``GET /backfill/{roomId}?v=&limit=``: up to ``limit`` events from ``from_ids``
        (included) backwards through prev_events, newest first."""
        await self.check_access(origin, room_id)
        limit = max(0, min(limit, MAX_BACKFILL))
        out: dict[str, StoredEvent] = {}
        frontier = list(dict.fromkeys(from_ids))
        while frontier and len(out) < limit:
            found = await self._events.get_events(frontier)
            nxt: list[str] = []
            for stored in sorted(found.values(), key=lambda s: -s.event.depth):
                if len(out) >= limit:
                    break
                if stored.event.event_id in out or not _in_room(stored, room_id):
                    continue
                if stored.rejected_reason is not None:
                    continue
                out[stored.event.event_id] = stored
                nxt.extend(p for p in stored.event.prev_event_ids if p not in out)
            frontier = list(dict.fromkeys(nxt))
        ordered = sorted(out.values(), key=lambda s: (-s.event.depth, -s.stream_ordering))
        return await self._visible(origin, ordered)

    async def get_missing_events(
        self,
        origin: str,
        room_id: str,
        earliest: Iterable[str],
        latest: Iterable[str],
        limit: int,
        min_depth: int,
    ) -> list[JsonDict]:
        """``POST /get_missing_events/{roomId}``: events before ``latest`` (not included)
        back to ``earliest`` (not included), at or above ``min_depth``, oldest first."""
        await self.check_access(origin, room_id)
        limit = max(0, min(limit, MAX_MISSING_EVENTS))
        stop = set(earliest)
        seen: set[str] = set(latest) | stop
        found_latest = await self._events.get_events(list(dict.fromkeys(latest)))
        frontier = [p for s in found_latest.values() for p in s.event.prev_event_ids]
        out: dict[str, StoredEvent] = {}
        while frontier and len(out) < limit:
            ids = [e for e in dict.fromkeys(frontier) if e not in seen]
            seen.update(ids)
            found = await self._events.get_events(ids)
            nxt: list[str] = []
            for stored in sorted(found.values(), key=lambda s: -s.event.depth):
                if len(out) >= limit:
                    break
                if not _in_room(stored, room_id) or stored.rejected_reason is not None:
                    continue
                if stored.event.depth < min_depth:
                    continue
                out[stored.event.event_id] = stored
                nxt.extend(stored.event.prev_event_ids)
            frontier = nxt
        ordered = sorted(out.values(), key=lambda s: (s.event.depth, s.stream_ordering))
        return await self._visible(origin, ordered)

    async def timestamp_to_event(
        self, origin: str, room_id: str, ts: int, direction: Literal["b", "f"]
    ) -> JsonDict:
        """``GET /timestamp_to_event/{roomId}?ts=&dir=``: the nearest event."""
        await self.check_access(origin, room_id)
        found = await self._events.events_near_timestamp(room_id, ts, direction, limit=1)
        if not found:
            raise NotFound("No event found")
        event = found[0].event
        return {"event_id": event.event_id, "origin_server_ts": event.origin_server_ts}

    # --- history visibility for a server ------------------------------------------------------

    async def _visible(self, origin: str, events: Sequence[StoredEvent]) -> list[JsonDict]:
        """The events as ``origin`` may see them (redacted where it may not)."""
        cache: dict[int, bool] = {}
        out = []
        for stored in events:
            group = stored.state_group
            if group is None:
                visible = True  # an outlier: no state known, and it is only graph structure
            elif group in cache:
                visible = cache[group]
            else:
                visible = cache[group] = await self._visible_at(origin, group)
            event = stored.event
            out.append(pdu_json(event) if visible else redact(event.room_version, event.pdu))
        return out

    async def _visible_at(self, origin: str, group: int) -> bool:
        state = await self._events.get_state_group_ids(group)
        wanted = [i for k, i in state.items() if k == _HV or _member_of(k, origin)]
        found = await self._events.get_events(wanted)
        visibility = "shared"
        memberships: list[str] = []
        for stored in found.values():
            event = stored.event
            if event.state_tuple == _HV:
                value = event.content.get("history_visibility")
                visibility = value if isinstance(value, str) else "shared"
            elif event.membership is not None:
                memberships.append(event.membership)
        if visibility in ("world_readable", "shared") or visibility not in ("invited", "joined"):
            return True
        if "join" in memberships:
            return True
        return visibility == "invited" and "invite" in memberships


def _member_of(key: StateKey, server: str) -> bool:
    return key[0] == "m.room.member" and key[1].partition(":")[2] == server


def _in_room(stored: StoredEvent, room_id: str) -> bool:
    return bool(stored.event.pdu.get("room_id", room_id) == room_id)
