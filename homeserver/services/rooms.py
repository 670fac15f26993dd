"""Rooms: creation with presets, membership of local users, state and history reads.

Spec: client-server-api/_index.md › Room creation (``POST /createRoom``: the events a server
sends, in order), › Room membership, › Room events; ``create_room.yaml``.

Every write goes through :class:`~homeserver.services.events.EventCreationService`, so the
auth rules (power levels, bans, join rules) decide what is allowed; this module only chooses
the events. Reads require the requester to be joined to the room, or the room to be
``world_readable``. TODO(issue 6): full history visibility (``shared``/``invited``/``joined``
for users who have left: events up to their leave), which the ``/messages`` and
``/event`` paths will filter per event.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from federation.core.errors import InvalidIdentifier, UnsupportedRoomVersion
from federation.core.events import StateKey
from federation.core.ids import parse_user_id
from federation.core.room_versions import RoomVersion, get_room_version
from homeserver.errors import Codes, Forbidden, InvalidParam, MatrixError, NotFound
from homeserver.services.events import CreatedEvent, EventCreationService, client_event
from homeserver.services.requester import Requester
from homeserver.storage.events import EventStore, StoredEvent, TxnKey

__all__ = ["CreateRoomRequest", "MessagesPage", "RoomService", "StateEventSpec"]

Preset = Literal["private_chat", "trusted_private_chat", "public_chat"]
PRESETS: tuple[str, ...] = ("private_chat", "trusted_private_chat", "public_chat")

_END = (2**62, 2**62)
_MAX_LIMIT = 1000


@dataclass(frozen=True, slots=True)
class StateEventSpec:
    type: str
    state_key: str
    content: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CreateRoomRequest:
    """The parsed body of ``POST /createRoom``."""

    preset: Preset | None = None
    visibility: Literal["public", "private"] = "private"
    name: str | None = None
    topic: str | None = None
    invite: Sequence[str] = ()
    is_direct: bool = False
    initial_state: Sequence[StateEventSpec] = ()
    creation_content: Mapping[str, Any] = field(default_factory=dict)
    power_level_content_override: Mapping[str, Any] | None = None
    room_version: str | None = None


@dataclass(frozen=True, slots=True)
class MessagesPage:
    chunk: list[dict[str, Any]]
    start: str
    end: str | None


def _token(stored: StoredEvent) -> str:
    return f"t{stored.depth}_{stored.stream_ordering}"


def parse_topo_token(token: str) -> tuple[int, int]:
    """``t<depth>_<stream>`` → (depth, stream).

    Raises:
        InvalidParam: not such a token.
    """
    try:
        if not token.startswith("t"):
            raise ValueError(token)
        depth, stream = token[1:].split("_", 1)
        return int(depth), int(stream)
    except ValueError:
        raise InvalidParam(f"Invalid pagination token {token!r}") from None


class RoomService:
    """Room creation, membership and reads.

    Args:
        events: the event store (reads).
        creator: the event creation path (writes).
        server_name: our server name.
        default_room_version: ``config.default_room_version``.
    """

    def __init__(
        self,
        events: EventStore,
        creator: EventCreationService,
        *,
        server_name: str,
        default_room_version: str,
    ) -> None:
        self._events = events
        self._creator = creator
        self._server_name = server_name
        self._default_version = default_room_version

    # --- creation -------------------------------------------------------------------------------

    async def create_room(self, requester: Requester, req: CreateRoomRequest) -> str:
        """Create a room as the spec orders its events; return the room ID.

        Raises:
            MatrixError: ``M_UNSUPPORTED_ROOM_VERSION``, ``M_INVALID_PARAM`` (bad invitee),
                ``M_FORBIDDEN`` (e.g. an override the auth rules reject).
        """
        try:
            room_version = get_room_version(req.room_version or self._default_version)
        except UnsupportedRoomVersion:
            raise MatrixError(
                400, Codes.UNSUPPORTED_ROOM_VERSION, f"Unsupported room version {req.room_version}"
            ) from None
        for user_id in req.invite:
            try:
                parse_user_id(user_id)
            except InvalidIdentifier:
                raise InvalidParam(f"Invalid user ID to invite: {user_id!r}") from None
        sender = requester.user_id
        preset = req.preset or ("public_chat" if req.visibility == "public" else "private_chat")
        invitees = [u for u in dict.fromkeys(req.invite) if u != sender]

        create_content: dict[str, Any] = dict(req.creation_content)
        create_content["room_version"] = room_version.identifier
        if not room_version.implicit_room_creator:
            create_content["creator"] = sender
        if room_version.privileged_creators and preset == "trusted_private_chat" and invitees:
            extra = list(create_content.get("additional_creators") or [])
            create_content["additional_creators"] = list(dict.fromkeys([*extra, *invitees]))
        created = await self._creator.create_room_event(
            room_version,
            sender=sender,
            content=create_content,
            is_public=req.visibility == "public",
        )
        room_id = created.room_id

        async def state(event_type: str, content: Mapping[str, Any], key: str = "") -> None:
            await self._creator.create_event(
                room_id, sender=sender, event_type=event_type, content=content, state_key=key
            )

        await state("m.room.member", {"membership": "join"}, sender)
        creators = {sender, *create_content.get("additional_creators", [])}
        power = _power_levels(room_version, preset, sender, invitees, creators)
        if req.power_level_content_override:
            power.update(req.power_level_content_override)
        await state("m.room.power_levels", power)
        initial: dict[StateKey, Mapping[str, Any]] = {
            (s.type, s.state_key): s.content for s in req.initial_state
        }
        preset_events: list[tuple[str, dict[str, Any]]] = [
            ("m.room.join_rules", {"join_rule": "public" if preset == "public_chat" else "invite"}),
            ("m.room.history_visibility", {"history_visibility": "shared"}),
        ]
        if preset != "public_chat":
            preset_events.append(("m.room.guest_access", {"guest_access": "can_join"}))
        for event_type, content in preset_events:
            if (event_type, "") not in initial:
                await state(event_type, content)
        for (event_type, key), initial_content in initial.items():
            if event_type in ("m.room.create", "m.room.member", "m.room.power_levels"):
                continue  # spec: these come from their own fields
            await state(event_type, initial_content, key)
        if req.name is not None:
            await state("m.room.name", {"name": req.name})
        if req.topic is not None:
            await state("m.room.topic", {"topic": req.topic})
        for user_id in invitees:
            invite: dict[str, Any] = {"membership": "invite"}
            if req.is_direct:
                invite["is_direct"] = True
            await state("m.room.member", invite, user_id)
        return room_id

    # --- membership and sending -----------------------------------------------------------------

    async def set_membership(
        self,
        requester: Requester,
        room_id: str,
        target: str,
        membership: Literal["join", "invite", "leave", "ban"],
        *,
        reason: str | None = None,
        require_current: str | None = None,
    ) -> CreatedEvent:
        """Send ``target``'s member event as ``requester`` (join, invite, leave/kick/unban, ban).

        Args:
            require_current: only if the target's membership is this now (unban: ``"ban"``).

        Raises:
            NotFound: the room is unknown here (joins over federation come later).
            Forbidden: the auth rules or ``require_current`` say no.
        """
        if await self._events.get_room(room_id) is None:
            raise NotFound("Unknown room (joining remote rooms is not supported yet)")
        if require_current is not None:
            current = await self._membership(room_id, target)
            if current != require_current:
                raise Forbidden(f"{target} is not {require_current} in the room")
        content: dict[str, Any] = {"membership": membership}
        if reason is not None:
            content["reason"] = reason
        return await self._creator.create_event(
            room_id,
            sender=requester.user_id,
            event_type="m.room.member",
            content=content,
            state_key=target,
        )

    async def send(
        self,
        requester: Requester,
        room_id: str,
        event_type: str,
        content: Mapping[str, Any],
        *,
        state_key: str | None = None,
        txn_id: str | None = None,
    ) -> CreatedEvent:
        """Send a message (with a transaction ID) or a state event into ``room_id``."""
        txn = None
        if txn_id is not None:
            device = requester.device_id or ""
            txn = TxnKey(requester.user_id, device, room_id, txn_id)
        if await self._events.get_room(room_id) is None:
            raise Forbidden("You are not in this room")  # do not reveal whether it exists
        return await self._creator.create_event(
            room_id,
            sender=requester.user_id,
            event_type=event_type,
            content=content,
            state_key=state_key,
            txn=txn,
        )

    async def redact(
        self,
        requester: Requester,
        room_id: str,
        event_id: str,
        txn_id: str,
        reason: str | None = None,
    ) -> CreatedEvent:
        """Redact ``event_id`` (own events, or others' with the ``redact`` power level)."""
        if await self._events.get_room(room_id) is None:
            raise Forbidden("You are not in this room")
        content: dict[str, Any] = {}
        if reason is not None:
            content["reason"] = reason
        return await self._creator.create_event(
            room_id,
            sender=requester.user_id,
            event_type="m.room.redaction",
            content=content,
            txn=TxnKey(requester.user_id, requester.device_id or "", room_id, "redact/" + txn_id),
            redacts=event_id,
        )

    # --- reads ----------------------------------------------------------------------------------

    async def _membership(self, room_id: str, user_id: str) -> str | None:
        event = await self._events.get_current_state_event(room_id, "m.room.member", user_id)
        if event is None:
            return None
        value = event.event.content.get("membership")
        return value if isinstance(value, str) else None

    async def _require_reader(self, requester: Requester, room_id: str) -> None:
        if await self._membership(room_id, requester.user_id) == "join":
            return
        hv = await self._events.get_current_state_event(room_id, "m.room.history_visibility", "")
        if hv is not None and hv.event.content.get("history_visibility") == "world_readable":
            return
        raise Forbidden("You are not in this room")

    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> dict[str, Any]:
        await self._require_reader(requester, room_id)
        stored = await self._events.get_event(event_id)
        if stored is None or stored.outlier or client_event(stored)["room_id"] != room_id:
            raise NotFound("Event not found")
        return client_event(stored)

    async def get_state(self, requester: Requester, room_id: str) -> list[dict[str, Any]]:
        await self._require_reader(requester, room_id)
        state = await self._events.get_current_state_events(room_id)
        return [client_event(s) for _, s in sorted(state.items())]

    async def get_state_event(
        self, requester: Requester, room_id: str, event_type: str, state_key: str
    ) -> StoredEvent:
        await self._require_reader(requester, room_id)
        stored = await self._events.get_current_state_event(room_id, event_type, state_key)
        if stored is None:
            raise NotFound("Event not found")
        return stored

    async def joined_rooms(self, requester: Requester) -> list[str]:
        return await self._events.rooms_for_user(requester.user_id, "join")

    async def members(
        self, requester: Requester, room_id: str, *, joined_only: bool = False
    ) -> list[StoredEvent]:
        await self._require_reader(requester, room_id)
        rows = await self._events.get_members(room_id)
        ids = [e for _, m, e in rows if not joined_only or m == "join"]
        found = await self._events.get_events(ids)
        return [found[e] for e in ids if e in found]

    async def messages(
        self,
        requester: Requester,
        room_id: str,
        *,
        direction: Literal["b", "f"],
        from_token: str | None,
        to_token: str | None,
        limit: int,
    ) -> MessagesPage:
        """A page of the room's timeline in topological order (``b``: newest first)."""
        await self._require_reader(requester, room_id)
        limit = max(1, min(limit, _MAX_LIMIT))
        if from_token is not None:
            start = parse_topo_token(from_token)
        else:
            start = _END if direction == "b" else (0, 0)
        stop = parse_topo_token(to_token) if to_token is not None else None
        page = await self._events.paginate(room_id, start, direction, limit)
        if stop is not None:
            if direction == "b":
                page = [e for e in page if (e.depth, e.stream_ordering) > stop]
            else:
                page = [e for e in page if (e.depth, e.stream_ordering) <= stop]
        start_token = from_token or (
            f"t{start[0]}_{start[1]}" if direction == "f" else "t" + "_".join(map(str, _END))
        )
        end = _token(page[-1]) if len(page) == limit else None
        return MessagesPage([client_event(e) for e in page], start_token, end)


def _power_levels(
    room_version: RoomVersion,
    preset: str,
    sender: str,
    invitees: Sequence[str],
    creators: set[str],
) -> dict[str, Any]:
    users: dict[str, int] = {}
    if not room_version.privileged_creators:
        users[sender] = 100
    if preset == "trusted_private_chat":
        for user_id in invitees:
            if not (room_version.privileged_creators and user_id in creators):
                users[user_id] = 100
    return {
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 50 if preset == "public_chat" else 0,
    }
