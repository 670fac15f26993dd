"""Creating local events: the one path every local event takes.

Pipeline (:meth:`EventCreationService.create_event`), under the room's lock::

    forward extremities → prev_events, depth = max + 1
    state before = the extremities' state (one group, or state resolution over several)
    auth_events  = auth_types_for_event(...) looked up in that state (v12: never the create event)
    build_event  → hashed and signed with the server key
    check_auth_rules(event, auth state)       → 403 M_FORBIDDEN naming the rule, nothing stored
    EventStore.persist_event (one unit of work: event, edges, state group, extremities,
                              current state, transaction ID, EVENTS stream position)
    notifier.on_new_event (after the lock is released)

Serialisation is per room: a ``trio.Lock`` per room ID, held from reading the extremities to
the commit, so concurrent sends into one room form a chain (no needless forks, nothing lost)
while other rooms proceed. A lock lives only while someone holds or waits for it, so the map
does not grow with the number of rooms. This assumes one process writes each room; several
writer processes would need the lock in the database (a row lock on the room).
"""

from __future__ import annotations

import secrets
import string
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import trio

from federation.core.auth_rules import auth_types_for_event, check_auth_rules
from federation.core.builder import MAX_PDU_BYTES, MAX_PREV_EVENTS, build_event
from federation.core.canonicaljson import encode_canonical_json
from federation.core.errors import AuthError, CanonicalJSONError, EventFormatError
from federation.core.events import Event, StateKey
from federation.core.hashing import room_id_from_create_event
from federation.core.power_levels import CREATE_KEY, get_named_level, get_power_level
from federation.core.room_versions import RoomIdFormat, RoomVersion, get_room_version
from federation.core.signing import SigningKey
from federation.core.stateres import resolve
from homeserver.clock import Clock
from homeserver.errors import BadJson, Codes, Forbidden, InvalidParam, MatrixError, NotFound
from homeserver.services.notifier import Notifier
from homeserver.storage.db import UniqueViolation
from homeserver.storage.events import (
    CreationContext,
    EventStore,
    Extremity,
    NewEvent,
    RoomRow,
    StoredEvent,
    TxnKey,
)

_VERSION_CACHE_SIZE = 10_000
_CREATE_ATTEMPTS = 5

__all__ = [
    "ContentCheck",
    "CreatedEvent",
    "EventCreationService",
    "StateContentCheck",
    "client_event",
    "room_id_of",
]

#: A check of a local state event's content before it is built: ``(room_id, content)``; raises
#: a MatrixError to refuse it. Registered with :meth:`EventCreationService.add_state_check`.
StateContentCheck = Callable[[str, Mapping[str, Any]], Awaitable[None]]
#: A check of every local event's content before it is built: ``(room_id, event_type,
#: content)``; raises a MatrixError to refuse it (:meth:`EventCreationService.add_content_check`).
ContentCheck = Callable[[str, str, Mapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class CreatedEvent:
    event_id: str
    room_id: str
    #: 0 when an earlier send with the same transaction ID is returned
    stream_ordering: int


class _RoomLock:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = trio.Lock()
        self.users = 0


class RoomLocks:
    """One ``trio.Lock`` per room, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, _RoomLock] = {}

    def __len__(self) -> int:
        return len(self._locks)

    @asynccontextmanager
    async def hold(self, room_id: str) -> AsyncIterator[None]:
        entry = self._locks.get(room_id)
        if entry is None:
            entry = self._locks[room_id] = _RoomLock()
        entry.users += 1
        try:
            async with entry.lock:
                yield
        finally:
            entry.users -= 1
            if entry.users == 0:
                del self._locks[room_id]


def room_id_of(event: Event) -> str:
    """The event's room ID (a v12 create event has none: it is derived from its event ID)."""
    if "room_id" in event.pdu:
        return event.room_id
    return "!" + event.event_id[1:]


def client_event(stored: StoredEvent | Event) -> dict[str, Any]:
    """The client-server ``ClientEvent`` format of an event."""
    event = stored.event if isinstance(stored, StoredEvent) else stored
    out: dict[str, Any] = {
        "event_id": event.event_id,
        "room_id": room_id_of(event),
        "type": event.type,
        "sender": event.sender,
        "content": dict(event.content),
        "origin_server_ts": event.origin_server_ts,
        "unsigned": {},
    }
    if event.state_key is not None:
        out["state_key"] = event.state_key
    redacts = event.redacts
    if redacts is not None:
        out["redacts"] = redacts
    return out


class RoomTips:
    """What building the next event of a room needs, kept from the last local write into it.

    A send into an active room then needs no database read before its write: the room's one
    forward extremity, and the auth state events (create, power levels, join rules, members)
    seen so far, are here. This is only right because every local write into a room goes
    through :class:`EventCreationService` under the room's lock, which keeps this up to date;
    anything that writes a room another way (another process, events received over
    federation) must call :meth:`forget` for it. A room with several tips is not kept (its
    state comes from state resolution), nor one after a redaction (it may have changed an
    auth event as readers see it).

    Args:
        max_rooms: rooms kept, least recently used dropped first.
    """

    def __init__(self, max_rooms: int = 1000) -> None:
        self._rooms: OrderedDict[str, _Tip] = OrderedDict()
        self._max = max_rooms

    def __len__(self) -> int:
        return len(self._rooms)

    def context(self, room_id: str, keys: Sequence[StateKey]) -> CreationContext | None:
        """The creation context at ``keys``, or None if any of them is not known here."""
        tip = self._rooms.get(room_id)
        if tip is None:
            return None
        wanted = (*keys, CREATE_KEY)
        if any(k not in tip.state and k not in tip.absent for k in wanted):
            return None
        self._rooms.move_to_end(room_id)
        current = {k: tip.state[k] for k in wanted if k in tip.state}
        return CreationContext(None, [tip.extremity], current, None)

    def learn(self, room_id: str, keys: Sequence[StateKey], ctx: CreationContext) -> None:
        """Remember what a database read found (absent keys too)."""
        if len(ctx.extremities) != 1 or ctx.extremities[0].state_group is None:
            self.forget(room_id)
            return
        tip = self._rooms.get(room_id)
        if tip is None or tip.extremity != ctx.extremities[0]:
            tip = _Tip(ctx.extremities[0])
            self._rooms[room_id] = tip
            while len(self._rooms) > self._max:
                self._rooms.popitem(last=False)
        for key in (*keys, CREATE_KEY):
            found = ctx.current.get(key)
            if found is not None:
                tip.state[key] = found
                tip.absent.discard(key)
            else:
                tip.absent.add(key)

    def advance(self, room_id: str, stored: StoredEvent) -> None:
        """``stored`` was persisted on the room's one tip and is now its only tip."""
        tip = self._rooms.get(room_id)
        if tip is None:
            return
        tip.extremity = Extremity(stored.event.event_id, stored.depth, stored.state_group)
        key = stored.event.state_tuple
        if key is not None:
            tip.state[key] = stored
            tip.absent.discard(key)

    def forget(self, room_id: str) -> None:
        self._rooms.pop(room_id, None)


@dataclass(slots=True)
class _Tip:
    extremity: Extremity
    state: dict[StateKey, StoredEvent] = field(default_factory=dict)
    absent: set[StateKey] = field(default_factory=set)


class EventCreationService:
    """Builds, signs, authorises, persists and announces local events.

    Args:
        events: the event store.
        signing_key: the server's signing key.
        clock: for ``origin_server_ts``.
        notifier: told about each event after it commits.
        server_name: our server name.
    """

    def __init__(
        self,
        events: EventStore,
        signing_key: SigningKey,
        clock: Clock,
        notifier: Notifier,
        *,
        server_name: str,
    ) -> None:
        self._events = events
        self._key = signing_key
        self._clock = clock
        self._notifier = notifier
        self._server_name = server_name
        self.locks = RoomLocks()
        self._tips = RoomTips()
        # room versions never change: a bounded cache saves a read per event
        self._versions: dict[str, RoomVersion] = {}
        self._state_checks: dict[str, StateContentCheck] = {}
        self._content_checks: list[ContentCheck] = []
        self._listeners: list[Callable[[str, str, str], None]] = []

    def room_written_elsewhere(self, room_id: str) -> None:
        """Events were stored into ``room_id`` without this service (e.g. received over
        federation): read the room's tip again before the next local event."""
        self._tips.forget(room_id)

    def add_event_listener(self, listener: Callable[[str, str, str], None]) -> None:
        """Call ``listener(room_id, sender, event_type)`` after each new local event is
        persisted (typing stops when its user sends). Must be cheap and must not raise."""
        self._listeners.append(listener)

    def add_content_check(self, check: ContentCheck) -> None:
        """Run ``check`` on the content of every local event before it is built (e.g. the
        relations rules: no thread from an event that has a relation). Wired once in
        ``app.py``; must be cheap for events it does not concern."""
        self._content_checks.append(check)

    def add_state_check(self, event_type: str, check: StateContentCheck) -> None:
        """Run ``check`` on the content of every local ``event_type`` state event (state key
        ``""``) before it is built, e.g. the room directory's ``m.room.canonical_alias`` check
        (spec: ``PUT /state`` → ``400 M_BAD_ALIAS``). Wired once in ``app.py``."""
        self._state_checks[event_type] = check

    async def create_room_event(
        self,
        room_version: RoomVersion,
        *,
        sender: str,
        content: Mapping[str, Any],
        is_public: bool = False,
        room_id: str | None = None,
    ) -> CreatedEvent:
        """Create a room with its ``m.room.create`` event.

        v12 room IDs are derived from the create event; earlier ones are ``!random:server``,
        or ``room_id`` when given (from :meth:`new_room_id`: a room upgrade names the new room
        in the old room's tombstone before creating it).

        Raises:
            MatrixError: 403 if the create event is not allowed (e.g. bad ``additional_creators``).
            ValueError: ``room_id`` given for a room version whose IDs are derived.
        """
        v12 = room_version.room_id_format is RoomIdFormat.CREATE_EVENT_HASH
        if room_id is not None and v12:
            raise ValueError(f"room version {room_version.identifier} derives its room IDs")
        chosen = room_id
        for attempt in range(_CREATE_ATTEMPTS):
            room_id = chosen if chosen is not None or v12 else _random_room_id(self._server_name)
            # A v12 room ID is the create event's hash: the same user creating two rooms with
            # the same content in the same millisecond would get one ID, so bump the time.
            event = self._build(
                room_version,
                room_id,
                sender,
                "m.room.create",
                content,
                "",
                [],
                [],
                depth=1,
                ts_offset=attempt,
            )
            if room_id is None:
                room_id = room_id_from_create_event(room_version, event.pdu)
            _check(room_version, event, {})
            row = RoomRow(
                room_id, room_version.identifier, sender, is_public, self._clock.time_ms()
            )
            try:
                async with self.locks.hold(room_id):
                    result = await self._events.persist_event(
                        NewEvent(event, {}, None, new_room=row)
                    )
            except UniqueViolation:
                if chosen is not None or attempt + 1 == _CREATE_ATTEMPTS:
                    raise
                continue
            self._notifier.on_new_event(room_id, result.stream_ordering, [sender])
            return CreatedEvent(event.event_id, room_id, result.stream_ordering)
        raise AssertionError("unreachable")

    def new_room_id(self) -> str:
        """A fresh ``!random:server`` room ID for :meth:`create_room_event` (v1-11)."""
        return _random_room_id(self._server_name)

    async def create_event(
        self,
        room_id: str,
        *,
        sender: str,
        event_type: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
        txn: TxnKey | None = None,
        redacts: str | None = None,
        before_persist: Callable[[Event], Awaitable[None]] | None = None,
    ) -> CreatedEvent:
        """Build, sign, authorise and persist an event in ``room_id``, then notify.

        ``before_persist`` is awaited with the built and authorised event before it is
        persisted, while the room's lock is held (nothing else is sent into the room
        meanwhile); if it raises, the event is not persisted. A room upgrade creates the new
        room there, naming the tombstone in its ``predecessor`` (as Synapse does). It must not
        send into ``room_id`` itself.

        Raises:
            NotFound: the room is unknown here.
            MatrixError: ``403 M_FORBIDDEN`` naming the auth rule that failed; ``413
                M_TOO_LARGE`` over 65,536 bytes; ``400 M_BAD_JSON`` for content that cannot be
                an event.
        """
        check = self._state_checks.get(event_type) if state_key == "" else None
        if check is not None:
            await check(room_id, content)  # e.g. canonical alias validation (room directory)
        for content_check in self._content_checks:
            await content_check(room_id, event_type, content)
        async with self.locks.hold(room_id):
            room_version = await self._room_version(room_id)
            keys = auth_types_for_event(room_version, event_type, state_key, sender, content)
            ctx = self._tips.context(room_id, keys)
            if ctx is None:
                ctx = await self._events.get_creation_context(room_id, keys, txn)
                if ctx.txn_event_id is not None:
                    return CreatedEvent(ctx.txn_event_id, room_id, 0)
                if not ctx.extremities:
                    raise NotFound("Unknown room")
                self._tips.learn(room_id, keys, ctx)
            prevs = ctx.extremities[-MAX_PREV_EVENTS:]
            depth = max(e.depth for e in prevs) + 1
            state_before: dict[StateKey, str] | None = None
            group_before = prevs[0].state_group
            auth_state: dict[StateKey, Event] = {}
            if len(prevs) == 1 and group_before is not None:
                # One tip: the current state is the state after it (every local event
                # references all tips, and current_state is updated with each).
                auth_state = {k: s.event for k, s in ctx.current.items()}
            else:
                state_before = await self._resolved_state(room_version, prevs)
                group_before = None
                wanted = [state_before[k] for k in (*keys, CREATE_KEY) if k in state_before]
                for stored in (await self._events.get_events(wanted)).values():
                    key = stored.event.state_tuple
                    if key is not None:
                        auth_state[key] = stored.event
            auth_ids = [auth_state[k].event_id for k in keys if k in auth_state]
            event = self._build(
                room_version,
                room_id,
                sender,
                event_type,
                content,
                state_key,
                [e.event_id for e in prevs],
                auth_ids,
                depth=depth,
                redacts=redacts,
            )
            if redacts is not None:
                await self._check_redaction(room_version, event, redacts, auth_state)
            _check(room_version, event, auth_state)
            if before_persist is not None:
                await before_persist(event)
            try:
                result = await self._events.persist_event(
                    NewEvent(event, state_before, group_before, txn=txn)
                )
            except UniqueViolation:
                self._tips.forget(room_id)
                # a retransmission that raced past the check (another process): it won
                earlier = await self._events.get_txn_event_id(txn) if txn is not None else None
                if earlier is None:
                    raise
                return CreatedEvent(earlier, room_id, 0)
            except BaseException:
                self._tips.forget(room_id)  # written or not: read the room again next time
                raise
            if not result.existing:
                if len(prevs) == 1 and group_before is not None and redacts is None:
                    group = result.stream_ordering if state_key is not None else group_before
                    self._tips.advance(
                        room_id,
                        StoredEvent(
                            event, result.stream_ordering, depth, False, None, False, group
                        ),
                    )
                else:
                    # tips were merged (state came from resolution), or a redaction may have
                    # changed an auth event as readers see it
                    self._tips.forget(room_id)
        if not result.existing:
            concerned = [state_key] if event_type == "m.room.member" and state_key else []
            self._notifier.on_new_event(room_id, result.stream_ordering, concerned)
            for listener in self._listeners:
                listener(room_id, sender, event_type)
        return CreatedEvent(result.event_id, room_id, result.stream_ordering)

    async def _check_redaction(
        self,
        room_version: RoomVersion,
        event: Event,
        redacts: str,
        auth_state: Mapping[StateKey, Event],
    ) -> None:
        """Spec (Redactions): a user may redact their own events, and others' with the
        ``redact`` power level. Checked here for every room version: from v3 the auth rules
        leave it to the server, and v1-2's rule only compares domains."""
        target = (await self._events.get_events([redacts])).get(redacts)
        if target is None:
            raise NotFound("Event not found")
        if room_id_of(target.event) != room_id_of(event):
            # Synapse's answer (SyTest "PUT /redact disallows redaction of event in different
            # room"); the ID is a hash the requester already holds, so this reveals nothing
            raise InvalidParam("Cannot redact an event from a different room")
        if target.event.sender == event.sender:
            return
        if get_power_level(room_version, auth_state, event.sender) < get_named_level(
            room_version, auth_state, "redact"
        ):
            raise Forbidden("You cannot redact other users' events")

    async def _room_version(self, room_id: str) -> RoomVersion:
        version = self._versions.get(room_id)
        if version is None:
            room = await self._events.get_room(room_id)
            if room is None:
                raise NotFound("Unknown room")
            version = get_room_version(room.room_version)
            if len(self._versions) >= _VERSION_CACHE_SIZE:
                self._versions.clear()
            self._versions[room_id] = version
        return version

    async def _resolved_state(self, room_version: RoomVersion, prevs: Any) -> dict[StateKey, str]:
        state_sets = []
        for extremity in prevs:
            state = await self._events.get_state_ids_after(extremity.event_id)
            if state is not None:
                state_sets.append(state)
        store = await self._events.load_state_res_store(state_sets)
        return resolve(room_version, state_sets, store)

    def _build(
        self,
        room_version: RoomVersion,
        room_id: str | None,
        sender: str,
        event_type: str,
        content: Mapping[str, Any],
        state_key: str | None,
        prev_ids: list[str],
        auth_ids: list[str],
        *,
        depth: int,
        ts_offset: int = 0,
        redacts: str | None = None,
    ) -> Event:
        try:
            event = build_event(
                room_version,
                room_id=room_id,
                sender=sender,
                type=event_type,
                content=content,
                prev_event_ids=prev_ids,
                auth_event_ids=auth_ids,
                depth=depth,
                origin_server_ts=self._clock.time_ms() + ts_offset,
                origin=self._server_name,
                signing_key=self._key,
                state_key=state_key,
                redacts=redacts,
            )
            size = len(encode_canonical_json(event.pdu, strict=room_version.strict_canonical_json))
        except (EventFormatError, CanonicalJSONError) as e:
            raise BadJson(f"Cannot build the event: {e}") from e
        if size > MAX_PDU_BYTES:
            raise MatrixError(413, Codes.TOO_LARGE, "Event is over 65536 bytes")
        return event


def _check(room_version: RoomVersion, event: Event, auth_state: Mapping[StateKey, Event]) -> None:
    try:
        check_auth_rules(room_version, event, auth_state)
    except AuthError as e:
        raise Forbidden(f"Not allowed by the auth rules ({e.rule}): {e}") from e


def _random_room_id(server_name: str) -> str:
    local = "".join(secrets.choice(string.ascii_letters) for _ in range(18))
    return f"!{local}:{server_name}"
