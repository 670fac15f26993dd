"""Other servers inviting our users.

Spec: server-server-api.md › Inviting to a room
(https://spec.matrix.org/v1.19/server-server-api/#inviting-to-a-room). Both routes require
X-Matrix request authentication.
"""

from __future__ import annotations

from typing import Any

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.api.federation.transactions import Authenticate
from homeserver.errors import BadJson
from homeserver.services.federation_invites import FederationInvites

__all__ = ["InvitesApi"]


class InvitesApi:
    """``PUT /_matrix/federation/v2/invite`` and its v1 form.

    Args:
        invites: the invite service.
        authenticate: the request authentication (X-Matrix).
        max_body_bytes: the request body limit.
    """

    def __init__(
        self, invites: FederationInvites, authenticate: Authenticate, max_body_bytes: int
    ) -> None:
        self._invites = invites
        self._authenticate = authenticate
        self._max_body = max_body_bytes

    @route("PUT", "/_matrix/federation/v2/invite/{room_id}/{event_id}")
    async def invite_v2(self, room_id: str, event_id: str) -> JsonDict:
        """PUT /_matrix/federation/v2/invite/{roomId}/{eventId} — spec:
        #put_matrixfederationv2inviteroomideventid.

        "Invites a remote user to a room. Once the event has been signed by both the inviting
        homeserver and the invited homeserver, it can be sent to all of the servers in the
        room by the inviting homeserver." Body: ``room_version``, ``event``,
        ``invite_room_state``; answers ``{"event": ...}`` signed by us.
        """
        origin = await self._authenticate()
        body = await read_json_body(self._max_body)
        room_version = body.get("room_version")
        event = body.get("event")
        state = body.get("invite_room_state", [])
        if not isinstance(room_version, str):
            raise BadJson("'room_version' must be a string")
        if not isinstance(event, dict):
            raise BadJson("'event' must be an object")
        if not isinstance(state, list):
            raise BadJson("'invite_room_state' must be a list")
        signed = await self._invites.on_invite(
            origin, room_id, event_id, room_version, event, state
        )
        return {"event": signed}

    @route("PUT", "/_matrix/federation/v1/invite/{room_id}/{event_id}")
    async def invite_v1(self, room_id: str, event_id: str) -> Any:
        """PUT /_matrix/federation/v1/invite/{roomId}/{eventId} — spec:
        #put_matrixfederationv1inviteroomideventid.

        The deprecated form for room versions 1 and 2: the body is the event (stripped state
        in ``unsigned.invite_room_state``); answers ``[200, {"event": ...}]``.
        """
        origin = await self._authenticate()
        event = await read_json_body(self._max_body)
        unsigned = event.get("unsigned")
        state = unsigned.get("invite_room_state", []) if isinstance(unsigned, dict) else []
        signed = await self._invites.on_invite(
            origin, room_id, event_id, "1", event, state if isinstance(state, list) else []
        )
        return [200, {"event": signed}]
