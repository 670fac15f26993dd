"""Identity-server integration: binding 3PIDs and the identity server's binding callback.

Spec: https://spec.matrix.org/v1.19/client-server-api/#adding-account-administrative-contact-information
(``POST /account/3pid/bind``, ``POST /account/3pid/unbind``) and
https://spec.matrix.org/v1.19/server-server-api/#third-party-invites
(``POST /_matrix/federation/v1/3pid/onbind``). The work is in
:mod:`homeserver.services.third_party_invites`.
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.api.client._body import required_string
from homeserver.api.federation.transactions import Authenticate
from homeserver.services.identity_server import check_id_server
from homeserver.services.requester import Requester
from homeserver.services.third_party_invites import ThirdPartyInviteService

__all__ = ["ExchangeThirdPartyInviteApi", "IdentityBindApi", "OnBindApi"]


class IdentityBindApi:
    """``/account/3pid/bind`` and ``/account/3pid/unbind`` (v3, and the unstable paths SyTest
    and older clients use).

    Args:
        service: third-party invites and binding.
        max_body_bytes: the request body limit.
    """

    def __init__(self, service: ThirdPartyInviteService, max_body_bytes: int) -> None:
        self._service = service
        self._max_body = max_body_bytes

    @route("POST", "/_matrix/client/v3/account/3pid/bind", auth="user")
    @route("POST", "/_matrix/client/unstable/account/3pid/bind", auth="user")
    async def bind(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/account/3pid/bind — spec: #post_matrixclientv3account3pidbind.

        "Binds a 3PID to the user's account through the specified identity server." The
        identity server's errors come back as they are (400 with its ``errcode``); one that
        cannot be reached is ``502 M_UNKNOWN``.
        """
        body = await read_json_body(self._max_body)
        id_server = check_id_server(required_string(body, "id_server"))
        await self._service.bind(
            requester,
            id_server=id_server,
            id_access_token=required_string(body, "id_access_token"),
            sid=required_string(body, "sid"),
            client_secret=required_string(body, "client_secret"),
        )
        return {}

    @route("POST", "/_matrix/client/v3/account/3pid/unbind", auth="user")
    @route("POST", "/_matrix/client/unstable/account/3pid/unbind", auth="user")
    async def unbind(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/account/3pid/unbind.

        Spec: #post_matrixclientv3account3pidunbind. "Removes a user's third-party identifier
        from the provided identity server without removing it from the homeserver." This
        server keeps no record of bindings, so without ``id_server`` there is nothing to
        unbind at: ``id_server_unbind_result`` is ``no-support``.
        """
        body = await read_json_body(self._max_body)
        medium = required_string(body, "medium")
        address = required_string(body, "address")
        id_server = body.get("id_server")
        if id_server is None:
            return {"id_server_unbind_result": "no-support"}
        result = await self._service.unbind(
            requester, id_server=check_id_server(id_server), medium=medium, address=address
        )
        return {"id_server_unbind_result": result}


class OnBindApi:
    """``POST /_matrix/federation/v1/3pid/onbind``: the identity server tells us an address
    with pending invites was bound. Not X-Matrix signed (the caller is an identity server);
    served on client listeners too, as Synapse (SyTest calls it at the client URL).

    Args:
        service: third-party invites.
        max_body_bytes: the request body limit.
    """

    def __init__(self, service: ThirdPartyInviteService, max_body_bytes: int) -> None:
        self._service = service
        self._max_body = max_body_bytes

    @route("POST", "/_matrix/federation/v1/3pid/onbind")
    async def on_bind(self) -> JsonDict:
        """POST /_matrix/federation/v1/3pid/onbind — spec: #put_matrixfederationv13pidonbind.

        "Used by identity servers to notify the homeserver that one of its users has bound a
        third-party identifier successfully, including any pending room invites the identity
        server has been made aware of." Each invite from a local inviter becomes the invite
        event once its signature verifies with a key of the ``m.room.third_party_invite`` that
        the identity server still says is valid; ``403 M_FORBIDDEN`` if any is refused.
        """
        body = await read_json_body(self._max_body)
        await self._service.on_bind(body)
        return {}


class ExchangeThirdPartyInviteApi:
    """``PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}`` (X-Matrix signed).

    Args:
        service: third-party invites.
        authenticate: the request authentication (X-Matrix).
        max_body_bytes: the request body limit.
    """

    def __init__(
        self, service: ThirdPartyInviteService, authenticate: Authenticate, max_body_bytes: int
    ) -> None:
        self._service = service
        self._authenticate = authenticate
        self._max_body = max_body_bytes

    @route("PUT", "/_matrix/federation/v1/exchange_third_party_invite/{room_id}")
    async def exchange(self, room_id: str) -> JsonDict:
        """PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}.

        Spec: server-server-api › Third-party invites
        (#put_matrixfederationv1exchange_third_party_inviteroomid). "The receiving server will
        verify the partial m.room.member event given in the request body. If valid, the
        receiving server will issue an invite as per the Inviting to a room section before
        returning a response to this request." ``400 M_INVALID_PARAM`` for an event that is
        not such an invite from one of our users; ``403 M_FORBIDDEN`` if it does not verify.
        """
        origin = await self._authenticate()
        body = await read_json_body(self._max_body)
        await self._service.on_exchange(origin, room_id, body)
        return {}
