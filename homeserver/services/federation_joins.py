"""Other servers' users joining, leaving and knocking on rooms this server is in: the resident
side of the membership handshakes.

Spec: server-server-api.md › Joining Rooms (``make_join``, ``send_join`` v1/v2), › Leaving
Rooms (Rejecting Invites) (``make_leave``, ``send_leave`` v1/v2), › Knocking upon a room
(``make_knock``, ``send_knock``); › Server Access Control Lists.

``make_*`` answers a template built on the room's current tips (prev_events, depth, and the
auth events the auth rules select from the current state), after checking the membership would
be allowed now (``403 M_FORBIDDEN`` otherwise, naming the rule). ``send_*`` checks that the event
is the membership the route names, for a user of the calling server, then runs it through the
inbound PDU pipeline (:class:`~homeserver.services.federation_inbound.FederationInbound`) like
any received event; a join answers the room state before it and the auth chain.

Not done yet: restricted joins authorised by one of our users (``join_authorised_via_users_server``
signed by us) and ``omit_members`` (the full state is always sent, ``members_omitted: false``).

In-memory state: none.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

from federation.core.auth_rules import auth_types_for_event, check_auth_rules
from federation.core.builder import MAX_PREV_EVENTS
from federation.core.canonicaljson import encode_canonical_json
from federation.core.errors import AuthError, CanonicalJSONError
from federation.core.events import Event
from federation.core.ids import parse_user_id
from federation.core.power_levels import CREATE_KEY
from federation.core.room_versions import EventIdFormat, RoomVersion, get_room_version
from homeserver.clock import Clock
from homeserver.errors import BadJson, Codes, Forbidden, MatrixError, NotFound
from homeserver.services.federation_inbound import FederationInbound, PduError
from homeserver.services.federation_room_graph import RoomGraphService
from homeserver.storage.events import EventStore

__all__ = ["FederationMemberships", "Membership"]

JsonDict = dict[str, Any]
Membership = Literal["join", "leave", "knock"]

#: Spec (make_join ``ver``): "Defaults to room version 1" when absent.
_DEFAULT_VERSIONS = ("1",)
#: Stripped state a knock answers with (spec: knock_room_state, as in invites).
_STRIPPED_TYPES = (
    "m.room.create",
    "m.room.name",
    "m.room.avatar",
    "m.room.topic",
    "m.room.join_rules",
    "m.room.canonical_alias",
    "m.room.encryption",
)


class IncompatibleRoomVersion(MatrixError):
    """400 ``M_INCOMPATIBLE_ROOM_VERSION``: the joining server does not support the room's
    version."""

    def __init__(self, room_version: str) -> None:
        super().__init__(
            400,
            Codes.INCOMPATIBLE_ROOM_VERSION,
            "Your homeserver does not support the features required to join this room",
            room_version=room_version,
        )


class FederationMemberships:
    """The resident server's side of remote joins, leaves and knocks.

    Args:
        events: the event store.
        inbound: the inbound pipeline (and room membership of servers, ACLs).
        graph: the room graph service (state and auth chains).
        clock: for the templates' ``origin_server_ts``.
        server_name: our server name.
    """

    def __init__(
        self,
        events: EventStore,
        inbound: FederationInbound,
        graph: RoomGraphService,
        clock: Clock,
        *,
        server_name: str,
    ) -> None:
        self._events = events
        self._inbound = inbound
        self._graph = graph
        self._clock = clock
        self._server_name = server_name

    async def _room_version(self, origin: str, room_id: str) -> RoomVersion:
        room = await self._events.get_room(room_id)
        if room is None or not await self._inbound.server_in_room(room_id, self._server_name):
            raise NotFound("This server is not in the room")
        if not await self._inbound.server_allowed(room_id, origin):
            raise Forbidden("Server is banned from this room by its server ACL")
        return get_room_version(room.room_version)

    async def make(
        self,
        origin: str,
        room_id: str,
        user_id: str,
        membership: Membership,
        supported_versions: Sequence[str] | None,
    ) -> JsonDict:
        """``GET /make_{membership}/{roomId}/{userId}``: ``{"room_version", "event"}``.

        Raises:
            MatrixError: 403 for a user of another server or a membership the auth rules
                refuse now; 404 for a room we are not in; 400 ``M_INCOMPATIBLE_ROOM_VERSION``.
        """
        try:
            user_server = parse_user_id(user_id).server_name
        except ValueError:
            raise BadJson(f"Invalid user ID {user_id!r}") from None
        if user_server != origin:
            raise Forbidden(f"{user_id} is not a user of {origin}")
        version = await self._room_version(origin, room_id)
        if membership != "leave":
            versions = supported_versions or _DEFAULT_VERSIONS
            if version.identifier not in versions:
                raise IncompatibleRoomVersion(version.identifier)
        content = {"membership": membership}
        extremities = (await self._events.get_forward_extremities(room_id))[-MAX_PREV_EVENTS:]
        if not extremities:
            raise NotFound("This server is not in the room")
        keys = auth_types_for_event(version, "m.room.member", user_id, user_id, content)
        current = await self._events.get_current_state_ids(room_id)
        wanted = {k: current[k] for k in (*keys, CREATE_KEY) if k in current}
        found = await self._events.get_events(wanted.values())
        auth_state = {k: found[i].event for k, i in wanted.items() if i in found}
        auth_ids = [auth_state[k].event_id for k in keys if k in auth_state]
        template: JsonDict = {
            "type": "m.room.member",
            "room_id": room_id,
            "sender": user_id,
            "state_key": user_id,
            "content": content,
            "origin": origin,
            "origin_server_ts": self._clock.time_ms(),
            "depth": max(e.depth for e in extremities) + 1,
            "prev_events": _refs(version, [e.event_id for e in extremities]),
            "auth_events": _refs(version, auth_ids),
        }
        probe = Event(version, template, "$probe")
        try:
            check_auth_rules(version, probe, auth_state)
        except AuthError as e:
            raise Forbidden(f"Not allowed by the auth rules ({e.rule}): {e}") from None
        return {"room_version": version.identifier, "event": template}

    async def send(
        self,
        origin: str,
        room_id: str,
        event_id: str,
        pdu: Mapping[str, Any],
        membership: Membership,
    ) -> JsonDict:
        """``PUT /send_{membership}/{roomId}/{eventId}``: accept the signed event.

        Returns:
            For a join: ``{"state", "auth_chain", "members_omitted", "servers_in_room"}`` (the
            state before the join); for a knock: ``{"knock_room_state"}``; else ``{}``.

        Raises:
            MatrixError: 400 for an event that is not that membership of a user of ``origin``
                in that room, or not ``event_id``; 403 when the pipeline does not accept it.
        """
        version = await self._room_version(origin, room_id)
        content = pdu.get("content")
        sender = pdu.get("sender")
        if (
            pdu.get("type") != "m.room.member"
            or pdu.get("room_id") != room_id
            or not isinstance(content, Mapping)
            or content.get("membership") != membership
            or not isinstance(sender, str)
            or pdu.get("state_key") != sender
        ):
            raise BadJson(f"The event is not a {membership} of its sender into {room_id}")
        if sender.partition(":")[2] != origin:
            raise Forbidden(f"{sender} is not a user of {origin}")
        if version.event_id_format is EventIdFormat.V1_ORIGIN and pdu.get("event_id") != event_id:
            raise BadJson("The event ID does not match the path")
        try:  # JSON the room version cannot sign is 400 (Synapse); other faults 403 below
            encode_canonical_json(pdu, strict=version.strict_canonical_json)
        except CanonicalJSONError as e:
            raise BadJson(f"Invalid event: {e}") from None
        servers_before = await self._servers_in_room(room_id)
        try:
            accepted_id = await self._inbound.handle_pdu(origin, version, pdu)
        except PduError as e:
            raise Forbidden(str(e)) from None
        if accepted_id != event_id:
            raise BadJson("The event ID does not match the path")
        if membership == "knock":
            return {"knock_room_state": await self._stripped_state(room_id)}
        if membership != "join":
            return {}
        state, chain = await self._graph.state_for_join(room_id, event_id)
        return {
            "state": state,
            "auth_chain": chain,
            "members_omitted": False,
            "servers_in_room": sorted(servers_before | {origin}),
        }

    async def _servers_in_room(self, room_id: str) -> set[str]:
        return {
            user_id.partition(":")[2]
            for user_id, membership, _ in await self._events.get_members(room_id)
            if membership == "join"
        }

    async def _stripped_state(self, room_id: str) -> list[JsonDict]:
        state = await self._events.get_current_state_events(room_id)
        out = []
        for (event_type, state_key), stored in state.items():
            if event_type in _STRIPPED_TYPES and state_key == "":
                event = stored.event
                out.append(
                    {
                        "type": event.type,
                        "state_key": state_key,
                        "sender": event.sender,
                        "content": dict(event.content),
                    }
                )
        return out


def _refs(version: RoomVersion, event_ids: Sequence[str]) -> list[Any]:
    if version.event_id_format is EventIdFormat.V1_ORIGIN:
        return [[e, {}] for e in event_ids]
    return list(event_ids)
