"""Other servers' users joining, leaving and knocking: the resident server's routes.

Spec: server-server-api.md › Joining Rooms, › Leaving Rooms (Rejecting Invites), › Knocking
upon a room (https://spec.matrix.org/v1.19/server-server-api/#joining-rooms). Every route
requires X-Matrix request authentication and is protected by the room's server ACL.
"""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.api.federation.transactions import Authenticate
from homeserver.services.federation_joins import FederationMemberships

__all__ = ["MembershipsApi"]


class MembershipsApi:
    """``make_join``/``send_join``, ``make_leave``/``send_leave``, ``make_knock``/``send_knock``.

    Args:
        memberships: the resident side of the handshakes.
        authenticate: the request authentication (X-Matrix).
        max_body_bytes: the request body limit.
    """

    def __init__(
        self, memberships: FederationMemberships, authenticate: Authenticate, max_body_bytes: int
    ) -> None:
        self._memberships = memberships
        self._authenticate = authenticate
        self._max_body = max_body_bytes

    @route("GET", "/_matrix/federation/v1/make_join/{room_id}/{user_id}")
    async def make_join(self, room_id: str, user_id: str) -> JsonDict:
        """GET /_matrix/federation/v1/make_join/{roomId}/{userId} — spec:
        #get_matrixfederationv1make_joinroomiduserid.

        "Asks the receiving server to return information that the sending server will need to
        prepare a join event to get into the room." ``ver``: the versions the sender supports
        (default ``1``); ``400 M_INCOMPATIBLE_ROOM_VERSION`` if the room's is not among them.
        """
        origin = await self._authenticate()
        versions = request.args.getlist("ver")
        return await self._memberships.make(origin, room_id, user_id, "join", versions)

    @route("PUT", "/_matrix/federation/v1/send_join/{room_id}/{event_id}")
    async def send_join_v1(self, room_id: str, event_id: str) -> Any:
        """PUT /_matrix/federation/v1/send_join/{roomId}/{eventId} — spec:
        #put_matrixfederationv1send_joinroomideventid.

        Deprecated form of v2: the answer is ``[200, {...}]``.
        """
        return [200, await self.send_join_v2(room_id, event_id)]

    @route("PUT", "/_matrix/federation/v2/send_join/{room_id}/{event_id}")
    async def send_join_v2(self, room_id: str, event_id: str) -> JsonDict:
        """PUT /_matrix/federation/v2/send_join/{roomId}/{eventId} — spec:
        #put_matrixfederationv2send_joinroomideventid.

        "Submits a signed join event to the resident server for it to accept it into the
        room's graph." Answers the room state before the join and its auth chain.
        """
        origin = await self._authenticate()
        pdu = await read_json_body(self._max_body)
        return await self._memberships.send(origin, room_id, event_id, pdu, "join")

    @route("GET", "/_matrix/federation/v1/make_leave/{room_id}/{user_id}")
    async def make_leave(self, room_id: str, user_id: str) -> JsonDict:
        """GET /_matrix/federation/v1/make_leave/{roomId}/{userId} — spec:
        #get_matrixfederationv1make_leaveroomiduserid.

        "Asks the receiving server to return information that the sending server will need to
        prepare a leave event to get out of the room."
        """
        origin = await self._authenticate()
        return await self._memberships.make(origin, room_id, user_id, "leave", None)

    @route("PUT", "/_matrix/federation/v1/send_leave/{room_id}/{event_id}")
    async def send_leave_v1(self, room_id: str, event_id: str) -> Any:
        """PUT /_matrix/federation/v1/send_leave/{roomId}/{eventId} — spec:
        #put_matrixfederationv1send_leaveroomideventid.

        Deprecated form of v2: the answer is ``[200, {}]``.
        """
        return [200, await self.send_leave_v2(room_id, event_id)]

    @route("PUT", "/_matrix/federation/v2/send_leave/{room_id}/{event_id}")
    async def send_leave_v2(self, room_id: str, event_id: str) -> JsonDict:
        """PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId} — spec:
        #put_matrixfederationv2send_leaveroomideventid.

        "Submits a signed leave event to the resident server for it to accept it into the
        room's graph."
        """
        origin = await self._authenticate()
        pdu = await read_json_body(self._max_body)
        return await self._memberships.send(origin, room_id, event_id, pdu, "leave")

    @route("GET", "/_matrix/federation/v1/make_knock/{room_id}/{user_id}")
    async def make_knock(self, room_id: str, user_id: str) -> JsonDict:
        """GET /_matrix/federation/v1/make_knock/{roomId}/{userId} — spec:
        #get_matrixfederationv1make_knockroomiduserid.

        "Asks the receiving server to return information that the sending server will need to
        prepare a knock event for the room." ``ver`` as for ``make_join``.
        """
        origin = await self._authenticate()
        versions = request.args.getlist("ver")
        return await self._memberships.make(origin, room_id, user_id, "knock", versions)

    @route("PUT", "/_matrix/federation/v1/send_knock/{room_id}/{event_id}")
    async def send_knock(self, room_id: str, event_id: str) -> JsonDict:
        """PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId} — spec:
        #put_matrixfederationv1send_knockroomideventid.

        "Submits a signed knock event to the resident server for it to accept into the room's
        graph." Answers ``knock_room_state``, the stripped state of the room.
        """
        origin = await self._authenticate()
        pdu = await read_json_body(self._max_body)
        return await self._memberships.send(origin, room_id, event_id, pdu, "knock")
