"""Receiving events from other servers: transactions, the PDU pipeline and the EDU registry.

Spec: server-server-api.md › Transactions; › PDUs › Checks performed on receipt of a PDU,
Rejection, Soft failure; › Backfilling and retrieving missing events; › Server Access Control
Lists.

A transaction (:meth:`FederationInbound.on_transaction`) is answered once per (origin,
transaction ID): the answer is stored and a retransmission gets it back without processing
anything again. Its PDUs are grouped by room; rooms are processed concurrently, the PDUs of one
room in the order received, and each PDU on its own: one that fails gets an ``error`` entry and
never stops the others.

Each PDU goes through the spec's checks, in order (:meth:`FederationInbound.handle_pdu`)::

    0. the room is one we are in, and the origin is not denied by its server ACL
    1. format (room version rules, 65,536 bytes)           → dropped (error entry, not stored)
    2. signatures: the sender's server (and the event ID's server in v1-2), via the key ring
                                                           → dropped
    3. content hash                                        → continue with the redacted copy
       missing prev_events: /get_missing_events from the origin (bounded); past that,
       the state at the gap (/state_ids, then /event for each unknown event, stored as outliers)
       missing auth_events: /event from the origin, stored as outliers
    4. auth rules against its own auth_events              → stored rejected
    5. auth rules against the state before it (resolved across its prev_events)
                                                           → stored rejected
    6. auth rules against the room's current state         → stored soft-failed
    stored in the timeline: new forward extremity, current state (resolved over the extremities
    when they fork), then the notifier and ``room_written_elsewhere`` so local sends re-read the tip

Dropped PDUs get an ``error`` entry in the transaction's answer; rejected and soft-failed ones
are stored and answered ``{}``, as Synapse does (the sending server did its part, and a retry
would change nothing).

Steps 4-6 and the write happen under the room's lock of :class:`EventCreationService` (the same
lock local sends take), so the state read and the write see no other write into the room;
network fetches happen before it.

In-memory state: none beyond the per-room locks owned by the event creation service, and the
time of the last deletion of old transaction answers (per process: each process deletes what
is older than a day, at most hourly).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import trio

from federation.core.acl import server_allowed_by_acl
from federation.core.auth_rules import (
    auth_types_for_event,
    check_auth_rules,
    check_state_dependent_auth_rules,
    check_state_independent_auth_rules,
)
from federation.core.builder import (
    check_event_format,
    check_received_event,
    key_lookup,
    required_signature_servers,
)
from federation.core.errors import AuthError, EventFormatError, ProtocolError, SignatureError
from federation.core.events import Event, StateKey
from federation.core.hashing import compute_event_id
from federation.core.power_levels import CREATE_KEY, get_named_level, get_power_level
from federation.core.room_versions import (
    DEFAULT_ROOM_VERSION,
    EventIdFormat,
    RoomVersion,
    get_room_version,
)
from federation.core.signing import KnownKey
from federation.core.stateres import resolve
from homeserver.clock import Clock
from homeserver.services.events import EventCreationService
from homeserver.services.notifier import Notifier
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.federation_events import FederationEventStore, RemoteEvent

__all__ = [
    "MAX_EDUS",
    "MAX_PDUS",
    "EduHandler",
    "EduRegistry",
    "EventNotAccepted",
    "EventRejected",
    "EventSoftFailed",
    "FederationInbound",
    "KeyRing",
    "NoRemoteRoomGraph",
    "PduError",
    "RemoteRoomGraph",
]

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]
StateMap = Mapping[StateKey, str]

#: Spec (Transactions): "A transaction ... limited to 50 PDUs and 100 EDUs".
MAX_PDUS = 50
MAX_EDUS = 100
#: Events asked for with one /get_missing_events (Synapse asks for 10).
MISSING_EVENTS_LIMIT = 10
#: Unknown state events fetched one by one at a gap before giving up.
MAX_STATE_FETCH = 500
#: Unknown auth events fetched for one event.
MAX_AUTH_FETCH = 50
#: Events of one auth chain (/event_auth) considered.
MAX_AUTH_CHAIN = 1000
#: How long a transaction's answer is kept for retransmissions (senders retry for minutes).
TXN_KEPT_MS = 24 * 3600 * 1000
#: How often answers older than that are deleted (on the next transaction after it).
TXN_CLEANUP_INTERVAL_MS = 3600 * 1000


class KeyRing(Protocol):
    """Other servers' signing keys (the key ring of ``services/server_keys.py``)."""

    async def known_keys(
        self, server_name: str, key_ids: Collection[str], *, at_ts: int
    ) -> Mapping[str, KnownKey]:
        """The known keys of ``server_name`` among ``key_ids`` (fetched if not valid at
        ``at_ts``; missing ones left out). Validity is the caller's to judge."""
        ...


class RemoteRoomGraph(Protocol):
    """Reading another server's room graph (``federation/client/api.py``). Any exception
    means "could not get it"."""

    async def get_event(self, destination: str, event_id: str) -> Mapping[str, Any] | None:
        """``GET /_matrix/federation/v1/event/{eventId}``: the PDU, or None."""
        ...

    async def get_missing_events(
        self,
        destination: str,
        room_id: str,
        *,
        earliest_events: Sequence[str],
        latest_events: Sequence[str],
        limit: int,
        min_depth: int,
    ) -> list[Mapping[str, Any]]:
        """``POST /_matrix/federation/v1/get_missing_events/{roomId}``: the PDUs."""
        ...

    async def get_state_ids(
        self, destination: str, room_id: str, event_id: str
    ) -> tuple[list[str], list[str]]:
        """``GET /_matrix/federation/v1/state_ids/{roomId}?event_id=``: ``(pdu_ids,
        auth_chain_ids)``, the state *before* the event."""
        ...

    async def get_event_auth(
        self, destination: str, room_id: str, event_id: str
    ) -> list[Mapping[str, Any]]:
        """``GET /_matrix/federation/v1/event_auth/{roomId}/{eventId}``: the event's auth
        chain as PDUs."""
        ...


#: An EDU handler: ``(origin, content)``; raising is logged, never fails the transaction.
EduHandler = Callable[[str, Mapping[str, Any]], Awaitable[None]]


class EduRegistry:
    """EDU handlers by ``edu_type`` (typing, receipts, presence, device lists... register here
    in ``app.py``); EDUs of unknown types are ignored (spec: Transactions)."""

    def __init__(self) -> None:
        self._handlers: dict[str, EduHandler] = {}

    def register(self, edu_type: str, handler: EduHandler) -> None:
        if edu_type in self._handlers:
            raise ValueError(f"an EDU handler for {edu_type} is already registered")
        self._handlers[edu_type] = handler

    async def dispatch(self, origin: str, edu: Mapping[str, Any]) -> None:
        edu_type, content = edu.get("edu_type"), edu.get("content")
        if not isinstance(edu_type, str) or not isinstance(content, Mapping):
            return
        handler = self._handlers.get(edu_type)
        if handler is None:
            return
        try:
            await handler(origin, content)
        except Exception:
            logger.exception("EDU %s from %s failed", edu_type, origin)


class PduError(Exception):
    """A PDU was dropped (not stored); the message goes into the transaction's answer."""


class EventNotAccepted(PduError):
    """A PDU was stored but rejected or soft-failed. Like Synapse, a transaction answers
    ``{}`` for it: the sender handled its part, and sending it again changes nothing."""


class EventRejected(EventNotAccepted):
    """The event failed the auth rules: stored as rejected."""


class EventSoftFailed(EventNotAccepted):
    """The event failed the auth rules against the current state: stored soft-failed."""


@dataclass(frozen=True, slots=True)
class _Checked:
    event: Event
    hash_ok: bool


class FederationInbound:
    """Transactions and the PDU pipeline.

    Args:
        events: the event store (reads).
        fed_events: the store of received events and transactions.
        creator: the local event path: its per-room locks, and ``room_written_elsewhere``.
        notifier: told about each event stored in a timeline.
        keys: other servers' keys.
        remote: other servers' room graphs.
        edus: the EDU handlers.
        clock: for transaction timestamps.
        server_name: our server name.
    """

    def __init__(
        self,
        events: EventStore,
        fed_events: FederationEventStore,
        creator: EventCreationService,
        notifier: Notifier,
        keys: KeyRing,
        remote: RemoteRoomGraph,
        edus: EduRegistry,
        clock: Clock,
        *,
        server_name: str,
    ) -> None:
        self._events = events
        self._fed = fed_events
        self._creator = creator
        self._notifier = notifier
        self._keys = keys
        self._remote = remote
        self.edus = edus
        self._clock = clock
        self._server_name = server_name
        self._last_txn_cleanup = 0

    # --- transactions -------------------------------------------------------------------------

    async def on_transaction(
        self,
        origin: str,
        txn_id: str,
        pdus: Sequence[Mapping[str, Any]],
        edus: Sequence[Mapping[str, Any]],
    ) -> JsonDict:
        """Process a transaction once; a repeat gets the first answer.

        Returns:
            ``{"pdus": {event_id: {} | {"error": reason}}}``.
        """
        earlier = await self._fed.get_txn_response(origin, txn_id)
        if earlier is not None:
            return earlier
        results: dict[str, JsonDict] = {}
        by_room: dict[str, list[Mapping[str, Any]]] = {}
        for pdu in pdus:
            room_id = pdu.get("room_id")
            if not isinstance(room_id, str):
                logger.info("PDU from %s without a room ID ignored", origin)
                continue
            by_room.setdefault(room_id, []).append(pdu)

        async def run_room(room_id: str, room_pdus: list[Mapping[str, Any]]) -> None:
            results.update(await self._room_pdus(origin, room_id, room_pdus))

        async with trio.open_nursery() as nursery:
            for room_id, room_pdus in by_room.items():
                nursery.start_soon(run_room, room_id, room_pdus)
            for edu in edus:
                nursery.start_soon(self.edus.dispatch, origin, edu)
        answer: JsonDict = {"pdus": results}
        now = self._clock.time_ms()
        await self._fed.store_txn_response(origin, txn_id, answer, now)
        if now - self._last_txn_cleanup > TXN_CLEANUP_INTERVAL_MS:
            self._last_txn_cleanup = now
            await self._fed.delete_txns_before(now - TXN_KEPT_MS)
        return answer

    async def _room_pdus(
        self, origin: str, room_id: str, pdus: list[Mapping[str, Any]]
    ) -> dict[str, JsonDict]:
        out: dict[str, JsonDict] = {}
        room = await self._events.get_room(room_id)
        version = get_room_version(room.room_version) if room is not None else None
        in_room = room is not None and await self.server_in_room(room_id, self._server_name)
        for pdu in pdus:
            event_id = _event_id_of(version, pdu)
            if event_id is None:
                continue
            if version is None or not in_room:
                out[event_id] = {"error": "This server is not in the room"}
                continue
            try:
                await self.handle_pdu(origin, version, pdu)
            except EventNotAccepted as e:
                logger.info("PDU %s from %s stored, not accepted: %s", event_id, origin, e)
                out[event_id] = {}
            except PduError as e:
                out[event_id] = {"error": str(e)}
            except Exception:
                logger.exception("PDU %s from %s failed", event_id, origin)
                out[event_id] = {"error": "Internal error while processing the event"}
            else:
                out[event_id] = {}
        return out

    # --- room membership and ACLs ------------------------------------------------------------

    async def server_in_room(self, room_id: str, server_name: str) -> bool:
        """Whether a user of ``server_name`` is joined to ``room_id`` (current state)."""
        return await self._fed.server_in_room(room_id, server_name)

    async def server_allowed(self, room_id: str, server_name: str) -> bool:
        """Whether the room's ``m.room.server_acl`` lets ``server_name`` in."""
        acl = await self._events.get_current_state_event(room_id, "m.room.server_acl", "")
        if acl is None:
            return True
        return server_allowed_by_acl(acl.event.content, server_name)

    # --- the PDU pipeline ---------------------------------------------------------------------

    async def handle_pdu(
        self, origin: str, version: RoomVersion, pdu: Mapping[str, Any], *, fetch: bool = True
    ) -> str:
        """Run one received PDU through the checks and store it.

        Args:
            origin: the server that sent it (asked for missing events).
            version: the room's version.
            pdu: the PDU as received.
            fetch: whether missing prev_events may be fetched with /get_missing_events
                (False for the events such a fetch returned).

        Returns:
            The event ID (of the event accepted now or before).

        Raises:
            PduError: dropped (format, signatures, ACL, unreachable state).
            EventRejected: stored as rejected.
            EventSoftFailed: stored soft-failed.
        """
        room_id = str(pdu.get("room_id"))
        if not await self.server_allowed(room_id, origin):
            raise PduError("Server is banned from this room by its server ACL")
        checked = await self._check_received(version, pdu)
        event = checked.event
        known = await self._events.get_event(event.event_id)
        if known is not None and not known.outlier:
            return event.event_id
        if known is not None and (await self._fed.soft_failed([event.event_id])):
            return event.event_id
        if known is not None and known.rejected_reason is not None:
            raise EventRejected(f"Event was rejected: {known.rejected_reason}")
        gap_states = await self._fill_prev_events(origin, version, event, fetch=fetch)
        auth_by_id = await self._auth_events(origin, version, event)
        await self._check_and_store(event, auth_by_id, gap_states)
        return event.event_id

    async def _check_received(self, version: RoomVersion, pdu: Mapping[str, Any]) -> _Checked:
        """Checks 1-3: format, signatures (keys from the key ring), content hash."""
        try:
            check_event_format(version, pdu)
            servers = required_signature_servers(version, pdu)
        except EventFormatError as e:
            raise PduError(f"Invalid event: {e}") from None
        except SignatureError as e:
            raise PduError(f"Invalid signature: {e}") from None
        ts = int(pdu["origin_server_ts"])
        signatures = pdu.get("signatures")
        known: dict[str, dict[str, KnownKey]] = {}
        for server in sorted(servers):
            sigs = signatures.get(server) if isinstance(signatures, Mapping) else None
            key_ids = [k for k in sigs if isinstance(k, str)] if isinstance(sigs, Mapping) else []
            if not key_ids:
                raise PduError(f"Invalid signature: no signature from {server}")
            try:
                known[server] = dict(await self._keys.known_keys(server, key_ids, at_ts=ts))
            except Exception as e:
                raise PduError(f"Cannot get the keys of {server}: {e}") from None
        try:
            event, hash_ok = check_received_event(version, pdu, key_lookup(version, known))
        except EventFormatError as e:
            raise PduError(f"Invalid event: {e}") from None
        except SignatureError as e:
            raise PduError(f"Invalid signature: {e}") from None
        if not hash_ok:
            logger.info(
                "event %s: content hash mismatch, keeping the redacted copy", event.event_id
            )
        return _Checked(event, hash_ok)

    async def _fill_prev_events(
        self, origin: str, version: RoomVersion, event: Event, *, fetch: bool
    ) -> dict[str, StateMap]:
        """Make the event's prev_events known.

        A pushed event (``fetch``): /get_missing_events, and if prev events are still missing
        the event is dropped, as Synapse does: a pushed event could become the room's only
        tip, and its state would then be trusted from the sender alone. A pulled event (one
        /get_missing_events returned): the state at each remaining gap, from /state_ids.

        Returns:
            The state after each prev event found only at a gap.
        """
        prevs = list(dict.fromkeys(event.prev_event_ids))
        missing = await self._missing_with_state(prevs)
        if not missing:
            return {}
        if fetch:
            await self._get_missing_events(origin, version, event)
            if await self._missing_with_state(prevs):
                raise PduError(
                    "Your server isn't divulging details about prev_events referenced in this event"
                )
            return {}
        states: dict[str, StateMap] = {}
        for prev_id in missing:
            states[prev_id] = await self._state_at_gap(origin, version, event.room_id, prev_id)
        return states

    async def _missing_with_state(self, event_ids: list[str]) -> list[str]:
        found = await self._events.get_events(event_ids)
        return [e for e in event_ids if e not in found or found[e].state_group is None]

    async def _get_missing_events(self, origin: str, version: RoomVersion, event: Event) -> None:
        extremities = await self._events.get_forward_extremities(event.room_id)
        min_depth = min((e.depth for e in extremities), default=0)
        try:
            pdus = await self._remote.get_missing_events(
                origin,
                event.room_id,
                earliest_events=[e.event_id for e in extremities],
                latest_events=[event.event_id],
                limit=MISSING_EVENTS_LIMIT,
                min_depth=min_depth,
            )
        except Exception as e:
            logger.info("get_missing_events from %s failed: %s", origin, e)
            return
        usable = [p for p in pdus if isinstance(p, Mapping) and p.get("room_id") == event.room_id]
        usable.sort(key=_depth_of)
        for pdu in usable:
            try:
                await self.handle_pdu(origin, version, pdu, fetch=False)
            except PduError as e:
                logger.info("missing event from %s not accepted: %s", origin, e)

    async def _fetch_outlier(
        self, origin: str, version: RoomVersion, room_id: str, event_id: str
    ) -> StoredEvent | None:
        """An event by ID: ours, or fetched from ``origin`` and stored as an outlier after the
        checks on receipt and the auth rules against its own auth events; those not known are
        fetched first with its auth chain (/event_auth). It is stored rejected when an auth
        event is rejected or cannot be had, or the rules refuse it."""
        known = await self._events.get_event(event_id)
        if known is not None:
            return known
        try:
            pdu = await self._remote.get_event(origin, event_id)
        except Exception as e:
            logger.info("fetching %s from %s failed: %s", event_id, origin, e)
            return None
        if pdu is None or pdu.get("room_id", room_id) != room_id:
            return None
        try:
            event = (await self._check_received(version, pdu)).event
        except PduError as e:
            logger.info("fetched %s not accepted: %s", event_id, e)
            return None
        if event.event_id != event_id:
            return None
        if len(await self._events.get_events(_auth_ids(event))) < len(_auth_ids(event)):
            await self._fetch_auth_chain(origin, version, room_id, event_id)
        await self._store_outlier(event)
        return await self._events.get_event(event_id)

    async def _fetch_auth_chain(
        self, origin: str, version: RoomVersion, room_id: str, event_id: str
    ) -> None:
        """Store the unknown events of ``event_id``'s auth chain as outliers (or rejected),
        each after its own auth events."""
        try:
            chain = await self._remote.get_event_auth(origin, room_id, event_id)
        except Exception as e:
            logger.info("event_auth of %s from %s failed: %s", event_id, origin, e)
            return
        pending: dict[str, Event] = {}
        for pdu in chain[:MAX_AUTH_CHAIN]:
            if not isinstance(pdu, Mapping) or pdu.get("room_id", room_id) != room_id:
                continue
            try:
                checked = (await self._check_received(version, pdu)).event
            except PduError as e:
                logger.info("auth chain event from %s not accepted: %s", origin, e)
                continue
            pending[checked.event_id] = checked
        known = set((await self._events.get_events(pending)).keys())
        for known_id in known:
            pending.pop(known_id, None)
        # store each after its auth events: in rounds, those whose auth events are all known
        while pending:
            ready = [e for e in pending.values() if all(a in known for a in _auth_ids(e))]
            if not ready:
                break  # the rest lack auth events: stored rejected below
            for event in sorted(ready, key=lambda e: e.depth):
                await self._store_outlier(event)
                known.add(event.event_id)
                del pending[event.event_id]
        for event in pending.values():
            await self._store_outlier(event)

    async def _store_outlier(self, event: Event) -> None:
        """Store a fetched event as an outlier, or rejected when its auth events are missing
        or rejected or the auth rules refuse it against them."""
        auth_ids = _auth_ids(event)
        auth = await self._events.get_events(auth_ids)
        usable = {i: s.event for i, s in auth.items() if s.rejected_reason is None}
        reason = None
        if len(usable) < len(auth_ids):
            missing = [a for a in auth_ids if a not in usable]
            reason = f"auth events missing or rejected: {', '.join(missing)}"
        else:
            try:
                _check_against_auth_events(event.room_version, event, usable)
            except AuthError as e:
                reason = f"auth events: {e}"
        await self._fed.persist(
            RemoteEvent(event, "outlier" if reason is None else "rejected", rejected_reason=reason)
        )

    async def _state_at_gap(
        self, origin: str, version: RoomVersion, room_id: str, prev_id: str
    ) -> StateMap:
        """The state after ``prev_id``, from the origin: /state_ids (the state before it),
        unknown events fetched as outliers, plus ``prev_id`` itself if it is a state event."""
        prev = await self._fetch_outlier(origin, version, room_id, prev_id)
        if prev is None:
            raise PduError(f"Cannot get the prev event {prev_id}")
        try:
            state_ids, _auth_chain = await self._remote.get_state_ids(origin, room_id, prev_id)
        except Exception as e:
            raise PduError(f"Cannot get the state at {prev_id}: {e}") from None
        state_ids = list(dict.fromkeys(state_ids))
        if len(state_ids) > MAX_STATE_FETCH:
            raise PduError(f"The state at {prev_id} is too large to fetch")
        known = await self._events.get_events(state_ids)
        for event_id in state_ids:
            if event_id not in known:
                fetched = await self._fetch_outlier(origin, version, room_id, event_id)
                if fetched is not None:
                    known[event_id] = fetched
        state: dict[StateKey, str] = {}
        for stored in known.values():
            key = stored.event.state_tuple
            if key is not None and stored.rejected_reason is None:
                state[key] = stored.event.event_id
        key = prev.event.state_tuple
        if key is not None and prev.rejected_reason is None:
            state[key] = prev.event.event_id
        return state

    async def _auth_events(
        self, origin: str, version: RoomVersion, event: Event
    ) -> dict[str, Event]:
        """The event's auth events by ID (v12: with the create event), fetched from the origin
        when unknown; rejected ones left out."""
        ids = _auth_ids(event)
        found = await self._events.get_events(ids)
        for event_id in [i for i in ids if i not in found][:MAX_AUTH_FETCH]:
            fetched = await self._fetch_outlier(origin, version, event.room_id, event_id)
            if fetched is not None:
                found[event_id] = fetched
        return {i: s.event for i, s in found.items() if s.rejected_reason is None}

    async def _check_and_store(
        self, event: Event, auth_by_id: Mapping[str, Event], gap_states: Mapping[str, StateMap]
    ) -> None:
        """Checks 4-6 and the write, under the room's lock."""
        room_id = event.room_id
        version = event.room_version
        stored: int | None = None
        kind = "timeline"
        async with self._creator.locks.hold(room_id):
            state_before, group_before = await self._state_before(event, gap_states)
            reason = await self._redaction_in_another_room(event)
            if reason is None:
                try:
                    _check_against_auth_events(version, event, auth_by_id)
                except AuthError as e:
                    reason = f"auth events: {e}"
            if reason is None:
                auth_state = await self._auth_state(event, state_before)
                try:
                    check_auth_rules(version, event, auth_state)
                except AuthError as e:
                    reason = f"state before the event: {e}"
            if reason is not None:
                await self._fed.persist(
                    RemoteEvent(
                        event,
                        "rejected",
                        state_before=state_before,
                        state_group_before=group_before,
                        rejected_reason=reason,
                    )
                )
                self._creator.room_written_elsewhere(room_id)
                raise EventRejected(f"Event rejected by the auth rules ({reason})")
            extremities = await self._events.get_forward_extremities(room_id)
            prevs = set(event.prev_event_ids)
            if {e.event_id for e in extremities} != prevs:
                current = await self._events.get_current_state_ids(room_id)
                try:
                    check_auth_rules(version, event, await self._auth_state(event, current))
                except AuthError as e:
                    kind = "soft_failed"
                    reason = f"current state: {e}"
            state_after = dict(state_before)
            if event.state_tuple is not None:
                state_after[event.state_tuple] = event.event_id
            new_current: StateMap | None = None
            redacts: str | None = None
            if kind == "timeline":
                others = [e for e in extremities if e.event_id not in prevs]
                new_current = await self._resolved_current(event, state_after, others)
                redacts = await self._redaction_target(event, state_before)
            stored = await self._fed.persist(
                RemoteEvent(
                    event,
                    kind,  # type: ignore[arg-type]
                    state_before=state_before,
                    state_group_before=group_before,
                    rejected_reason=reason,
                    new_current_state=new_current,
                    redacts=redacts,
                )
            )
            self._creator.room_written_elsewhere(room_id)
        if kind == "soft_failed":
            raise EventSoftFailed(f"Event soft-failed ({reason})")
        if stored is not None:
            key = event.state_key
            concerned = [key] if event.type == "m.room.member" and key else []
            self._notifier.on_new_event(room_id, stored, concerned)

    async def _state_before(
        self, event: Event, gap_states: Mapping[str, StateMap]
    ) -> tuple[dict[StateKey, str], int | None]:
        """The state before ``event``: the state after its one prev event (with that group),
        or the resolution of the states after each."""
        prevs = list(dict.fromkeys(event.prev_event_ids))
        if not prevs:
            return {}, None
        found = await self._events.get_events(prevs)
        state_sets: list[StateMap] = []
        groups: list[int | None] = []
        for prev_id in prevs:
            if prev_id in gap_states:
                state_sets.append(gap_states[prev_id])
                groups.append(None)
                continue
            stored = found.get(prev_id)
            if stored is None or stored.state_group is None:
                raise PduError(f"Cannot get the state after prev event {prev_id}")
            state = await self._events.get_state_group_ids(stored.state_group)
            state_sets.append(state)
            groups.append(stored.state_group)
        if len(state_sets) == 1:
            return dict(state_sets[0]), groups[0]
        store = await self._events.load_state_res_store(state_sets)
        return resolve(event.room_version, state_sets, store), None

    async def _auth_state(self, event: Event, state: StateMap) -> dict[StateKey, Event]:
        """The events of ``state`` the auth rules read for ``event`` (and the create event)."""
        version = event.room_version
        keys = auth_types_for_event(
            version, event.type, event.state_key, event.sender, event.content
        )
        wanted = {k: state[k] for k in (*keys, CREATE_KEY) if k in state}
        found = await self._events.get_events(wanted.values())
        return {
            k: found[i].event
            for k, i in wanted.items()
            if i in found and found[i].rejected_reason is None
        }

    async def _resolved_current(
        self, event: Event, state_after: StateMap, other_extremities: Sequence[Any]
    ) -> StateMap:
        if not other_extremities:
            return state_after
        state_sets: list[StateMap] = [state_after]
        for extremity in other_extremities:
            if extremity.state_group is not None:
                state_sets.append(await self._events.get_state_group_ids(extremity.state_group))
        store = await self._events.load_state_res_store(state_sets)
        resolved = resolve(event.room_version, state_sets, store)
        return resolved

    async def _redaction_in_another_room(self, event: Event) -> str | None:
        """A redaction of a known event of another room is rejected (as Synapse does)."""
        target_id = event.redacts
        if event.type != "m.room.redaction" or target_id is None:
            return None
        target = await self._events.get_event(target_id)
        if target is None or target.event.pdu.get("room_id", event.room_id) == event.room_id:
            return None
        return f"redaction of {target_id}, an event of another room"

    async def _redaction_target(self, event: Event, state_before: StateMap) -> str | None:
        """The event an accepted redaction redacts, when it may: the same room, and (spec:
        Redactions, v3+) the same server as the target's sender or the redact power level."""
        target_id = event.redacts
        if event.type != "m.room.redaction" or target_id is None:
            return None
        target = await self._events.get_event(target_id)
        if target is None or target.event.pdu.get("room_id") != event.room_id:
            return None
        if target.event.sender.partition(":")[2] == event.sender.partition(":")[2]:
            return target_id
        auth_state = await self._auth_state(event, state_before)
        version = event.room_version
        if get_power_level(version, auth_state, event.sender) >= get_named_level(
            version, auth_state, "redact"
        ):
            return target_id
        return None


def _depth_of(pdu: Mapping[str, Any]) -> int:
    depth = pdu.get("depth")
    return depth if isinstance(depth, int) else 0


def _auth_ids(event: Event) -> list[str]:
    ids = list(dict.fromkeys(event.auth_event_ids))
    if not event.room_version.create_event_in_auth_events and event.type != "m.room.create":
        create_id = "$" + event.room_id[1:]
        if create_id not in ids:
            ids.append(create_id)
    return ids


def _check_against_auth_events(
    version: RoomVersion, event: Event, auth_by_id: Mapping[str, Event]
) -> None:
    """Check 4: the auth rules with the event's own auth events as the state."""
    check_state_independent_auth_rules(version, event, auth_by_id)
    auth_state: dict[StateKey, Event] = {}
    for auth_event in auth_by_id.values():
        key = auth_event.state_tuple
        if key is not None:
            auth_state[key] = auth_event
    check_state_dependent_auth_rules(version, event, auth_state)


def _event_id_of(version: RoomVersion | None, pdu: Mapping[str, Any]) -> str | None:
    """The event ID of a received PDU; for a room we do not know, a best effort (the room
    version is unknown: v1-2 carry their ID, later ones are hashed as the default version)."""
    given = pdu.get("event_id")
    if version is not None and version.event_id_format is EventIdFormat.V1_ORIGIN:
        return given if isinstance(given, str) else None
    try:
        return compute_event_id(version or get_room_version(DEFAULT_ROOM_VERSION), pdu)
    except (ProtocolError, KeyError, TypeError, ValueError):
        return given if isinstance(given, str) else None


class NoRemoteRoomGraph:
    """A :class:`RemoteRoomGraph` for when no outbound federation client is wired: every
    fetch fails, so gaps stay unfilled (the PDU gets an error) and nothing else changes."""

    async def get_event(self, destination: str, event_id: str) -> Mapping[str, Any] | None:
        raise LookupError("outbound federation is not available")

    async def get_missing_events(
        self,
        destination: str,
        room_id: str,
        *,
        earliest_events: Sequence[str],
        latest_events: Sequence[str],
        limit: int,
        min_depth: int,
    ) -> list[Mapping[str, Any]]:
        raise LookupError("outbound federation is not available")

    async def get_state_ids(
        self, destination: str, room_id: str, event_id: str
    ) -> tuple[list[str], list[str]]:
        raise LookupError("outbound federation is not available")

    async def get_event_auth(
        self, destination: str, room_id: str, event_id: str
    ) -> list[Mapping[str, Any]]:
        raise LookupError("outbound federation is not available")
