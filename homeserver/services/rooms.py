"""Rooms: creation with presets and the membership of local users.

Spec: client-server-api/_index.md › Room creation (``POST /createRoom``: the events a server
sends, in order), › Room membership (joining, knocking, restricted rooms, leaving, forgetting),
› Room events; ``create_room.yaml``, ``joining.yaml``, ``knocking.yaml``, ``leaving.yaml``.

Every write goes through :class:`~homeserver.services.events.EventCreationService`, so the
auth rules (power levels, bans, join rules) decide what is allowed; this module only chooses
the events (and, for restricted joins, the authorising user). Reads live in
:class:`~homeserver.services.room_history.RoomHistory` (``RoomService.history``), each through
the history-visibility rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, cast

from federation.core.errors import InvalidIdentifier, UnsupportedRoomVersion
from federation.core.events import Event, StateKey
from federation.core.ids import parse_room_alias, parse_room_id, parse_user_id
from federation.core.power_levels import get_named_level, get_power_level
from federation.core.room_versions import RoomVersion, get_room_version
from homeserver.clock import Clock
from homeserver.errors import Codes, Forbidden, InvalidParam, MatrixError, NotFound
from homeserver.services.events import CreatedEvent, EventCreationService
from homeserver.services.requester import Requester
from homeserver.services.room_history import RoomHistory
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage.events import EventStore, StoredEvent, TxnKey
from homeserver.storage.profile import ProfileStore
from homeserver.storage.users import UserStore

__all__ = [
    "CreateRoomRequest",
    "MembershipAction",
    "RoomAliases",
    "RoomService",
    "StateEventSpec",
    "check_transition",
]

Preset = Literal["private_chat", "trusted_private_chat", "public_chat"]
#: What a client asks of a membership: ``kick`` and ``unban`` are both ``leave`` events.
MembershipAction = Literal["join", "invite", "knock", "leave", "kick", "ban", "unban"]
#: Memberships a kick applies to.
_IN_ROOM = ("join", "invite", "knock")
#: ``/join`` body keys that are not member content: the server writes the first two, and
#: ``third_party_signed`` is a request parameter.
_SERVER_MEMBER_KEYS = frozenset(
    {"membership", "join_authorised_via_users_server", "third_party_signed"}
)
PRESETS: tuple[str, ...] = ("private_chat", "trusted_private_chat", "public_chat")


class RoomAliases(Protocol):
    """The room directory's aliases, as room creation and joins need them (the directory
    service implements it)."""

    async def resolve_alias(self, alias: str) -> tuple[str, list[str]] | None:
        """The room ID and servers of ``alias``, or None if it is unknown."""
        ...

    async def create_alias(self, alias: str, room_id: str, creator: str) -> None:
        """Map ``alias`` to ``room_id`` (``creator`` owns the mapping)."""
        ...

    async def alias_available(self, alias: str) -> bool:
        """True if ``alias`` is not taken."""
        ...

    async def set_room_visibility(self, room_id: str, public: bool) -> None:
        """Publish the room in (or withdraw it from) the room directory."""
        ...


class RemoteJoins(Protocol):
    """Joining rooms this server is not in, through their resident servers, and rejecting
    invites to them (``services/federation_join_remote.py``)."""

    async def join(
        self, user_id: str, room_id: str, hints: Sequence[str], content: Mapping[str, Any]
    ) -> CreatedEvent:
        """Join through the hinted servers (then the inviter's, then the room ID's)."""
        ...

    async def candidates(self, user_id: str, room_id: str, hints: Sequence[str]) -> list[str]:
        """The servers a join would ask, best first (empty: none known)."""
        ...

    async def reject_invite(
        self, user_id: str, room_id: str, reason: str | None = None
    ) -> CreatedEvent:
        """Reject an invite to a room this server is not in."""
        ...


class RemoteInvites(Protocol):
    """Sending invites of other servers' users (``services/federation_invites.py``)."""

    async def send_invite(self, event: Event) -> None:
        """Have the invitee's server accept ``event`` (raises a MatrixError if it does not)."""
        ...

    async def invite_persisted(self, event_id: str) -> None:
        """The accepted invite is stored: keep the invitee's server's signature on it."""
        ...


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
    room_alias_name: str | None = None
    name: str | None = None
    topic: str | None = None
    invite: Sequence[str] = ()
    is_direct: bool = False
    initial_state: Sequence[StateEventSpec] = ()
    creation_content: Mapping[str, Any] = field(default_factory=dict)
    power_level_content_override: Mapping[str, Any] | None = None
    room_version: str | None = None


def _no_guests(requester: Requester, what: str) -> None:
    """Spec: client-server › Guest access lists what guests may do in rooms: read, join,
    leave, send events and state. Everything else answers ``403 M_GUEST_ACCESS_FORBIDDEN``.

    Raises:
        MatrixError: ``requester`` is a guest.
    """
    if requester.is_guest:
        raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, f"Guests may not {what}")


def _membership_of(stored: StoredEvent | None) -> str | None:
    if stored is None:
        return None
    value = stored.event.content.get("membership")
    return value if isinstance(value, str) else None


class RoomService:
    """Room creation, membership and reads.

    Args:
        events: the event store (reads).
        creator: the event creation path (writes).
        visibility: the history-visibility rule (every read).
        clock: for ``unsigned.age`` and forget times.
        server_name: our server name.
        default_room_version: ``config.default_room_version``.
        aliases: the room directory's aliases (``room_alias_name``, joins by alias,
            ``visibility: public``); without it those answer ``M_UNRECOGNIZED``/``M_NOT_FOUND``.
        users: the accounts, to tell guests (who leave a room when its ``m.room.guest_access``
            stops being ``can_join``); without it guests are not made to leave.
        profiles: the profiles, whose display name and avatar a join carries (unless the
            ``/join`` body gives its own); without it joins carry none.
    """

    def __init__(
        self,
        events: EventStore,
        creator: EventCreationService,
        *,
        visibility: HistoryVisibility,
        clock: Clock,
        server_name: str,
        default_room_version: str,
        aliases: RoomAliases | None = None,
        users: UserStore | None = None,
        profiles: ProfileStore | None = None,
    ) -> None:
        self._events = events
        self._creator = creator
        self._visibility = visibility
        self._clock = clock
        self._server_name = server_name
        self._default_version = default_room_version
        self._aliases = aliases
        self._users = users
        self._profiles = profiles
        self.history = RoomHistory(events, visibility, clock)
        """The reads (state, members, history), each through the history-visibility rule."""
        self._remote_joins: RemoteJoins | None = None
        self._remote_invites: RemoteInvites | None = None

    def use_federation(self, joins: RemoteJoins, invites: RemoteInvites) -> None:
        """Join rooms hosted elsewhere and invite other servers' users (wired in ``app.py``
        once the federation services exist: they need this service's event creation path)."""
        self._remote_joins = joins
        self._remote_invites = invites

    async def _host_in_room(self, room_id: str) -> bool:
        """Whether one of our users is joined to ``room_id`` (so local events can be built)."""
        if await self._events.get_room(room_id) is None:
            return False
        suffix = ":" + self._server_name
        return any(
            membership == "join" and user_id.endswith(suffix)
            for user_id, membership, _ in await self._events.get_members(room_id)
        )

    @property
    def visibility(self) -> HistoryVisibility:
        """The history-visibility rule every read applies (``/sync`` uses it too)."""
        return self._visibility

    @property
    def creator(self) -> EventCreationService:
        """The event creation path (its per-room locks serialise every write into a room)."""
        return self._creator

    # --- creation -------------------------------------------------------------------------------

    async def create_room(self, requester: Requester, req: CreateRoomRequest) -> str:
        """Create a room as the spec orders its events; return the room ID.

        Raises:
            MatrixError: ``M_UNSUPPORTED_ROOM_VERSION``, ``M_INVALID_PARAM`` (bad invitee or
                alias), ``M_ROOM_IN_USE`` (the alias is taken: checked before anything is
                created), ``M_FORBIDDEN`` (e.g. an override the auth rules reject),
                ``M_GUEST_ACCESS_FORBIDDEN`` for guests.
        """
        _no_guests(requester, "create rooms")
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
        alias = await self._check_new_alias(req.room_alias_name)
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

        creator_join: dict[str, Any] = {"membership": "join"}
        await self._add_profile(sender, creator_join)
        await state("m.room.member", creator_join, sender)
        creators = {sender, *create_content.get("additional_creators", [])}
        power = _power_levels(room_version, preset, sender, invitees, creators)
        if req.power_level_content_override:
            power.update(req.power_level_content_override)
        await state("m.room.power_levels", power)
        if alias is not None and self._aliases is not None:
            await self._aliases.create_alias(alias, room_id, sender)
            await state("m.room.canonical_alias", {"alias": alias})
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
        if req.visibility == "public" and self._aliases is not None:
            await self._aliases.set_room_visibility(room_id, True)
        return room_id

    async def _check_new_alias(self, localpart: str | None) -> str | None:
        """The full alias for ``room_alias_name``, checked to be free (before the room exists).

        Raises:
            MatrixError: ``M_UNRECOGNIZED`` without an alias directory, ``M_INVALID_PARAM`` for
                a bad local part, ``M_ROOM_IN_USE`` when the alias is taken.
        """
        if localpart is None:
            return None
        if self._aliases is None:
            raise MatrixError(400, Codes.UNRECOGNIZED, "Room aliases are not supported")
        alias = f"#{localpart}:{self._server_name}"
        if (
            not localpart
            or any(c in ":#" or c.isspace() or not c.isprintable() for c in localpart)
            or len(alias.encode()) > 255
        ):
            raise InvalidParam(f"Invalid room_alias_name {localpart!r}")
        try:
            parse_room_alias(alias)
        except InvalidIdentifier:
            raise InvalidParam(f"Invalid room_alias_name {localpart!r}") from None
        if not await self._aliases.alias_available(alias):
            raise MatrixError(400, Codes.ROOM_IN_USE, f"Room alias {alias} is already taken")
        return alias

    # --- membership and sending -----------------------------------------------------------------

    async def resolve_room(self, room_id_or_alias: str) -> str:
        """The room ID of a room ID or alias of a room this server is in.

        Raises:
            InvalidParam: neither a room ID nor an alias.
            NotFound: an unknown alias, or a room this server is not in (joining over
                federation is not supported yet, so ``via`` cannot help).
        """
        if room_id_or_alias.startswith("#"):
            try:
                parse_room_alias(room_id_or_alias)
            except InvalidIdentifier:
                raise InvalidParam(f"Invalid room alias {room_id_or_alias!r}") from None
            found = None
            if self._aliases is not None:
                found = await self._aliases.resolve_alias(room_id_or_alias)
            if found is None:
                raise NotFound(f"Room alias {room_id_or_alias} not found")
            room_id = found[0]
        else:
            room_id = check_room_id(room_id_or_alias)
        if await self._events.get_room(room_id) is None:
            raise NotFound("No known servers for this room (remote joins are not supported yet)")
        return room_id

    async def join(
        self,
        requester: Requester,
        room_id_or_alias: str,
        *,
        reason: str | None = None,
        extra_content: Mapping[str, Any] | None = None,
        via: Sequence[str] = (),
    ) -> str:
        """Join a room by ID or alias; return its ID. A room this server is not in is joined
        over federation through ``via``, the alias's servers, the inviter's server or the
        room ID's server. Restricted rooms (v8+) pick a local user
        who may invite as ``join_authorised_via_users_server``.

        Args:
            extra_content: further keys of the ``/join`` body, put into the member event's
                content as Synapse does (``membership`` and the authorising user are ours).

        Joining a room one has joined with the same content answers the existing event.

        Raises:
            NotFound: unknown alias or room.
            Forbidden: the join rules or a ban say no; a restricted room's conditions fail.
            MatrixError: ``M_UNABLE_TO_AUTHORISE_JOIN`` (none of the allowed rooms is known
                here), ``M_UNABLE_TO_GRANT_JOIN`` (no local user may authorise the join).
        """
        remote = await self._remote_join_target(requester.user_id, room_id_or_alias, via)
        if remote is not None:
            if requester.is_guest:
                raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guests join local rooms only")
            room_id, servers = remote
            remote_content = {
                k: v for k, v in (extra_content or {}).items() if k not in _SERVER_MEMBER_KEYS
            }
            if reason is not None:
                remote_content["reason"] = reason
            await self._add_profile(requester.user_id, remote_content)
            assert self._remote_joins is not None
            await self._remote_joins.join(requester.user_id, room_id, servers, remote_content)
            return room_id
        room_id = await self.resolve_room(room_id_or_alias)
        if requester.is_guest and not await self._guests_may_join(room_id):
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access not allowed")
        content: dict[str, Any] = {
            k: v for k, v in (extra_content or {}).items() if k not in _SERVER_MEMBER_KEYS
        }
        content["membership"] = "join"
        if reason is not None:
            content["reason"] = reason
        await self._add_profile(requester.user_id, content)
        authoriser = await self._restricted_join_authoriser(room_id, requester.user_id)
        if authoriser is not None:
            content["join_authorised_via_users_server"] = authoriser
        await self._change_membership(
            requester.user_id, room_id, requester.user_id, content, action="join"
        )
        return room_id

    async def _remote_join_target(
        self, user_id: str, room_id_or_alias: str, via: Sequence[str]
    ) -> tuple[str, list[str]] | None:
        """``(room ID, servers to ask)`` when the join must go over federation: this server is
        not in the room and knows a server to ask; None for a local join."""
        if self._remote_joins is None:
            return None
        hints = list(via)
        if room_id_or_alias.startswith("#"):
            try:
                parse_room_alias(room_id_or_alias)
            except InvalidIdentifier:
                raise InvalidParam(f"Invalid room alias {room_id_or_alias!r}") from None
            found = None
            if self._aliases is not None:
                found = await self._aliases.resolve_alias(room_id_or_alias)
            if found is None:
                raise NotFound(f"Room alias {room_id_or_alias} not found")
            room_id = found[0]
            hints.extend(found[1])
        else:
            room_id = check_room_id(room_id_or_alias)
        if await self._host_in_room(room_id):
            return None
        servers = await self._remote_joins.candidates(user_id, room_id, hints)
        if not servers:
            return None
        return room_id, servers

    async def _add_profile(self, user_id: str, content: dict[str, Any]) -> None:
        """Put the user's display name and avatar into a join's content where it has none
        (spec: Profiles › "Events on Change of Profile Information"; Synapse does the same,
        so clients show the member's name without a profile lookup). As in Synapse, both keys
        are always there, ``null`` when the profile has no such field."""
        if self._profiles is None:
            return
        for key in ("displayname", "avatar_url"):
            if key in content:
                continue
            found, value = await self._profiles.get_field(user_id, key)
            content[key] = value if found and isinstance(value, str) else None

    async def _guests_may_join(self, room_id: str) -> bool:
        """Spec: client-server › Guest access: guests may join a room whose
        ``m.room.guest_access`` is ``can_join``."""
        event = await self._events.get_current_state_event(room_id, "m.room.guest_access", "")
        return event is not None and event.event.content.get("guest_access") == "can_join"

    async def _guests_leave(self, room_id: str) -> None:
        """Guest access was revoked: every joined guest leaves (sent as the guest, as Synapse
        does: no one else may need the power to kick). A refusal is skipped."""
        if self._users is None or await self._guests_may_join(room_id):
            return
        for user_id, membership, _ in await self._events.get_members(room_id):
            if membership != "join" or not user_id.endswith(":" + self._server_name):
                continue
            account = await self._users.get_user(user_id)
            if account is None or not account.is_guest:
                continue
            try:
                await self._change_membership(
                    user_id, room_id, user_id, {"membership": "leave"}, action="leave"
                )
            except MatrixError:
                continue

    async def _restricted_join_authoriser(self, room_id: str, user_id: str) -> str | None:
        """Spec: client-server › Restricted rooms; server-server › Restricted rooms."""
        room = await self._events.get_room(room_id)
        if room is None:
            return None
        version = get_room_version(room.room_version)
        rules = await self._events.get_current_state_event(room_id, "m.room.join_rules", "")
        join_rule = rules.event.content.get("join_rule") if rules is not None else None
        restricted = (version.restricted_join_rule and join_rule == "restricted") or (
            version.knock_restricted_join_rule and join_rule == "knock_restricted"
        )
        if not restricted or rules is None:
            return None
        current = await self._events.get_current_state_event(room_id, "m.room.member", user_id)
        if _membership_of(current) in ("invite", "join"):
            return None  # an invite (or being in the room) needs no authorisation
        allow = rules.event.content.get("allow")
        allowed_rooms = [
            c["room_id"]
            for c in (allow if isinstance(allow, list) else [])
            if isinstance(c, dict)
            and c.get("type") == "m.room_membership"
            and isinstance(c.get("room_id"), str)
        ]
        satisfied = False
        known = False
        for other in allowed_rooms:
            if await self._events.get_room(other) is None:
                continue
            known = True
            member = await self._events.get_current_state_event(other, "m.room.member", user_id)
            if _membership_of(member) == "join":
                satisfied = True
                break
        if not satisfied:
            if allowed_rooms and not known:
                raise MatrixError(
                    400,
                    Codes.UNABLE_TO_AUTHORISE_JOIN,
                    "This server cannot check membership of any room that allows joining",
                )
            raise Forbidden("You do not belong to any of the rooms required to join this room")
        state = {
            k: s.event for k, s in (await self._events.get_current_state_events(room_id)).items()
        }
        invite_level = get_named_level(version, state, "invite")
        candidates: list[tuple[float, str]] = []
        for (event_type, member_id), event in state.items():
            if event_type != "m.room.member" or event.content.get("membership") != "join":
                continue
            if not member_id.endswith(":" + self._server_name):
                continue
            level = get_power_level(version, state, member_id)
            if level >= invite_level:
                candidates.append((-level, member_id))
        if not candidates:
            raise MatrixError(
                400, Codes.UNABLE_TO_GRANT_JOIN, "No user on this server can authorise the join"
            )
        return min(candidates)[1]

    async def knock(
        self, requester: Requester, room_id_or_alias: str, *, reason: str | None = None
    ) -> str:
        """Knock on a room (v7+, join rule ``knock`` or v10+ ``knock_restricted``).

        Raises:
            NotFound: unknown alias or room.
            Forbidden: the room version or join rule does not allow knocking, or the user is
                already in the room, invited or banned.
        """
        _no_guests(requester, "knock")
        room_id = await self.resolve_room(room_id_or_alias)
        content: dict[str, Any] = {"membership": "knock"}
        if reason is not None:
            content["reason"] = reason
        await self._change_membership(
            requester.user_id, room_id, requester.user_id, content, action="knock"
        )
        return room_id

    async def set_membership(
        self,
        requester: Requester,
        room_id: str,
        target: str,
        membership: Literal["join", "invite", "leave", "ban"],
        *,
        reason: str | None = None,
        action: MembershipAction | None = None,
        require_current: str | None = None,
    ) -> CreatedEvent:
        """Send ``target``'s member event as ``requester`` (invite, leave/kick/unban, ban).

        Args:
            action: what the client asked for (``kick`` and ``unban`` are both ``leave``);
                by default the membership itself, and for ``leave`` of another user an unban
                if they are banned, a kick otherwise.
            require_current: only if the target's membership is this now.

        Raises:
            InvalidParam: ``target`` is not a user ID.
            NotFound: the room is unknown here (joins over federation come later).
            Forbidden: the auth rules, the action's own rule (see :func:`check_transition`)
                or ``require_current`` say no.
        """
        try:
            parse_user_id(target)
        except InvalidIdentifier:
            raise InvalidParam(f"Invalid user ID {target!r}") from None
        if target != requester.user_id or membership not in ("join", "leave"):
            _no_guests(requester, "change other users' membership")
        if (
            self._remote_joins is not None
            and membership == "leave"
            and target == requester.user_id
            and not await self._host_in_room(room_id)
        ):
            current = await self._events.get_current_state_event(room_id, "m.room.member", target)
            if _membership_of(current) in ("invite", "knock"):
                # an invite to a room this server is not in: rejected through its servers
                return await self._remote_joins.reject_invite(target, room_id, reason)
        if await self._events.get_room(room_id) is None:
            raise NotFound("Unknown room")
        if require_current is not None:
            current = await self._events.get_current_state_event(room_id, "m.room.member", target)
            if _membership_of(current) != require_current:
                raise Forbidden(f"{target} is not {require_current} in the room")
        content: dict[str, Any] = {"membership": membership}
        if reason is not None:
            content["reason"] = reason
        return await self._change_membership(
            requester.user_id, room_id, target, content, action=action
        )

    async def _change_membership(
        self,
        sender: str,
        room_id: str,
        target: str,
        content: Mapping[str, Any],
        *,
        action: MembershipAction | None,
    ) -> CreatedEvent:
        """The one path of every local membership change (the membership endpoints and
        ``PUT /state/m.room.member``): the action's rule beyond the auth rules, then the
        event, whose auth rules :class:`EventCreationService` checks.

        A change to what the target's membership already is, by the same sender with the same
        content, answers the existing event (spec: "Joining room twice is idempotent"; Synapse
        does the same for every membership).
        """
        current = await self._events.get_current_state_event(room_id, "m.room.member", target)
        membership = content.get("membership")
        if not isinstance(membership, str):
            raise InvalidParam("'membership' must be a string")
        if action is None:
            action = _default_action(sender, target, membership, _membership_of(current))
        check_transition(action, target, _membership_of(current))
        existing = await self._unchanged(room_id, sender, current, content)
        if existing is not None:
            return existing
        remote_invite = None
        if (
            membership == "invite"
            and self._remote_invites is not None
            and not target.endswith(":" + self._server_name)
        ):
            remote_invite = self._remote_invites.send_invite  # the invitee's server first
        created = await self._creator.create_event(
            room_id,
            sender=sender,
            event_type="m.room.member",
            content=content,
            state_key=target,
            before_persist=remote_invite,
        )
        if remote_invite is not None and self._remote_invites is not None:
            await self._remote_invites.invite_persisted(created.event_id)
        return created

    async def _unchanged(
        self,
        room_id: str,
        sender: str,
        current: StoredEvent | None,
        content: Mapping[str, Any],
    ) -> CreatedEvent | None:
        """``current`` if sending ``content`` as ``sender`` would repeat it: same sender, same
        content, and the sender still joined (so a user who left learns nothing by it)."""
        if current is None or current.event.sender != sender or current.redacted:
            return None
        if dict(current.event.content) != dict(content):
            return None
        if current.event.state_tuple != ("m.room.member", sender):
            own = await self._events.get_current_state_event(room_id, "m.room.member", sender)
            if _membership_of(own) != "join":
                return None
        elif _membership_of(current) != "join":
            return None
        return CreatedEvent(current.event.event_id, room_id, current.stream_ordering)

    async def forget(self, requester: Requester, room_id: str) -> None:
        """Forget a room the user has left (or was banned from).

        Raises:
            MatrixError: ``400 M_UNKNOWN`` while joined, invited or knocking.
            NotFound: the user never had a membership in the room.
        """
        access = await self._visibility.get_access(room_id, requester.user_id)
        if access.membership is None or access.member_event_id is None:
            raise NotFound("You are not a member of this room")
        if access.membership not in ("leave", "ban"):
            raise MatrixError(400, Codes.UNKNOWN, f"User {requester.user_id} is in room {room_id}")
        await self._visibility.forget(
            requester.user_id, room_id, access.member_event_id, self._clock.time_ms()
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
        """Send a message (with a transaction ID) or a state event into ``room_id``.

        A member event goes through the membership path (the action's rules, see
        :func:`check_transition`). Setting state to what it is, as its sender, answers the
        existing event (Synapse's behaviour; SyTest "Setting state twice is idempotent").
        """
        if state_key is not None:
            if await self._events.get_room(room_id) is None:
                raise Forbidden("You are not in this room")
            if event_type == "m.room.member":
                try:
                    parse_user_id(state_key)
                except InvalidIdentifier:
                    raise InvalidParam(f"Invalid user ID {state_key!r}") from None
                membership = content.get("membership")
                if state_key != requester.user_id or membership not in ("join", "leave"):
                    _no_guests(requester, "change other users' membership")
                if (
                    requester.is_guest
                    and membership == "join"
                    and not await self._guests_may_join(room_id)
                ):
                    raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest access not allowed")
                return await self._change_membership(
                    requester.user_id, room_id, state_key, content, action=None
                )
            current = await self._events.get_current_state_event(room_id, event_type, state_key)
            existing = await self._unchanged(room_id, requester.user_id, current, content)
            if existing is not None:
                return existing
        txn = None
        if txn_id is not None:
            device = requester.device_id or ""
            txn = TxnKey(requester.user_id, device, room_id, txn_id)
        try:
            sent = await self._creator.create_event(
                room_id,
                sender=requester.user_id,
                event_type=event_type,
                content=content,
                state_key=state_key,
                txn=txn,
            )
        except NotFound:
            # the only NotFound of a send is an unknown room: do not reveal whether it exists
            raise Forbidden("You are not in this room") from None
        if event_type == "m.room.guest_access" and state_key == "":
            await self._guests_leave(room_id)
        return sent

    async def redact(
        self,
        requester: Requester,
        room_id: str,
        event_id: str,
        txn_id: str,
        reason: str | None = None,
    ) -> CreatedEvent:
        """Redact ``event_id`` (own events, or others' with the ``redact`` power level); not
        by guests."""
        _no_guests(requester, "redact events")
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

    # --- profile changes ------------------------------------------------------------------------

    async def update_member_profile(self, user_id: str, field: str, value: Any | None) -> int:
        """Send a new ``m.room.member`` (join) event with ``field`` (``displayname`` or
        ``avatar_url``) set to ``value`` (None: removed) into every room ``user_id`` has
        joined; return how many rooms were updated. A room that refuses is skipped.

        Spec: client-server › Profiles › "Events on Change of Profile Information".
        """
        updated = 0
        for room_id in await self._events.rooms_for_user(user_id, "join"):
            current = await self._events.get_current_state_event(room_id, "m.room.member", user_id)
            if current is None or _membership_of(current) != "join":
                continue
            content = dict(current.event.content)
            content.pop("join_authorised_via_users_server", None)
            content.pop("reason", None)
            if value is None:
                if field not in content:
                    continue
                content.pop(field)
            elif content.get(field) == value:
                continue
            else:
                content[field] = value
            try:
                await self._creator.create_event(
                    room_id,
                    sender=user_id,
                    event_type="m.room.member",
                    content=content,
                    state_key=user_id,
                )
            except MatrixError:
                continue
            updated += 1
        return updated


def _default_action(
    sender: str, target: str, membership: str, current: str | None
) -> MembershipAction:
    """The action a member event stands for when the client did not name one."""
    if membership == "leave" and sender != target:
        return "unban" if current == "ban" else "kick"
    if membership in ("join", "invite", "ban", "knock", "leave"):
        return cast(MembershipAction, membership)
    raise InvalidParam(f"Unknown membership {membership!r}")


def check_transition(action: MembershipAction, target: str, current: str | None) -> None:
    """The rules of a membership action beyond the auth rules (which allow a ``leave`` of
    anyone below the kick level): a kick needs the target in the room (joined, invited or
    knocking: kicking a banned user would unban them), an unban needs a banned target.

    Raises:
        Forbidden: the action does not apply to the target's current membership.
    """
    if action == "kick" and current not in _IN_ROOM:
        if current == "ban":
            raise Forbidden(f"{target} is banned from the room: unban them instead")
        raise Forbidden(f"{target} is not in the room")
    if action == "unban" and current != "ban":
        raise Forbidden(f"{target} is not banned from the room")


def check_room_id(value: str) -> str:
    """``value`` if it is a room ID.

    Raises:
        InvalidParam: it is not.
    """
    try:
        parse_room_id(value)
    except InvalidIdentifier:
        raise InvalidParam(f"Invalid room ID {value!r}") from None
    return value


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
