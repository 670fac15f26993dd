"""History from before this server joined a room: ``/backfill`` from the other servers in it.

Spec: server-server-api.md › Backfilling and retrieving missing events (``GET
/_matrix/federation/v1/backfill/{roomId}?v=&limit=``); client-server › ``GET /messages``.

When ``/messages`` pages back past the oldest event of a room's timeline here and that event
is not the room's create event, :meth:`Backfiller.backfill` asks the room's other servers
(joined in the current state; at most :data:`MAX_SERVERS`, :data:`TIMEOUT_S` seconds each) for
the events before it (``v`` = its prev events we lack). The first server that answers is used:

    each event: format, signatures, content hash (redacted copy on mismatch)   → else dropped
                the auth rules against its own auth events (known here, or earlier in the
                batch)                                                         → else dropped
    stored oldest first (``FederationEventStore.persist_backfilled``): a negative stream
    position (never "new" to /sync), no forward extremity, current state untouched

The state at a backfilled event is not fetched: it gets the state group of the oldest event
the timeline had (for a room joined over federation, the state at the join). History
visibility is therefore judged against the room's state at that point; an event whose own
membership or visibility changes differ in the past is judged by the later state (a
simplification against ``/state_ids`` per gap: noted in the architecture discussion).

In-memory state: one lock per process serialising the writes (their positions are "lowest
minus one"); a second process backfilling at the same time could collide on a position, and
its write fails and is retried on the next ``/messages``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import trio

from federation.client import FederationClient
from federation.client.errors import FederationError
from federation.core.errors import AuthError, ProtocolError
from federation.core.events import Event
from federation.core.room_versions import RoomVersion, get_room_version
from homeserver.services.federation_inbound import KeyRing
from homeserver.services.federation_join_remote import (
    auth_ids_of,
    check_against_own_auth,
    checked_pdu,
)
from homeserver.storage.events import EventStore
from homeserver.storage.federation_events import FederationEventStore

__all__ = ["MAX_SERVERS", "TIMEOUT_S", "Backfiller"]

logger = logging.getLogger(__name__)

#: Servers asked for one backfill before giving up.
MAX_SERVERS = 5
#: Seconds each server gets to answer.
TIMEOUT_S = 10.0
#: Events asked for at once (the spec leaves the limit to the asker; Synapse asks for 100).
MAX_LIMIT = 100


class Backfiller:
    """Fetches a room's older history from the other servers in it.

    Args:
        events: the event store.
        fed_events: where backfilled events are stored.
        client: the federation client.
        keys: other servers' signing keys.
        server_name: ours.
    """

    def __init__(
        self,
        events: EventStore,
        fed_events: FederationEventStore,
        client: FederationClient,
        keys: KeyRing,
        *,
        server_name: str,
    ) -> None:
        self._events = events
        self._fed = fed_events
        self._client = client
        self._keys = keys
        self._server_name = server_name
        self._lock = trio.Lock()

    async def backfill(self, room_id: str, limit: int) -> int:
        """Fetch up to ``limit`` events from before the room's oldest timeline event here.

        Returns:
            How many events were stored (0: nothing to fetch, or nobody could give any).
        """
        room = await self._events.get_room(room_id)
        if room is None:
            return 0
        oldest = await self._events.paginate(room_id, (0, 0), "f", 1)
        if not oldest or oldest[0].event.type == "m.room.create":
            return 0
        first = oldest[0]
        group = first.state_group
        if group is None:
            return 0  # (an out-of-band invite: not in the room)
        known = await self._events.get_events(first.event.prev_event_ids)
        wanted = [e for e in first.event.prev_event_ids if e not in known or known[e].outlier]
        if not wanted:
            return 0
        servers = sorted(
            {
                user_id.partition(":")[2]
                for user_id, membership, _ in await self._events.get_members(room_id)
                if membership == "join"
            }
            - {self._server_name}
        )[:MAX_SERVERS]
        version = get_room_version(room.room_version)
        for server in servers:
            pdus = None
            with trio.move_on_after(TIMEOUT_S):
                try:
                    pdus = await self._client.backfill(
                        server, room_id, wanted, min(max(limit, 1), MAX_LIMIT)
                    )
                except FederationError as e:
                    logger.info("backfill of %s from %s failed: %s", room_id, server, e)
            if not pdus:
                continue
            stored = await self._store(version, room_id, list(pdus), group)
            if stored:
                return stored
        return 0

    async def _store(
        self, room_version: RoomVersion, room_id: str, pdus: list[Any], group: int
    ) -> int:
        checked: dict[str, Event] = {}
        for pdu in pdus:
            if not isinstance(pdu, Mapping) or pdu.get("room_id") != room_id:
                continue
            try:
                event = await checked_pdu(self._keys, room_version, pdu)
            except (ProtocolError, KeyError, TypeError, ValueError) as e:
                logger.info("backfilled event of %s dropped: %s", room_id, e)
                continue
            checked.setdefault(event.event_id, event)
        stored = 0
        accepted: dict[str, Event] = {}
        async with self._lock:
            for event in sorted(checked.values(), key=lambda e: (e.depth, e.event_id)):
                auth_ids = auth_ids_of(event)
                auth = {a: accepted[a] for a in auth_ids if a in accepted}
                missing = [a for a in auth_ids if a not in auth]
                if missing:
                    found = await self._events.get_events(missing)
                    auth.update({i: s.event for i, s in found.items() if s.rejected_reason is None})
                if len(auth) != len(auth_ids):
                    logger.info("backfilled %s dropped: auth events unknown", event.event_id)
                    continue
                try:
                    check_against_own_auth(event, auth)
                except AuthError as e:
                    logger.info("backfilled %s dropped: %s", event.event_id, e)
                    continue
                accepted[event.event_id] = event
            # newest first: each position is the lowest so far minus one, so the stream order
            # of the backfilled events follows their depth
            for event in sorted(accepted.values(), key=lambda e: (e.depth, e.event_id))[::-1]:
                if await self._fed.persist_backfilled(event, group):
                    stored += 1
        return stored
