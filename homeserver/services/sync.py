"""``GET /sync``: what changed for one device since its last token.

Shape of one request (:meth:`SyncService.sync`):

1. Register a listener on the notifier under the user's ID and every room it is joined to,
   *before* reading anything: a write that commits after this point wakes the listener, one that
   committed before is visible to the reads. Nothing is missed either way.
2. ``now`` = the committed position of every stream (typing: the typing service's counter).
3. Build the response for (since, now]. Every query is bounded by ``now``, so the response is
   exactly what ``next_batch = now`` claims.
4. Incremental request with an empty result: wait on the listener until the timeout, then go to 2.

Incremental cost: the user's membership changes (partial index), the joined rooms with events in
the range (a range scan of the stream joined to one membership row per event), then per changed
room one unit of work for its timeline window and state. Rooms that did not change cost one
entry in an in-memory set (the user's joined rooms, read once per request).

In-memory state, all of it caches owned by this process: the rooms each user was joined to at
its last sync (where to listen first), room windows shared at the newest position, the to-device
position each device acknowledged, and per device the member events lazy-loading already sent
(:class:`_LazyMembers`; an initial sync clears a device's record, losing an entry only makes a
member event be sent again).

History visibility, typing, receipts, presence and the E2EE parts are optional collaborators, so
each can be built and tested on its own; :mod:`homeserver.app` wires all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import trio

from federation.core.events import StateKey
from homeserver.clock import Clock
from homeserver.errors import InvalidParam
from homeserver.services.events import client_event
from homeserver.services.filtering import RoomEventFilter, SyncFilter
from homeserver.services.ignored_users import IgnoredUsers
from homeserver.services.notification_counts import NotificationCounts
from homeserver.services.notifier import InProcessNotifier
from homeserver.services.push_rules import default_push_rules_event
from homeserver.services.room_history import UnsignedSource
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.storage.events import EventStore, StoredEvent
from homeserver.storage.stream_ids import StreamIdGenerator
from homeserver.storage.sync import MembershipRow, RoomWindow, SyncSnapshot, SyncStore
from homeserver.streams import InvalidStreamToken, StreamName, StreamToken

__all__ = ["SyncRequest", "SyncService", "parse_since"]

logger = logging.getLogger(__name__)

JsonDict = dict[str, Any]

#: State shown to invitees and knockers (spec: "stripped state", recommended event types).
STRIPPED_STATE_TYPES = (
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
    "m.room.guest_access",
    "m.room.history_visibility",
)
#: How many extra windows (each twice the last) to read when a filter drops timeline events.
_MAX_REFILLS = 8
#: Users whose joined rooms are remembered between syncs (emptied when full).
_JOINED_CACHE_SIZE = 100_000
#: Room windows shared between the syncs woken by one event, at most.
_WINDOW_CACHE_SIZE = 10_000
#: Devices whose lazy-loaded member events are remembered (emptied when full).
_LAZY_MEMBER_DEVICES = 10_000
#: Member events remembered per device (the least recently sent go first).
_LAZY_MEMBERS_PER_DEVICE = 1_000
#: Streams whose positions live in memory and restart from 0 (not checked for "future" tokens).
_EPHEMERAL_STREAMS = frozenset({StreamName.TYPING})


# --- collaborators (optional) -------------------------------------------------------------------


class Visibility(Protocol):
    async def filter_events_for_user(
        self, user_id: str, events: Sequence[StoredEvent]
    ) -> list[StoredEvent]: ...


class TypingSource(Protocol):
    def current_position(self) -> int: ...

    def typing_events(
        self, room_ids: Collection[str], since_pos: int | None
    ) -> dict[str, JsonDict]: ...


class ReceiptsSource(Protocol):
    async def receipt_events(
        self, user_id: str, room_ids: Collection[str], from_pos: int | None, to_pos: int
    ) -> dict[str, JsonDict]: ...


class PresenceSource(Protocol):
    async def on_sync(self, user_id: str, set_presence: str | None) -> None: ...

    async def presence_events(
        self, user_id: str, from_pos: int | None, to_pos: int
    ) -> list[JsonDict]: ...

    async def presence_of(
        self, viewer: str, user_ids: Collection[str], to_pos: int
    ) -> list[JsonDict]: ...


class PeekSource(Protocol):
    def peeks(self, user_id: str, device_id: str | None) -> dict[str, int]: ...

    def unpeek(self, user_id: str, device_id: str, room_id: str) -> None: ...

    def delivered(self, user_id: str, device_id: str, room_id: str, position: int) -> None: ...


class E2eeSource(Protocol):
    async def to_device_messages(
        self, user_id: str, device_id: str, since_pos: int, up_to_pos: int, limit: int = 100
    ) -> tuple[list[JsonDict], int]: ...

    async def ack_to_device(self, user_id: str, device_id: str, up_to_pos: int) -> None: ...

    async def one_time_key_counts(self, user_id: str, device_id: str) -> dict[str, int]: ...

    async def unused_fallback_key_types(self, user_id: str, device_id: str) -> list[str]: ...

    async def device_list_changes(
        self, user_id: str, from_token: StreamToken, to_token: StreamToken
    ) -> tuple[set[str], set[str]]: ...


# --- request ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SyncRequest:
    user_id: str
    device_id: str | None
    filter: SyncFilter
    since: StreamToken | None = None
    full_state: bool = False
    timeout_ms: int = 0
    set_presence: str | None = None
    #: awaited while the long-poll waits; raises (``ClientGone``) when the client has left
    until_disconnect: Callable[[], Awaitable[None]] | None = None


def parse_since(text: str | None) -> StreamToken | None:
    """Parse a ``since`` token.

    Raises:
        InvalidParam: not a token this server hands out.
    """
    if text is None or text == "":
        return None
    try:
        return StreamToken.parse(text)
    except InvalidStreamToken:
        raise InvalidParam(f"Invalid since token {text!r}") from None


@dataclass
class _Memberships:
    """The user's rooms by current membership."""

    current: dict[str, MembershipRow]

    def rooms(self, membership: str) -> list[str]:
        return sorted(r for r, m in self.current.items() if m.membership == membership)


@dataclass
class _Response:
    next_batch: StreamToken
    join: dict[str, JsonDict] = field(default_factory=dict)
    invite: dict[str, JsonDict] = field(default_factory=dict)
    leave: dict[str, JsonDict] = field(default_factory=dict)
    knock: dict[str, JsonDict] = field(default_factory=dict)
    #: rooms the device peeks into (MSC2753)
    peek: dict[str, JsonDict] = field(default_factory=dict)
    account_data: list[JsonDict] = field(default_factory=list)
    presence: list[JsonDict] = field(default_factory=list)
    to_device: list[JsonDict] = field(default_factory=list)
    device_changed: set[str] = field(default_factory=set)
    device_left: set[str] = field(default_factory=set)
    otk_counts: dict[str, int] = field(default_factory=dict)
    fallback_types: list[str] | None = None
    #: someone's membership in a shared room may have changed in the range (so the device
    #: lists of the users who came or went must be looked at)
    memberships_moved: bool = False
    #: users who newly share a room with the user (their presence is sent whether or not it
    #: changed in the range)
    newly_shared: set[str] = field(default_factory=set)

    def is_empty(self) -> bool:
        return not (
            self.join
            or self.invite
            or self.leave
            or self.knock
            or self.peek
            or self.account_data
            or self.presence
            or self.to_device
            or self.device_changed
            or self.device_left
        )

    def to_json(self) -> JsonDict:
        body: JsonDict = {
            "next_batch": self.next_batch.to_string(),
            "rooms": {
                "join": self.join,
                "invite": self.invite,
                "leave": self.leave,
                "knock": self.knock,
            },
            "account_data": {"events": self.account_data},
            "presence": {"events": self.presence},
            "to_device": {"events": self.to_device},
            "device_lists": {
                "changed": sorted(self.device_changed),
                "left": sorted(self.device_left),
            },
            "device_one_time_keys_count": self.otk_counts,
        }
        if self.fallback_types is not None:
            body["device_unused_fallback_key_types"] = self.fallback_types
        if self.peek:
            body["rooms"]["peek"] = self.peek
        return body


class _LazyMemberRecord:
    """The member events one device was sent under lazy-loading: user ID → event ID, the
    most recently sent last, at most :data:`_LAZY_MEMBERS_PER_DEVICE`."""

    def __init__(self) -> None:
        self._sent: dict[str, str] = {}

    def get(self, user_id: str) -> str | None:
        return self._sent.get(user_id)

    def put(self, user_id: str, event_id: str) -> None:
        self._sent.pop(user_id, None)
        self._sent[user_id] = event_id
        if len(self._sent) > _LAZY_MEMBERS_PER_DEVICE:
            del self._sent[next(iter(self._sent))]

    def clear(self) -> None:
        self._sent.clear()


class _LazyMembers:
    """Which member events each device was already sent (lazy-loading without
    ``include_redundant_members``).

    A cache owned by this process, like Synapse's: an initial sync of the device clears its
    record, each sync adds what it sent. Losing an entry (eviction, restart) only means a member
    event is sent once more, which clients handle (it is what ``include_redundant_members``
    asks for); it never means one is missing.
    """

    def __init__(self) -> None:
        self._devices: dict[tuple[str, str], _LazyMemberRecord] = {}

    def for_device(self, user_id: str, device_id: str) -> _LazyMemberRecord:
        key = (user_id, device_id)
        record = self._devices.get(key)
        if record is None:
            if len(self._devices) >= _LAZY_MEMBER_DEVICES:
                self._devices.clear()
            record = self._devices[key] = _LazyMemberRecord()
        return record


# --- the service --------------------------------------------------------------------------------


class SyncService:
    """Builds ``/sync`` responses and holds long-polls.

    Args:
        store: the sync reads.
        events: the event store (state events by ID).
        account_data: account data changes by stream position.
        streams: committed stream positions.
        notifier: where long-polls wait.
        clock: for ``unsigned.age``.
        visibility, typing, receipts, presence, e2ee, counts, ignored: optional collaborators.
        max_timeout_ms: the longest a long-poll is held, whatever the client asks.
    """

    def __init__(
        self,
        store: SyncStore,
        events: EventStore,
        account_data: AccountDataStore,
        streams: StreamIdGenerator,
        notifier: InProcessNotifier,
        clock: Clock,
        *,
        visibility: Visibility | None = None,
        typing: TypingSource | None = None,
        receipts: ReceiptsSource | None = None,
        presence: PresenceSource | None = None,
        e2ee: E2eeSource | None = None,
        counts: NotificationCounts | None = None,
        unsigned: UnsignedSource | None = None,
        ignored: IgnoredUsers | None = None,
        peeks: PeekSource | None = None,
        max_timeout_ms: int = 300_000,
    ) -> None:
        self._store = store
        self._events = events
        self._account_data = account_data
        self._streams = streams
        self._notifier = notifier
        self._clock = clock
        self._visibility = visibility
        self._typing = typing
        self._receipts = receipts
        self._presence = presence
        self._e2ee = e2ee
        self._counts = counts
        self._unsigned = unsigned
        self._ignored = ignored
        self._peeks = peeks
        self._lazy_members = _LazyMembers()
        self._max_timeout_ms = max_timeout_ms
        #: the rooms each syncing user was joined to at its last sync (where to listen first)
        self._joined_cache: dict[str, frozenset[str]] = {}
        #: room windows read at the newest EVENTS position (see ``_window``)
        self._windows: dict[tuple[str, int | None, int], RoomWindow] = {}
        self._windows_at = -1
        #: the TO_DEVICE position each device has acknowledged (skips redundant deletes)
        self._acked_to_device: dict[tuple[str, str], int] = {}

    async def sync(self, req: SyncRequest) -> JsonDict:
        """One ``/sync`` request (see the module docstring)."""
        if self._presence is not None:
            await self._presence.on_sync(req.user_id, req.set_presence)
        if req.since is not None and self._e2ee is not None and req.device_id is not None:
            # the device has everything up to its token: its to-device messages can go (a
            # write, so only when the token moved past what was acknowledged before)
            device = (req.user_id, req.device_id)
            acked = req.since.get(StreamName.TO_DEVICE)
            if acked > self._acked_to_device.get(device, -1):
                await self._e2ee.ack_to_device(req.user_id, req.device_id, acked)
                if len(self._acked_to_device) >= _JOINED_CACHE_SIZE:
                    self._acked_to_device.clear()
                self._acked_to_device[device] = acked
        timeout_s = min(max(req.timeout_ms, 0), self._max_timeout_ms) / 1000
        deadline = trio.current_time() + timeout_s
        wait = req.since is not None and not req.full_state and timeout_s > 0
        since_events = (
            None if req.since is None or req.full_state else req.since.get(StreamName.EVENTS)
        )
        keys = frozenset(
            {req.user_id, *self._joined_cache.get(req.user_id, ()), *self._peeked(req)}
        )
        listener = self._notifier.listen(keys)
        try:
            while True:
                snapshot = await self._store.snapshot(req.user_id, since_events)
                memberships = _Memberships({r.room_id: r for r in snapshot.memberships})
                joined = frozenset(memberships.rooms("join"))
                self._remember_joined(req.user_id, joined)
                wanted = frozenset({req.user_id, *joined, *self._peeked(req)})
                if keys != wanted:
                    # listen on the rooms as they are now, then read again: nothing committed
                    # in between can be missed
                    self._notifier.unlisten(listener)
                    keys = wanted
                    listener = self._notifier.listen(keys)
                    continue
                now = self._token_of(snapshot.positions)
                if req.since is not None:
                    self._check_not_future(req.since, now)
                response = await self._build(req, memberships, snapshot, now)
                if not wait or not response.is_empty():
                    return response.to_json()
                # an idle long-poll holds as little as it can: at the timeout it answers with
                # one more pass (anything committed at the last moment is in it)
                del snapshot, memberships, response, joined, now
                if not await listener.wait(deadline, req.until_disconnect):
                    wait = False
                self._notifier.unlisten(listener)
                listener = self._notifier.listen(keys)
        finally:
            self._notifier.unlisten(listener)

    def _peeked(self, req: SyncRequest) -> dict[str, int]:
        """The rooms the device peeks into (MSC2753), with the position each peek began."""
        return {} if self._peeks is None else self._peeks.peeks(req.user_id, req.device_id)

    def _remember_joined(self, user_id: str, joined: frozenset[str]) -> None:
        if len(self._joined_cache) >= _JOINED_CACHE_SIZE:
            self._joined_cache.clear()
        self._joined_cache[user_id] = joined

    def _token_of(self, positions: dict[StreamName, int]) -> StreamToken:
        if self._typing is not None:
            positions = {**positions, StreamName.TYPING: self._typing.current_position()}
        return StreamToken(positions)

    def _check_not_future(self, since: StreamToken, now: StreamToken) -> None:
        for name in StreamName:
            if name not in _EPHEMERAL_STREAMS and since.get(name) > now.get(name):
                raise InvalidParam("The since token is ahead of this server's streams")

    # --- building ---------------------------------------------------------------------------

    async def _build(
        self,
        req: SyncRequest,
        memberships: _Memberships,
        snapshot: SyncSnapshot,
        now: StreamToken,
    ) -> _Response:
        since = req.since
        response = _Response(next_batch=now)
        ignored = (
            frozenset() if self._ignored is None else await self._ignored.ignored_by(req.user_id)
        )
        joined = set(memberships.rooms("join"))
        events_since = None if since is None else since.get(StreamName.EVENTS)
        events_now = now.get(StreamName.EVENTS)
        room_filter = req.filter.room

        # which joined rooms to emit, and which of them in full
        full_rooms: set[str] = set()
        changed_rooms: set[str] = set()
        leave_events: dict[str, MembershipRow] = {}
        new_invites: set[str] = set()
        new_knocks: set[str] = set()
        if since is None or req.full_state:
            full_rooms = set(joined)
            new_invites = set(memberships.rooms("invite"))
            new_knocks = set(memberships.rooms("knock"))
            if room_filter.include_leave:
                for state in ("leave", "ban"):
                    for room_id in memberships.rooms(state):
                        leave_events[room_id] = memberships.current[room_id]
        else:
            assert events_since is not None
            if events_since < events_now:
                response.memberships_moved = bool(snapshot.changes)
                # a room is newly joined when the user was not joined at ``since``, or left
                # and came back within the range; a join-to-join change (display name,
                # avatar) is an ordinary state change of a room the client already has
                broken = {c.room_id for c in snapshot.changes if c.membership != "join"}
                for change in snapshot.changes:
                    current = memberships.current.get(change.room_id)
                    if current is None:
                        continue
                    if change.membership == "join" and current.membership == "join":
                        if (
                            change.room_id not in snapshot.joined_at_since
                            or change.room_id in broken
                        ):
                            full_rooms.add(change.room_id)
                    elif current.membership in ("leave", "ban") and change.membership in (
                        "leave",
                        "ban",
                    ):
                        leave_events[change.room_id] = change
                    elif current.membership == "invite" and change.membership == "invite":
                        new_invites.add(change.room_id)
                    elif current.membership == "knock" and change.membership == "knock":
                        new_knocks.add(change.room_id)
                changed_rooms = snapshot.changed_rooms
        joined_visible = {r for r in joined if room_filter.includes_room(r)}

        # ephemeral and room account data
        ephemeral = await self._ephemeral(req, since, now, joined_visible)
        room_account_data, global_account_data = await self._account_data_changes(req, since, now)
        if since is None and not any(e["type"] == "m.push_rules" for e in global_account_data):
            # the rules are stored once the user changes one; until then, the defaults
            event = default_push_rules_event(req.user_id)
            if req.filter.account_data.matches(event):
                global_account_data.append(event)
        response.account_data = global_account_data

        emit = (
            full_rooms | changed_rooms | set(ephemeral) | set(room_account_data)
        ) & joined_visible
        for room_id in sorted(emit):
            entry = await self._joined_room(
                req,
                room_id,
                full=room_id in full_rooms,
                since=since,
                now=now,
                joined_at=memberships.current[room_id].stream_ordering,
                ignored=ignored,
            )
            eph = [e for e in ephemeral.get(room_id, []) if room_filter.ephemeral.matches(e)]
            entry["ephemeral"] = {"events": eph}
            entry["account_data"] = {
                "events": [
                    e
                    for e in room_account_data.get(room_id, [])
                    if room_filter.account_data.matches(e)
                ]
            }
            if (
                room_id not in full_rooms
                and not entry["timeline"]["events"]
                and not entry["state"]["events"]
                and not eph
                and not entry["account_data"]["events"]
            ):
                continue  # everything in the range was filtered out: nothing to tell
            response.join[room_id] = entry
            if since is not None and not req.full_state:
                if room_id in full_rooms:
                    response.newly_shared.update(await self._store.joined_members(room_id))
                else:
                    response.newly_shared.update(_joined_in(entry))
            if entry.get("summary") is not None or entry["timeline"]["limited"]:
                # members may have come or gone (summary: member events in the entry)
                response.memberships_moved = True

        for room_id in sorted(new_invites):
            if room_filter.includes_room(room_id):
                invite_state = await self._stripped_state(
                    room_id, memberships.current[room_id].event_id
                )
                if invite_state and invite_state[-1]["sender"] in ignored:
                    continue  # invites from ignored users are not sent (ignore_users.md)
                response.invite[room_id] = {"invite_state": {"events": invite_state}}
        for room_id in sorted(new_knocks):
            if room_filter.includes_room(room_id):
                response.knock[room_id] = {
                    "knock_state": {
                        "events": await self._stripped_state(
                            room_id, memberships.current[room_id].event_id
                        )
                    }
                }
        await self._peek_rooms(req, joined, now, ignored, response)
        for room_id, change in sorted(leave_events.items()):
            if room_filter.includes_room(room_id):
                # joined and left within the range: the client never had the room, so it
                # gets the room's state in full
                joined_in_range = any(
                    c.room_id == room_id and c.membership == "join" for c in snapshot.changes
                ) and (room_id not in snapshot.joined_at_since)
                response.leave[room_id] = await self._left_room(
                    req, room_id, change, since, full=joined_in_range, ignored=ignored
                )

        await self._other_streams(req, since, now, response, ignored)
        return response

    async def _peek_rooms(
        self,
        req: SyncRequest,
        joined: set[str],
        now: StreamToken,
        ignored: frozenset[str],
        response: _Response,
    ) -> None:
        """``rooms.peek`` (MSC2753): each room the device peeks into, in full on the first sync
        after the peek, then when it has events in the range. A joined room is no longer
        peeked (it is in ``join``)."""
        peeks = self._peeked(req)
        if not peeks:
            return
        since = None if req.since is None or req.full_state else req.since.get(StreamName.EVENTS)
        for room_id, full_from in sorted(peeks.items()):
            if room_id in joined:
                if self._peeks is not None and req.device_id is not None:
                    self._peeks.unpeek(req.user_id, req.device_id, room_id)
                continue
            if not req.filter.room.includes_room(room_id):
                continue
            full = since is None or full_from < 0 or since < full_from
            entry = await self._room_entry(
                req,
                room_id,
                from_pos=None if full else since,
                to_pos=now.get(StreamName.EVENTS),
                full=full,
                ignored=ignored,
            )
            if full or entry["timeline"]["events"] or entry["state"]["events"]:
                entry["ephemeral"] = {"events": []}
                entry["account_data"] = {"events": []}
                response.peek[room_id] = entry
                if full and self._peeks is not None and req.device_id is not None:
                    self._peeks.delivered(
                        req.user_id, req.device_id, room_id, now.get(StreamName.EVENTS)
                    )

    async def _joined_room(
        self,
        req: SyncRequest,
        room_id: str,
        *,
        full: bool,
        since: StreamToken | None,
        now: StreamToken,
        joined_at: int,
        ignored: frozenset[str],
    ) -> JsonDict:
        from_pos = None if full or since is None else since.get(StreamName.EVENTS)
        entry = await self._room_entry(
            req,
            room_id,
            from_pos=from_pos,
            to_pos=now.get(StreamName.EVENTS),
            full=full,
            joined_at=joined_at,
            ignored=ignored,
        )
        if full and since is not None and not req.full_state:
            # newly joined in an incremental sync: the client has none of the room's history
            # (Synapse marks these timelines limited too)
            entry["timeline"]["limited"] = True
        return entry

    async def _left_room(
        self,
        req: SyncRequest,
        room_id: str,
        change: MembershipRow,
        since: StreamToken | None,
        *,
        full: bool,
        ignored: frozenset[str],
    ) -> JsonDict:
        from_pos = None if since is None else since.get(StreamName.EVENTS)
        entry = await self._room_entry(
            req,
            room_id,
            from_pos=from_pos,
            to_pos=change.stream_ordering,
            full=full or since is None,
            ignored=ignored,
        )
        entry["account_data"] = {"events": []}
        entry.pop("summary", None)
        return entry

    async def _room_entry(
        self,
        req: SyncRequest,
        room_id: str,
        *,
        from_pos: int | None,
        to_pos: int,
        full: bool,
        joined_at: int | None = None,
        ignored: frozenset[str] = frozenset(),
    ) -> JsonDict:
        """The timeline and state of one room for the range (from_pos, to_pos]; ``joined_at``:
        the position of the user's current join event, if joined; ``ignored``: senders whose
        non-state events are left out."""
        filt = req.filter
        timeline_filter = filt.room.timeline
        limit = filt.timeline_limit
        window = await self._window(room_id, from_pos, to_pos, limit)
        timeline, limited, dropped = await self._select_timeline(
            req,
            room_id,
            window.timeline,
            window.exhausted,
            from_pos,
            to_pos,
            limit,
            timeline_filter,
            joined_at,
            ignored,
        )
        state_ids = await self._state_delta(
            req, room_id, timeline, from_pos, to_pos, full=full, limited=limited, dropped=dropped
        )
        full = full or from_pos is None
        summary: JsonDict | None = None
        members_changed = any(k[0] == "m.room.member" for k in state_ids) or any(
            e.event.type == "m.room.member" for e in timeline
        )
        if full or members_changed:
            summary = await self._summary(room_id, req.user_id)
            if filt.room.state.lazy_load_members and summary.get("m.heroes"):
                await self._add_hero_members(req, room_id, summary["m.heroes"], timeline, state_ids)
        state_filter = filt.room.state
        state_events = await self._events.get_events(state_ids.values()) if state_ids else {}
        state_json = [
            self._format(req, state_events[eid])
            for eid in sorted(state_ids.values())
            if eid in state_events
        ]
        state_json = [e for e in state_json if state_filter.matches(e)]

        txns: dict[str, str] = {}
        if req.device_id is not None:
            own = [e.event.event_id for e in timeline if e.event.sender == req.user_id]
            txns = await self._store.transaction_ids(req.user_id, req.device_id, room_id, own)
        timeline_json = [self._format(req, e, txns.get(e.event.event_id)) for e in timeline]
        if self._unsigned is not None and (limited or any(e.redacted for e in timeline)):
            # bundled aggregations when limited (spec), redacted_because always
            extras = await self._unsigned.unsigned_extras(
                req.user_id, timeline, aggregations=limited
            )
            for event_json, stored in zip(timeline_json, timeline, strict=True):
                extra = extras.get(stored.event.event_id)
                if extra and isinstance(event_json.get("unsigned"), dict):
                    event_json["unsigned"].update(extra)
        if full and not limited and timeline:
            # a full timeline that holds the room's whole range: Synapse's prev_batch is the end
            # of the range (paging back from it returns the timeline again; clients that page
            # back de-duplicate), so a client that pages back right away still gets events
            last = timeline[-1]
            prev_batch = f"t{last.depth}_{last.stream_ordering + 1}"
        else:
            prev_batch = _prev_batch(timeline, window.timeline)
        entry: JsonDict = {
            "timeline": {"events": timeline_json, "limited": limited, "prev_batch": prev_batch},
            "state": {"events": state_json},
        }
        if summary is not None:
            entry["summary"] = summary
        if joined_at is not None and self._counts is not None:
            counts = await self._counts.counts(
                req.user_id,
                room_id,
                to_pos,
                joined_at=joined_at,
                window=window.timeline,
                window_from=from_pos,
                window_complete=window.exhausted,
            )
            entry.update(counts.sync_fields(filt.unread_thread_notifications))
        return entry

    async def _state_delta(
        self,
        req: SyncRequest,
        room_id: str,
        timeline: list[StoredEvent],
        from_pos: int | None,
        to_pos: int,
        *,
        full: bool,
        limited: bool,
        dropped: bool,
    ) -> dict[StateKey, str]:
        """The ``state`` of a room entry: what the client must lay over the state it had at
        ``from_pos`` to get the state at the timeline's start (Synapse's rule).

        Full (initial sync, newly joined, ``full_state``): the state at the timeline's start and
        at its end, less what the timeline shows. Incremental without a gap (the timeline holds
        every event of the range): nothing. With a gap (``limited``, or events dropped by a
        filter, history visibility or the ignore list): the state at the timeline's start and
        end, less the state at ``from_pos`` and what the timeline shows; so state changes that
        fell into the gap (or were filtered out) are sent.

        Lazy-loading members: only the member events of the timeline's senders whose membership
        the timeline does not show first (and, on a full room, the user's own); members who came
        or went in a gap are still sent. Unless ``include_redundant_members``, a member event
        this device was already sent (see :class:`_LazyMembers`) is left out.
        """
        filt = req.filter.room.state
        lazy = filt.lazy_load_members
        full = full or from_pos is None
        timeline_state: dict[StateKey, str] = {}
        wanted: set[str] | None = None
        if lazy:
            wanted = set()
            for stored in timeline:
                event = stored.event
                if ("m.room.member", event.sender) not in timeline_state:
                    wanted.add(event.sender)
                if event.state_key is not None:
                    timeline_state[(event.type, event.state_key)] = event.event_id
            if full:
                wanted.add(req.user_id)
        else:
            timeline_state = {
                (e.event.type, e.event.state_key): e.event.event_id
                for e in timeline
                if e.event.state_key is not None
            }

        def lazy_only(state: dict[StateKey, str] | None) -> dict[StateKey, str]:
            if state is None:
                return {}
            if wanted is None:
                return state
            return {k: v for k, v in state.items() if k[0] != "m.room.member" or k[1] in wanted}

        start_pos = timeline[0].stream_ordering - 1 if timeline else to_pos
        # The state at the end adds something only when events of the window were dropped (a
        # linear timeline holding every event after its start brings the start state to the
        # end state by itself) or, with lazy-loading in a gap, for members who came or went
        # in the gap (they are not in the lazily filtered start). Otherwise it is not read.
        read_end = dropped and start_pos != to_pos
        state_ids: dict[StateKey, str]
        if full:
            if read_end:
                start, end = await self._store.states_at(room_id, [start_pos, to_pos])
            else:
                (start,) = await self._store.states_at(room_id, [start_pos])
                end = start
                if start is None and start_pos != to_pos:
                    # no state before the timeline's first event: a room joined over
                    # federation starts with the join, whose state came with it
                    (end,) = await self._store.states_at(room_id, [to_pos])
            state_ids = _calculate_state(
                timeline_state, lazy_only(start), lazy_only(end), {}, lazy=lazy
            )
        elif not (limited or dropped):
            state_ids = {}
            if wanted and timeline:
                (start,) = await self._store.states_at(room_id, [start_pos])
                state_ids = {k: v for k, v in lazy_only(start).items() if k[0] == "m.room.member"}
        else:
            assert from_pos is not None
            if read_end or (lazy and limited and start_pos != to_pos):
                start, previous, end = await self._store.states_at(
                    room_id, [start_pos, from_pos, to_pos]
                )
            else:
                start, previous = await self._store.states_at(room_id, [start_pos, from_pos])
                end = start
            # a gap: every state change in it counts, members included
            gap_only = (lambda state: state or {}) if limited else lazy_only
            state_ids = _calculate_state(
                timeline_state, lazy_only(start), gap_only(end), gap_only(previous), lazy=lazy
            )

        if lazy and not filt.include_redundant_members and req.device_id is not None:
            sent = self._lazy_members.for_device(req.user_id, req.device_id)
            if req.since is None:
                sent.clear()  # a new sync sequence: the client starts from nothing
            else:
                state_ids = {
                    k: v
                    for k, v in state_ids.items()
                    if k[0] != "m.room.member" or sent.get(k[1]) != v
                }
            for key, event_id in (*state_ids.items(), *timeline_state.items()):
                if key[0] == "m.room.member":
                    sent.put(key[1], event_id)
        return state_ids

    async def _add_hero_members(
        self,
        req: SyncRequest,
        room_id: str,
        heroes: list[str],
        timeline: list[StoredEvent],
        state_ids: dict[StateKey, str],
    ) -> None:
        """Lazy-loading: the heroes' member events go into ``state`` unless the entry or an
        earlier sync of the device already has them (spec: ``m.heroes``)."""
        shown = {k[1] for k in state_ids if k[0] == "m.room.member"} | {
            e.event.state_key for e in timeline if e.event.type == "m.room.member"
        }
        missing = [h for h in heroes if h not in shown]
        if not missing:
            return
        current = await self._events.get_current_state_ids(room_id)
        sent = (
            self._lazy_members.for_device(req.user_id, req.device_id)
            if req.device_id is not None and not req.filter.room.state.include_redundant_members
            else None
        )
        for hero in missing:
            event_id = current.get(("m.room.member", hero))
            if event_id is None or (sent is not None and sent.get(hero) == event_id):
                continue
            state_ids[("m.room.member", hero)] = event_id
            if sent is not None:
                sent.put(hero, event_id)

    async def _select_timeline(
        self,
        req: SyncRequest,
        room_id: str,
        window: list[StoredEvent],
        exhausted: bool,
        from_pos: int | None,
        to_pos: int,
        limit: int,
        timeline_filter: RoomEventFilter,
        joined_at: int | None,
        ignored: frozenset[str],
    ) -> tuple[list[StoredEvent], bool, bool]:
        """The timeline (oldest first), whether it is limited, and whether events of the range
        were dropped by the filter, history visibility or the ignore list (so the state must be
        diffed).

        When events are dropped, older windows of the range are read (each twice the size of
        the last) until ``limit`` + 1 events are kept or the range is exhausted, so a sparse
        filter still reaches its limit and ``limited`` means that older matching events exist.
        Past :data:`_MAX_REFILLS` reads the timeline is declared ``limited``.
        """
        candidates = list(window)  # newest first
        selected: list[StoredEvent] = []
        dropped = False
        refills = 0
        size = 2 * (limit + 1)
        current_ids: frozenset[str] | None = None
        while True:
            batch = candidates[: limit + 1 - len(selected)] if candidates else []
            consumed = len(batch)
            keep = await self._visible(req.user_id, batch, joined_at)
            if len(keep) != len(batch) and any(e.event.state_key is not None for e in batch):
                # the room's current state is shown whatever the history visibility (as
                # Synapse does): a client must see the events that made the state it gets
                if current_ids is None:
                    (state,) = await self._store.states_at(room_id, [to_pos])
                    current_ids = frozenset((state or {}).values())
                kept = {e.event.event_id for e in keep}
                keep = [
                    e for e in batch if e.event.event_id in kept or e.event.event_id in current_ids
                ]
            matching = [
                e
                for e in keep
                if timeline_filter.matches(client_event(e))
                and (e.event.state_key is not None or e.event.sender not in ignored)
            ]
            if len(matching) != len(batch):
                dropped = True
            selected.extend(matching)
            candidates = candidates[consumed:]
            if len(selected) > limit:
                return list(reversed(selected[:limit])), True, dropped
            if candidates:
                continue
            if exhausted:
                return list(reversed(selected)), False, dropped
            if refills >= _MAX_REFILLS or not batch:
                return list(reversed(selected)), True, dropped
            refills += 1
            oldest = batch[-1].stream_ordering
            size *= 2
            more = await self._store.older_events(
                room_id, from_pos=from_pos, before_pos=oldest, limit=size
            )
            exhausted = len(more) < size
            candidates = more

    async def _visible(
        self, user_id: str, newest_first: list[StoredEvent], joined_at: int | None
    ) -> list[StoredEvent]:
        if self._visibility is None or not newest_first:
            return newest_first
        if joined_at is not None and newest_first[-1].stream_ordering > joined_at:
            # joined before all of them and still joined: a member sees everything
            return newest_first
        visible = await self._visibility.filter_events_for_user(
            user_id, list(reversed(newest_first))
        )
        return list(reversed(visible))

    async def _window(
        self, room_id: str, from_pos: int | None, to_pos: int, limit: int
    ) -> RoomWindow:
        """The room's newest events in (from_pos, to_pos]. When a message wakes every member
        of a room, their syncs ask for the same range: those reads are shared. Entries are kept
        only while ``to_pos`` is the newest position asked for (a later event, a redaction
        included, starts afresh), so nothing stale is served."""
        if to_pos != self._windows_at:
            if to_pos < self._windows_at:
                return await self._store.load_room(
                    room_id, from_pos=from_pos, to_pos=to_pos, limit=limit
                )
            self._windows.clear()
            self._windows_at = to_pos
        key = (room_id, from_pos, limit)
        window = self._windows.get(key)
        if window is None:
            window = await self._store.load_room(
                room_id, from_pos=from_pos, to_pos=to_pos, limit=limit
            )
            if to_pos == self._windows_at and len(self._windows) < _WINDOW_CACHE_SIZE:
                self._windows[key] = window
        return window

    def _format(self, req: SyncRequest, stored: StoredEvent, txn_id: str | None = None) -> JsonDict:
        if req.filter.event_format == "federation":
            # the PDU as servers exchange it, with its event ID (which room versions 3 and up
            # leave out of the PDU) and ``unsigned.age`` (as Synapse serves it)
            pdu = dict(stored.event.pdu)
            pdu["event_id"] = stored.event.event_id
            unsigned = pdu.get("unsigned")
            pdu["unsigned"] = {
                **(unsigned if isinstance(unsigned, dict) else {}),
                "age": max(0, self._clock.time_ms() - stored.event.origin_server_ts),
            }
            if txn_id is not None:
                pdu["unsigned"]["transaction_id"] = txn_id
            return req.filter.format_event(pdu)
        event = client_event(stored)
        del event["room_id"]  # sync's ClientEventWithoutRoomID
        unsigned = event["unsigned"]
        unsigned["age"] = max(0, self._clock.time_ms() - stored.event.origin_server_ts)
        if txn_id is not None:
            unsigned["transaction_id"] = txn_id
        return req.filter.format_event(event)

    async def _summary(self, room_id: str, user_id: str) -> JsonDict:
        counts, heroes = await self._store.summary(room_id, user_id)
        summary: JsonDict = {
            "m.joined_member_count": counts.get("join", 0),
            "m.invited_member_count": counts.get("invite", 0),
        }
        if heroes is not None:
            summary["m.heroes"] = heroes
        return summary

    async def _stripped_state(self, room_id: str, membership_event_id: str) -> list[JsonDict]:
        current = await self._events.get_current_state_events(room_id)
        out: list[JsonDict] = []
        for event_type in STRIPPED_STATE_TYPES:
            stored = current.get((event_type, ""))
            if stored is not None:
                out.append(_stripped(stored))
        own = await self._events.get_event(membership_event_id)
        if own is not None:
            given = own.event.pdu.get("unsigned", {}).get("invite_room_state")
            if not out and isinstance(given, list):
                # an invite from another server to a room we are not in: its stripped state
                # (of the member events, only the inviter's)
                inviter_id = own.event.sender
                out = [
                    e
                    for e in given
                    if isinstance(e, dict)
                    and (
                        e.get("type") != "m.room.member"
                        or (e.get("state_key") == inviter_id != own.event.state_key)
                    )
                ]
            inviter = current.get(("m.room.member", own.event.sender))
            if inviter is not None and own.event.sender != own.event.state_key:
                out.append(_stripped(inviter))  # the inviter's member event, as Synapse
            out.append(_stripped(own))
        return out

    async def _ephemeral(
        self,
        req: SyncRequest,
        since: StreamToken | None,
        now: StreamToken,
        rooms: set[str],
    ) -> dict[str, list[JsonDict]]:
        out: dict[str, list[JsonDict]] = {}
        if not rooms:
            return out
        if self._typing is not None:
            typing_since = None if since is None else since.get(StreamName.TYPING)
            if typing_since is not None and typing_since > self._typing.current_position():
                typing_since = None  # the counter restarted with the server
            if typing_since is None or typing_since < now.get(StreamName.TYPING):
                for room_id, event in self._typing.typing_events(rooms, typing_since).items():
                    out.setdefault(room_id, []).append(event)
        if self._receipts is not None:
            from_pos = None if since is None else since.get(StreamName.RECEIPTS)
            if from_pos is None or from_pos < now.get(StreamName.RECEIPTS):
                found = await self._receipts.receipt_events(
                    req.user_id, rooms, from_pos, now.get(StreamName.RECEIPTS)
                )
                for room_id, event in found.items():
                    out.setdefault(room_id, []).append(event)
        return out

    async def _account_data_changes(
        self, req: SyncRequest, since: StreamToken | None, now: StreamToken
    ) -> tuple[dict[str, list[JsonDict]], list[JsonDict]]:
        from_pos = 0 if since is None else since.get(StreamName.ACCOUNT_DATA)
        to_pos = now.get(StreamName.ACCOUNT_DATA)
        per_room: dict[str, list[JsonDict]] = {}
        global_: list[JsonDict] = []
        if from_pos >= to_pos:
            return per_room, global_
        for row in await self._account_data.changed_since(req.user_id, from_pos):
            if row.stream_id > to_pos:
                continue
            event = {"type": row.data_type, "content": dict(row.content)}
            if row.room_id == GLOBAL:
                if req.filter.account_data.matches(event):
                    global_.append(event)
            else:
                per_room.setdefault(row.room_id, []).append(event)
        return per_room, global_

    async def _other_streams(
        self,
        req: SyncRequest,
        since: StreamToken | None,
        now: StreamToken,
        response: _Response,
        ignored: frozenset[str],
    ) -> None:
        if self._presence is not None:
            from_pos = None if since is None else since.get(StreamName.PRESENCE)
            if from_pos is None or from_pos < now.get(StreamName.PRESENCE):
                events = await self._presence.presence_events(
                    req.user_id, from_pos, now.get(StreamName.PRESENCE)
                )
                response.presence = [e for e in events if req.filter.presence.matches(e)]
            newly = response.newly_shared - {req.user_id} - {e["sender"] for e in response.presence}
            if newly:
                events = await self._presence.presence_of(
                    req.user_id, newly, now.get(StreamName.PRESENCE)
                )
                response.presence += [e for e in events if req.filter.presence.matches(e)]
        if self._e2ee is None or req.device_id is None:
            return
        device = req.device_id
        to_device_from = 0 if since is None else since.get(StreamName.TO_DEVICE)
        to_device_now = now.get(StreamName.TO_DEVICE)
        if to_device_from < to_device_now:
            messages, reached = await self._e2ee.to_device_messages(
                req.user_id, device, to_device_from, to_device_now
            )
            # messages from ignored users are dropped (acknowledged with the rest)
            response.to_device = [m for m in messages if m.get("sender") not in ignored]
            if reached < to_device_now:
                response.next_batch = StreamToken(
                    {**response.next_batch.positions, StreamName.TO_DEVICE: reached}
                )
        if since is not None and (
            since.get(StreamName.DEVICE_LISTS) < now.get(StreamName.DEVICE_LISTS)
            or response.memberships_moved
        ):
            changed, left = await self._e2ee.device_list_changes(req.user_id, since, now)
            response.device_changed = changed
            response.device_left = left
        response.otk_counts = await self._e2ee.one_time_key_counts(req.user_id, device)
        response.fallback_types = await self._e2ee.unused_fallback_key_types(req.user_id, device)


def _calculate_state(
    timeline_contains: dict[StateKey, str],
    timeline_start: dict[StateKey, str],
    timeline_end: dict[StateKey, str],
    previous: dict[StateKey, str],
    *,
    lazy: bool,
) -> dict[StateKey, str]:
    """(state at the timeline's start and end) less (state at the previous sync) less (the
    timeline's state events). Looking at the end too catches state the timeline does not show
    (filtered out, or on a fork). With lazy-loading, members at the start are sent even when the
    previous sync had them (the caller removes those this device was already sent). Where the
    start and the end both leave an event for one key, the end's wins."""
    previous_ids = set(previous.values())
    if lazy:
        previous_ids.difference_update(
            v for k, v in timeline_start.items() if k[0] == "m.room.member"
        )
    shown = set(timeline_contains.values())
    out: dict[StateKey, str] = {}
    for state in (timeline_start, timeline_end):
        for key, event_id in state.items():
            if event_id not in previous_ids and event_id not in shown:
                out[key] = event_id
    return out


def _joined_in(entry: JsonDict) -> set[str]:
    """Users whose join is among the entry's timeline or state events."""
    return {
        str(e["state_key"])
        for e in (*entry["timeline"]["events"], *entry["state"]["events"])
        if e.get("type") == "m.room.member"
        and isinstance(e.get("content"), dict)
        and e["content"].get("membership") == "join"
        and isinstance(e.get("state_key"), str)
    }


def _stripped(stored: StoredEvent) -> JsonDict:
    event = stored.event
    return {
        "type": event.type,
        "state_key": event.state_key or "",
        "content": dict(event.content),
        "sender": event.sender,
    }


def _prev_batch(timeline: list[StoredEvent], window: list[StoredEvent]) -> str:
    """A ``/messages`` token that pages backwards from just before the timeline's first event."""
    first = timeline[0] if timeline else (window[0] if window else None)
    if first is None:
        return "t9223372036854775807_9223372036854775807"
    if timeline:
        return f"t{first.depth}_{first.stream_ordering}"
    return f"t{first.depth}_{first.stream_ordering + 1}"
