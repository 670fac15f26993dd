"""Rooms: creation, sending, state, membership and history.

Spec: https://spec.matrix.org/v1.16/client-server-api/#rooms (``create_room.yaml``,
``room_send.yaml``, ``room_state.yaml``, ``rooms.yaml``, ``message_pagination.yaml``,
``joining.yaml``, ``inviting.yaml``, ``leaving.yaml``, ``kicking.yaml``, ``banning.yaml``,
``list_joined_rooms.yaml``).

Bodies are parsed into typed values here; the rules (auth rules, power levels, who may read)
live in :mod:`homeserver.services.rooms` and :mod:`homeserver.services.events`.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from quart import request

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.api.client._body import optional_json_body, optional_string, required_string
from homeserver.errors import BadJson, Codes, InvalidParam, MatrixError
from homeserver.services.events import client_event
from homeserver.services.requester import Requester
from homeserver.services.rooms import PRESETS, CreateRoomRequest, RoomService, StateEventSpec

__all__ = ["RoomsApi"]

_PREFIX = "/_matrix/client/v3"


def _object(body: JsonDict, key: str) -> dict[str, Any] | None:
    value = body.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise BadJson(f"{key!r} must be an object")
    return value


def parse_create_room(body: JsonDict) -> CreateRoomRequest:
    """The ``POST /createRoom`` body as a :class:`CreateRoomRequest`.

    Raises:
        BadJson: a field has the wrong type.
        MatrixError: ``room_alias_name`` (aliases are not implemented yet: M_UNRECOGNIZED).
    """
    preset = optional_string(body, "preset")
    if preset is not None and preset not in PRESETS:
        raise BadJson(f"Unknown preset {preset!r}")
    visibility = optional_string(body, "visibility") or "private"
    if visibility not in ("public", "private"):
        raise BadJson("'visibility' must be 'public' or 'private'")
    if body.get("room_alias_name") is not None:
        raise MatrixError(400, Codes.UNRECOGNIZED, "room_alias_name is not supported yet")
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
        initial.append(StateEventSpec(required_string(item, "type"), state_key, item["content"]))
    is_direct = body.get("is_direct", False)
    if not isinstance(is_direct, bool):
        raise BadJson("'is_direct' must be a boolean")
    return CreateRoomRequest(
        preset=cast(Any, preset),
        visibility=cast(Literal["public", "private"], visibility),
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

    # --- creation and sending ---------------------------------------------------------------

    @route("POST", f"{_PREFIX}/createRoom", auth="user", rate_limit="client_default")
    async def create_room(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/createRoom — spec: #post_matrixclientv3createroom.

        "Create a new room with various configuration options." Returns ``room_id``.
        """
        req = parse_create_room(await optional_json_body(self._max_body))
        return {"room_id": await self._rooms.create_room(requester, req)}

    @route(
        "PUT",
        f"{_PREFIX}/rooms/{{room_id}}/send/{{event_type}}/{{txn_id}}",
        auth="user",
        rate_limit="message",
    )
    async def send(
        self, requester: Requester, room_id: str, event_type: str, txn_id: str
    ) -> JsonDict:
        """PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}.

        Spec: #put_matrixclientv3roomsroomidsendeventtypetxnid. "This endpoint is used to send a
        message event to a room." The same ``txnId`` from the same device returns the same
        ``event_id``.
        """
        body = await read_json_body(self._max_body)
        sent = await self._rooms.send(requester, room_id, event_type, body, txn_id=txn_id)
        return {"event_id": sent.event_id}

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
        body = await optional_json_body(self._max_body)
        sent = await self._rooms.redact(
            requester, room_id, event_id, txn_id, reason=optional_string(body, "reason")
        )
        return {"event_id": sent.event_id}

    # --- state ----------------------------------------------------------------------------------

    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/state", auth="user")
    async def get_state(self, requester: Requester, room_id: str) -> Any:
        """GET /_matrix/client/v3/rooms/{roomId}/state — spec: #get_matrixclientv3roomsroomidstate.

        "Get the state events for the current state of a room."
        """
        return await self._rooms.get_state(requester, room_id)

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
        stored = await self._rooms.get_state_event(requester, room_id, event_type, state_key)
        if request.args.get("format") == "event":
            return client_event(stored)
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
        body = await read_json_body(self._max_body)
        if event_type == "m.room.member":
            membership = body.get("membership")
            if membership not in ("join", "invite", "leave", "ban"):
                raise InvalidParam("unsupported membership for a state PUT")
        sent = await self._rooms.send(requester, room_id, event_type, body, state_key=state_key)
        return {"event_id": sent.event_id}

    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/event/{{event_id}}", auth="user")
    async def get_event(self, requester: Requester, room_id: str, event_id: str) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}.

        Spec: #get_matrixclientv3roomsroomideventeventid. "Get a single event based on
        roomId/eventId. You must have permission to retrieve this event."
        """
        return await self._rooms.get_event(requester, room_id, event_id)

    # --- membership -----------------------------------------------------------------------------

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/join", auth="user", rate_limit="client_default")
    async def join(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/join — spec: #post_matrixclientv3roomsroomidjoin.

        "This API starts a user's participation in a particular room."
        """
        body = await optional_json_body(self._max_body)
        await self._rooms.set_membership(
            requester, room_id, requester.user_id, "join", reason=optional_string(body, "reason")
        )
        return {"room_id": room_id}

    @route("POST", f"{_PREFIX}/join/{{room_id_or_alias}}", auth="user", rate_limit="client_default")
    async def join_by_id_or_alias(self, requester: Requester, room_id_or_alias: str) -> JsonDict:
        """POST /_matrix/client/v3/join/{roomIdOrAlias}.

        Spec: #post_matrixclientv3joinroomidoralias.

        "This API starts a user's participation in a particular room." Room IDs only for now:
        an alias is ``M_UNRECOGNIZED`` until the directory exists.
        """
        if not room_id_or_alias.startswith("!"):
            raise MatrixError(400, Codes.UNRECOGNIZED, "Joining by alias is not supported yet")
        return await self.join(requester, room_id_or_alias)

    async def _target_action(
        self,
        requester: Requester,
        room_id: str,
        membership: Literal["invite", "leave", "ban"],
        *,
        require_current: str | None = None,
    ) -> JsonDict:
        body = await read_json_body(self._max_body)
        target = required_string(body, "user_id")
        await self._rooms.set_membership(
            requester,
            room_id,
            target,
            membership,
            reason=optional_string(body, "reason"),
            require_current=require_current,
        )
        return {}

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/invite", auth="user", rate_limit="client_default")
    async def invite(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/invite.

        Spec: #post_matrixclientv3roomsroomidinvite.

        "This API invites a user to participate in a particular room."
        """
        return await self._target_action(requester, room_id, "invite")

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/leave", auth="user", rate_limit="client_default")
    async def leave(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/leave.

        Spec: #post_matrixclientv3roomsroomidleave.

        "This API stops a user participating in a particular room."
        """
        body = await optional_json_body(self._max_body)
        await self._rooms.set_membership(
            requester, room_id, requester.user_id, "leave", reason=optional_string(body, "reason")
        )
        return {}

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/kick", auth="user", rate_limit="client_default")
    async def kick(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/kick — spec: #post_matrixclientv3roomsroomidkick.

        "Kick a user from the room."
        """
        return await self._target_action(requester, room_id, "leave")

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/ban", auth="user", rate_limit="client_default")
    async def ban(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/ban — spec: #post_matrixclientv3roomsroomidban.

        "Ban a user in the room."
        """
        return await self._target_action(requester, room_id, "ban")

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/unban", auth="user", rate_limit="client_default")
    async def unban(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/unban.

        Spec: #post_matrixclientv3roomsroomidunban.

        "Unban a user from the room." Only a banned user can be unbanned (403 otherwise).
        """
        return await self._target_action(requester, room_id, "leave", require_current="ban")

    # --- lists and history ----------------------------------------------------------------------

    @route("GET", f"{_PREFIX}/joined_rooms", auth="user")
    async def joined_rooms(self, requester: Requester) -> JsonDict:
        """GET /_matrix/client/v3/joined_rooms — spec: #get_matrixclientv3joined_rooms.

        "This API returns a list of the user's current rooms."
        """
        return {"joined_rooms": await self._rooms.joined_rooms(requester)}

    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/joined_members", auth="user")
    async def joined_members(self, requester: Requester, room_id: str) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/joined_members.

        Spec: #get_matrixclientv3roomsroomidjoined_members. "This API returns a map of MXIDs to
        member info objects for members of the room."
        """
        members = await self._rooms.members(requester, room_id, joined_only=True)
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

        Spec: #get_matrixclientv3roomsroomidmembers.

        "Get the list of members for this room." Supports ``membership`` and ``not_membership``
        (``at`` is not supported yet: the current members are returned).
        """
        wanted = request.args.get("membership")
        unwanted = request.args.get("not_membership")
        chunk = []
        for stored in await self._rooms.members(requester, room_id):
            membership = stored.event.content.get("membership")
            if wanted is not None and membership != wanted:
                continue
            if unwanted is not None and membership == unwanted:
                continue
            chunk.append(client_event(stored))
        return {"chunk": chunk}

    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/messages", auth="user")
    async def messages(self, requester: Requester, room_id: str) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/messages.

        Spec: #get_matrixclientv3roomsroomidmessages.

        "This API returns a list of message and state events for a room. It uses pagination
        query parameters to paginate history in the room." ``dir`` is ``b`` or ``f``; ``from``
        and ``to`` are tokens from earlier answers (``filter`` is not applied yet).
        """
        direction = request.args.get("dir", "b")
        if direction not in ("b", "f"):
            raise InvalidParam("'dir' must be 'b' or 'f'")
        try:
            limit = int(request.args.get("limit", "10"))
        except ValueError:
            raise InvalidParam("'limit' must be an integer") from None
        page = await self._rooms.messages(
            requester,
            room_id,
            direction=cast(Literal["b", "f"], direction),
            from_token=request.args.get("from"),
            to_token=request.args.get("to"),
            limit=limit,
        )
        out: JsonDict = {"chunk": page.chunk, "start": page.start}
        if page.end is not None:
            out["end"] = page.end
        return out
