"""OpenID: a token a third party exchanges for the user's ID.

Spec: https://spec.matrix.org/v1.16/client-server-api/#openid
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, route
from homeserver.api.client._body import optional_json_body
from homeserver.services.openid import OpenIdService
from homeserver.services.requester import Requester

__all__ = ["OpenIdApi"]


class OpenIdApi:
    """``POST /user/{userId}/openid/request_token``.

    Args:
        openid: the OpenID service.
    """

    def __init__(self, openid: OpenIdService) -> None:
        self._openid = openid

    @route(
        "POST",
        "/_matrix/client/v3/user/{user_id}/openid/request_token",
        auth="user",
        rate_limit="client_default",
    )
    async def request_token(self, requester: Requester, user_id: str) -> JsonDict:
        """POST /_matrix/client/v3/user/{userId}/openid/request_token.

        Spec: client-server-api/#post_matrixclientv3useruseridopenidrequest_token. "Gets an
        OpenID token object that the requester may supply to another service to verify their
        identity in Matrix." The body is "an empty object. Reserved for future expansion" (a
        missing body is accepted too).
        """
        await optional_json_body(4096)
        token = await self._openid.request_token(requester, user_id)
        return {
            "access_token": token.access_token,
            "token_type": "Bearer",
            "matrix_server_name": token.matrix_server_name,
            "expires_in": token.expires_in_s,
        }
