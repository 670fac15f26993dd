"""Rooms: creation, sending, state, membership and history.

Spec: https://spec.matrix.org/v1.16/client-server-api/#rooms (``create_room.yaml``,
``room_send.yaml``, ``room_state.yaml``, ``rooms.yaml``, ``message_pagination.yaml``,
``joining.yaml``, ``inviting.yaml``, ``leaving.yaml``, ``kicking.yaml``, ``banning.yaml``,
``knocking.yaml``, ``third_party_membership.yaml``, ``list_joined_rooms.yaml``,
``event_context.yaml``, ``room_event_by_timestamp.yaml``).

Bodies, paths and query strings are parsed into typed values here (bad IDs and types are
``M_INVALID_PARAM``, bad bodies ``M_BAD_JSON``); the rules (auth rules, power levels, history
visibility) live in :mod:`homeserver.services.rooms`, :mod:`homeserver.services.events` and
:mod:`homeserver.services.visibility`.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from quart import request

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.api.client._body import optional_json_body, optional_string, required_string
from homeserver.api.raw import RawRequest
from homeserver.errors import BadJson, Forbidden, InvalidParam, NotFound
from homeserver.services.filtering import (
    RoomEventFilter,
    decode_filter_param,
    parse_room_event_filter,
)
from homeserver.services.requester import Requester
from homeserver.services.rooms import (
    PRESETS,
    CreateRoomRequest,
    MembershipAction,
    RoomService,
    StateEventSpec,
    check_room_id,
)
from homeserver.services.third_party_invites import (
    ThirdPartyInvite,
    ThirdPartyInviteService,
    parse_third_party_invite,
)

__all__ = ["RoomsApi", "SendEventEndpoint"]

_PREFIX = "/_matrix/client/v3"
_V1 = "/_matrix/client/v1"
_MAX_FIELD_BYTES = 255
_MEMBERSHIPS = ("join", "invite", "knock", "leave", "ban")


def _object(body: JsonDict, key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadJson(f"{key!r} must be an object")
    return value


def _invite_3pid(body: JsonDict) -> list[ThirdPartyInvite]:
    """createRoom's ``invite_3pid``: a list of third-party invites (checked before the room
    is created)."""
    value = body.get("invite_3pid")
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise BadJson("'invite_3pid' must be a list of objects")
    return [parse_third_party_invite(v) for v in value]


def _check_event_type(event_type: str) -> str:
    """Raises InvalidParam for an empty event type or one over 255 bytes."""
    if not event_type or len(event_type.encode()) > _MAX_FIELD_BYTES:
        raise InvalidParam("Event types are 1 to 255 bytes")
    return event_type


def _check_state_key(state_key: str) -> str:
    if len(state_key.encode()) > _MAX_FIELD_BYTES:
        raise InvalidParam("State keys are at most 255 bytes")
    return state_key


def _check_event_id(event_id: str) -> str:
    """``event_id`` if it can be an event ID: the ``$`` sigil, at most 255 bytes, and no
    whitespace or control character anywhere (``$id\n`` is not ``$id``). An unknown ID of
    that shape is for the caller to answer ``404``.

    Raises:
        InvalidParam: it cannot.
    """
    if (
        not event_id.startswith("$")
        or len(event_id.encode(errors="replace")) > _MAX_FIELD_BYTES
        or any(c.isspace() or not c.isprintable() for c in event_id)
    ):
        raise InvalidParam(f"Invalid event ID {event_id!r}")
    return event_id


def _int_arg(name: str, default: int | None = None) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    try:
        return int(raw)
    except ValueError:
        raise InvalidParam(f"{name!r} must be an integer") from None


def _filter_arg() -> RoomEventFilter | None:
    """The ``filter`` query parameter: an inline ``RoomEventFilter`` JSON object."""
    raw = request.args.get("filter")
    if raw is None or raw == "":
        return None
    if not raw.lstrip().startswith("{"):
        raise InvalidParam("'filter' must be a RoomEventFilter JSON object")
    return parse_room_event_filter(decode_filter_param(raw))


def _membership_arg(name: str) -> str | None:
    value = request.args.get(name)
    if value is not None and value not in _MEMBERSHIPS:
        raise InvalidParam(f"{name!r} must be one of {', '.join(_MEMBERSHIPS)}")
    return value


def parse_create_room(body: JsonDict) -> CreateRoomRequest:
    """The ``POST /createRoom`` body as a :class:`CreateRoomRequest`.

    Raises:
        BadJson: a field has the wrong type.
    """
    preset = optional_string(body, "preset")
    if preset is not None and preset not in PRESETS:
        raise BadJson(f"Unknown preset {preset!r}")
    visibility = optional_string(body, "visibility") or "private"
    if visibility not in ("public", "private"):
        raise BadJson("'visibility' must be 'public' or 'private'")
    invite = body.get("invite") or []
    if not isinstance(invite, list) or not all(isinstance(u, str) for u in invite):
        raise BadJson("'invite' must be a list of user IDs")
    initial: list[StateEventSpec] = []
    raw_initial = body.get("initial_state") or []
    if not isinstance(raw_initial, list):
        raise BadJson("'initial_state' must be a list")
    for item in raw_initial:
        if not isinstance(item, dict) or not isinstance(item.get("content"), dict):
            raise BadJson("each initial_state entry needs a type and a content object")
        state_key = item.get("state_key", "")
        if not isinstance(state_key, str):
            raise BadJson("'state_key' must be a string")
        event_type = _check_event_type(required_string(item, "type"))
        initial.append(StateEventSpec(event_type, _check_state_key(state_key), item["content"]))
    is_direct = body.get("is_direct", False)
    if not isinstance(is_direct, bool):
        raise BadJson("'is_direct' must be a boolean")
    return CreateRoomRequest(
        preset=cast(Any, preset),
        visibility=cast(Literal["public", "private"], visibility),
        room_alias_name=optional_string(body, "room_alias_name"),
        name=optional_string(body, "name"),
        topic=optional_string(body, "topic"),
        invite=invite,
        is_direct=is_direct,
        initial_state=initial,
        creation_content=_object(body, "creation_content") or {},
        power_level_content_override=_object(body, "power_level_content_override"),
        room_version=optional_string(body, "room_version"),
    )


class RoomsApi:
    """Room endpoints of the client-server API.

    Args:
        rooms: the room service.
        max_body_bytes: the request body limit.
    """

    def __init__(self, rooms: RoomService, max_body_bytes: int) -> None:
        self._rooms = rooms
        self._max_body = max_body_bytes
        self._third_party: ThirdPartyInviteService | None = None

    def use_third_party_invites(self, service: ThirdPartyInviteService) -> None:
        """Serve third-party invites (``invite_3pid``, the invite body with ``medium``)."""
        self._third_party = service

    def _third_party_invites(self) -> ThirdPartyInviteService:
        if self._third_party is None:
            raise Forbidden("Third-party invites are not supported on this server")
        return self._third_party

    @property
    def rooms(self) -> RoomService:
        """The room service behind these routes (for the composition root)."""
        return self._rooms

    # --- creation and sending ---------------------------------------------------------------

    @route("POST", f"{_PREFIX}/createRoom", auth="user", rate_limit="client_default")
    async def create_room(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/createRoom — spec: #post_matrixclientv3createroom.

        "Create a new room with various configuration options." Returns ``room_id``.
        """
        body = await optional_json_body(self._max_body)
        req = parse_create_room(body)
        invite_3pid = _invite_3pid(body)
        if invite_3pid:
            self._third_party_invites()
        room_id = await self._rooms.create_room(requester, req)
        for invite in invite_3pid:  # "A list of objects representing third-party IDs to invite"
            await self._third_party_invites().invite(requester, room_id, invite)
        return {"room_id": room_id}

    @route(
        "PUT",
        f"{_PREFIX}/rooms/{{room_id}}/redact/{{event_id}}/{{txn_id}}",
        auth="user",
        rate_limit="message",
    )
    async def redact(
        self, requester: Requester, room_id: str, event_id: str, txn_id: str
    ) -> JsonDict:
        """PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}.

        Spec: #put_matrixclientv3roomsroomidredacteventidtxnid. "Strips all information out of
        an event which isn't critical to the integrity of the server-side representation of
        the room." Idempotent per device and ``txnId``.
        """
        check_room_id(room_id)
        _check_event_id(event_id)
        body = await optional_json_body(self._max_body)
        sent = await self._rooms.redact(
            requester, room_id, event_id, txn_id, reason=optional_string(body, "reason")
        )
        return {"event_id": sent.event_id}

    # --- state ----------------------------------------------------------------------------------

    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/state", auth="user")
    async def get_state(self, requester: Requester, room_id: str) -> Any:
        """GET /_matrix/client/v3/rooms/{roomId}/state — spec: #get_matrixclientv3roomsroomidstate.

        "Get the state events for the current state of a room." A user who left gets the
        state as it was when they left.
        """
        return await self._rooms.history.get_state(requester, check_room_id(room_id))

    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/state/{{event_type}}", auth="user")
    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/state/{{event_type}}/", auth="user")
    @route(
        "GET", f"{_PREFIX}/rooms/{{room_id}}/state/{{event_type}}/{{state_key:path}}", auth="user"
    )
    async def get_state_event(
        self, requester: Requester, room_id: str, event_type: str, state_key: str = ""
    ) -> Any:
        """GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}.

        Spec: #get_matrixclientv3roomsroomidstateeventtypestatekey. "Looks up the contents of a
        state event in a room." ``?format=event`` returns the whole event.
        """
        check_room_id(room_id)
        _check_event_type(event_type)
        _check_state_key(state_key)
        stored = await self._rooms.history.get_state_event(
            requester, room_id, event_type, state_key
        )
        if request.args.get("format") == "event":
            return (await self._rooms.history.serialize(requester, [stored]))[0]
        return dict(stored.event.content)

    @route("PUT", f"{_PREFIX}/rooms/{{room_id}}/state/{{event_type}}", auth="user")
    @route("PUT", f"{_PREFIX}/rooms/{{room_id}}/state/{{event_type}}/", auth="user")
    @route(
        "PUT", f"{_PREFIX}/rooms/{{room_id}}/state/{{event_type}}/{{state_key:path}}", auth="user"
    )
    async def put_state_event(
        self, requester: Requester, room_id: str, event_type: str, state_key: str = ""
    ) -> JsonDict:
        """PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}.

        Spec: #put_matrixclientv3roomsroomidstateeventtypestatekey. "State events can be sent
        using this endpoint." Returns the ``event_id``.
        """
        check_room_id(room_id)
        _check_event_type(event_type)
        _check_state_key(state_key)
        body = await read_json_body(self._max_body)
        if event_type == "m.room.member" and body.get("membership") not in _MEMBERSHIPS:
            raise InvalidParam("unsupported membership for a state PUT")
        sent = await self._rooms.send(requester, room_id, event_type, body, state_key=state_key)
        return {"event_id": sent.event_id}

    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/event/{{event_id}}", auth="user")
    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}.

        Spec: #get_matrixclientv3roomsroomideventeventid. "Get a single event based on
        roomId/eventId. You must have permission to retrieve this event." An event history
        visibility hides is ``404``, like an unknown one, and so is any event of a room the
        user may not read at all (as Synapse answers; SyTest "/event/ on non world readable
        room does not work").
        """
        check_room_id(room_id)
        _check_event_id(event_id)
        try:
            return await self._rooms.history.get_event(requester, room_id, event_id)
        except Forbidden:
            raise NotFound("Event not found") from None

    # --- membership -----------------------------------------------------------------------------

    def _via(self) -> list[str]:
        """``via`` (and the deprecated ``server_name``) query parameters: the servers to join
        a room this server is not in through."""
        return request.args.getlist("via") or request.args.getlist("server_name")

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/join", auth="user", rate_limit="client_default")
    async def join(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/join — spec: #post_matrixclientv3roomsroomidjoin.

        "This API starts a user's participation in a particular room." ``reason`` and any
        other keys of the body are put into the member event's content (as Synapse does);
        restricted rooms are joined through a local authorising user. Joining again with the
        same content answers the existing event.
        """
        check_room_id(room_id)
        body = await optional_json_body(self._max_body)
        joined = await self._rooms.join(
            requester,
            room_id,
            reason=optional_string(body, "reason"),
            extra_content=body,
            via=self._via(),
        )
        return {"room_id": joined}

    @route("POST", f"{_PREFIX}/join/{{room_id_or_alias}}", auth="user", rate_limit="client_default")
    async def join_by_id_or_alias(self, requester: Requester, room_id_or_alias: str) -> JsonDict:
        """POST /_matrix/client/v3/join/{roomIdOrAlias}.

        Spec: #post_matrixclientv3joinroomidoralias. "This API starts a user's participation in
        a particular room." Aliases are resolved through the room directory; ``via`` and
        ``server_name`` are accepted. The body's keys go into the member event's content, as
        for ``POST /rooms/{roomId}/join``.
        """
        body = await optional_json_body(self._max_body)
        joined = await self._rooms.join(
            requester,
            room_id_or_alias,
            reason=optional_string(body, "reason"),
            extra_content=body,
            via=self._via(),
        )
        return {"room_id": joined}

    @route(
        "POST", f"{_PREFIX}/knock/{{room_id_or_alias}}", auth="user", rate_limit="client_default"
    )
    async def knock(self, requester: Requester, room_id_or_alias: str) -> JsonDict:
        """POST /_matrix/client/v3/knock/{roomIdOrAlias}.

        Spec: #post_matrixclientv3knockroomidoralias.

        "This API 'knocks' on the room to ask for permission to join, if the user is allowed
        to knock on the room." Room versions 7+, join rule ``knock`` (or ``knock_restricted``).
        """
        self._via()
        body = await optional_json_body(self._max_body)
        knocked = await self._rooms.knock(
            requester, room_id_or_alias, reason=optional_string(body, "reason")
        )
        return {"room_id": knocked}

    async def _target_action(
        self,
        requester: Requester,
        room_id: str,
        membership: Literal["invite", "leave", "ban"],
        *,
        action: MembershipAction,
    ) -> JsonDict:
        check_room_id(room_id)
        body = await read_json_body(self._max_body)
        target = required_string(body, "user_id")
        await self._rooms.set_membership(
            requester,
            room_id,
            target,
            membership,
            reason=optional_string(body, "reason"),
            action=action,
        )
        return {}

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/invite", auth="user", rate_limit="client_default")
    async def invite(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/invite.

        Spec: #post_matrixclientv3roomsroomidinvite. "This API invites a user to participate
        in a particular room." ``reason`` goes on the invite. The third-party form
        (``third_party_membership.yaml``:
        ``id_server``, ``id_access_token``, ``medium``, ``address``) goes to
        :mod:`homeserver.services.third_party_invites`.
        """
        check_room_id(room_id)
        body = await read_json_body(self._max_body)
        if "user_id" not in body and {"medium", "address"} & body.keys():
            service = self._third_party_invites()
            await service.invite(requester, room_id, parse_third_party_invite(body))
            return {}
        return await self._target_action(requester, room_id, "invite", action="invite")

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/leave", auth="user", rate_limit="client_default")
    async def leave(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/leave.

        Spec: #post_matrixclientv3roomsroomidleave. "This API stops a user participating in a
        particular room." Also rejects an invite and retracts a knock.
        """
        check_room_id(room_id)
        body = await optional_json_body(self._max_body)
        await self._rooms.set_membership(
            requester, room_id, requester.user_id, "leave", reason=optional_string(body, "reason")
        )
        return {}

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/forget", auth="user", rate_limit="client_default")
    async def forget(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/forget.

        Spec: #post_matrixclientv3roomsroomidforget. "This API stops a user remembering about a
        particular room." Only after leaving (``400 M_UNKNOWN`` otherwise); afterwards the
        room's history reads as if the user had never been in it.
        """
        check_room_id(room_id)
        await optional_json_body(self._max_body)
        await self._rooms.forget(requester, room_id)
        return {}

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/kick", auth="user", rate_limit="client_default")
    async def kick(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/kick — spec: #post_matrixclientv3roomsroomidkick.

        "Kick a user from the room." "The caller must have the required power level in order
        to perform this operation": and the target must be in the room (joined, invited or
        knocking): kicking anyone else is ``403 M_FORBIDDEN``, a banned user included (a
        kick would unban them).
        """
        return await self._target_action(requester, room_id, "leave", action="kick")

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/ban", auth="user", rate_limit="client_default")
    async def ban(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/ban — spec: #post_matrixclientv3roomsroomidban.

        "Ban a user in the room."
        """
        return await self._target_action(requester, room_id, "ban", action="ban")

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/unban", auth="user", rate_limit="client_default")
    async def unban(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/unban.

        Spec: #post_matrixclientv3roomsroomidunban.

        "Unban a user from the room." Only a banned user can be unbanned (403 otherwise).
        """
        return await self._target_action(requester, room_id, "leave", action="unban")

    # --- lists and history ----------------------------------------------------------------------

    @route("GET", f"{_PREFIX}/joined_rooms", auth="user")
    async def joined_rooms(self, requester: Requester) -> JsonDict:
        """GET /_matrix/client/v3/joined_rooms — spec: #get_matrixclientv3joined_rooms.

        "This API returns a list of the user's current rooms."
        """
        return {"joined_rooms": await self._rooms.history.joined_rooms(requester)}

    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/joined_members", auth="user")
    async def joined_members(self, requester: Requester, room_id: str) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/joined_members.

        Spec: #get_matrixclientv3roomsroomidjoined_members. "This API returns a map of MXIDs to
        member info objects for members of the room. The current user must be in the room for
        it to work, unless it is an Application Service" (or the room is world-readable).
        """
        members = await self._rooms.history.joined_members(requester, check_room_id(room_id))
        joined: dict[str, Any] = {}
        for stored in members:
            content = stored.event.content
            joined[stored.event.state_key or ""] = {
                "display_name": content.get("displayname"),
                "avatar_url": content.get("avatar_url"),
            }
        return {"joined": joined}

    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/members", auth="user")
    async def members(self, requester: Requester, room_id: str) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/members.

        Spec: #get_matrixclientv3roomsroomidmembers. "Get the list of members for this room."
        ``at`` (a ``/messages`` or ``/sync`` token), ``membership`` and ``not_membership``;
        a user who left sees the members as they were when they left.
        """
        chunk = await self._rooms.history.members(
            requester,
            check_room_id(room_id),
            at=request.args.get("at"),
            membership=_membership_arg("membership"),
            not_membership=_membership_arg("not_membership"),
        )
        return {"chunk": chunk}

    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/messages", auth="user")
    async def messages(self, requester: Requester, room_id: str) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/messages.

        Spec: #get_matrixclientv3roomsroomidmessages. "This API returns a list of message and
        state events for a room. It uses pagination query parameters to paginate history in
        the room." ``dir`` is ``b`` or ``f``; ``from``/``to`` are tokens from earlier answers or
        ``/sync``; ``filter`` is a ``RoomEventFilter``. Events history visibility hides are
        left out.
        """
        check_room_id(room_id)
        direction = request.args.get("dir", "b")
        if direction not in ("b", "f"):
            raise InvalidParam("'dir' must be 'b' or 'f'")
        limit = _int_arg("limit", 10)
        assert limit is not None
        page = await self._rooms.history.messages(
            requester,
            room_id,
            direction=cast(Literal["b", "f"], direction),
            from_token=request.args.get("from"),
            to_token=request.args.get("to"),
            limit=limit,
            event_filter=_filter_arg(),
        )
        out: JsonDict = {"chunk": page.chunk, "start": page.start}
        if page.end is not None:
            out["end"] = page.end
        if page.state:
            out["state"] = page.state
        return out

    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/context/{{event_id}}", auth="user")
    async def context(self, requester: Requester, room_id: str, event_id: str) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}.

        Spec: #get_matrixclientv3roomsroomidcontexteventid. "This API returns a number of events
        that happened just before and after the specified event." ``limit`` (default 10) is
        shared by both sides; ``start``/``end`` page on with ``/messages``.
        """
        check_room_id(room_id)
        _check_event_id(event_id)
        limit = _int_arg("limit", 10)
        assert limit is not None
        if limit < 0:
            raise InvalidParam("'limit' must not be negative")
        page = await self._rooms.history.context(
            requester, room_id, event_id, limit=limit, event_filter=_filter_arg()
        )
        return {
            "start": page.start,
            "end": page.end,
            "event": page.event,
            "events_before": page.events_before,
            "events_after": page.events_after,
            "state": page.state,
        }

    @route("GET", f"{_V1}/rooms/{{room_id}}/timestamp_to_event", auth="user")
    async def timestamp_to_event(self, requester: Requester, room_id: str) -> JsonDict:
        """GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event.

        Spec: #get_matrixclientv1roomsroomidtimestamp_to_event. "Get the ID of the event closest
        to the given timestamp, in the direction specified by the dir parameter." Only events
        the user may see are candidates.
        """
        check_room_id(room_id)
        ts = _int_arg("ts")
        if ts is None:
            raise InvalidParam("'ts' is required")
        direction = request.args.get("dir")
        if direction not in ("b", "f"):
            raise InvalidParam("'dir' must be 'b' or 'f'")
        found = await self._rooms.history.timestamp_to_event(
            requester, room_id, ts, cast(Literal["b", "f"], direction)
        )
        return {"event_id": found.event.event_id, "origin_server_ts": found.event.origin_server_ts}


class SendEventEndpoint:
    """PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}, served as a raw endpoint
    (:mod:`homeserver.api.raw`): the request every message is.

    Spec: #put_matrixclientv3roomsroomidsendeventtypetxnid. "This endpoint is used to send a
    message event to a room." The same ``txnId`` from the same device returns the same
    ``event_id``.

    Args:
        rooms: the room service.
        max_body_bytes: the body limit (``413 M_TOO_LARGE`` above it).
    """

    method = "PUT"
    path = f"{_PREFIX}/rooms/{{room_id}}/send/{{event_type}}/{{txn_id}}"
    rate_limit: str | None = "message"

    def __init__(self, rooms: RoomService, max_body_bytes: int) -> None:
        self._rooms = rooms
        self.json_body_limit = max_body_bytes

    async def __call__(self, request: RawRequest) -> JsonDict:
        room_id = request.params["room_id"]
        event_type = request.params["event_type"]
        check_room_id(room_id)
        _check_event_type(event_type)
        assert request.body is not None
        sent = await self._rooms.send(
            request.requester, room_id, event_type, request.body, txn_id=request.params["txn_id"]
        )
        return {"event_id": sent.event_id}
