"""OpenID over federation: exchanging an OpenID token for the user's ID.

Spec: https://spec.matrix.org/v1.16/server-server-api/#openid
"""

from __future__ import annotations

from quart import request

from homeserver.api._http import JsonDict, route
from homeserver.errors import MissingToken, UnknownToken
from homeserver.services.openid import OpenIdService

__all__ = ["FederationOpenIdApi"]


class FederationOpenIdApi:
    """``GET /_matrix/federation/v1/openid/userinfo``.

    Not X-Matrix signed: the caller is any service the user gave the token to. Served on
    client listeners too (as Synapse's ``openid`` resource beside ``client``): such a service may
    know only the client URL, and SyTest calls it there.

    Args:
        openid: the OpenID service.
    """

    def __init__(self, openid: OpenIdService) -> None:
        self._openid = openid

    @route("GET", "/_matrix/federation/v1/openid/userinfo")
    async def userinfo(self) -> JsonDict:
        """GET /_matrix/federation/v1/openid/userinfo — spec: #get_matrixfederationv1openiduserinfo.

        "Exchanges an OpenID access token for information about the user who generated the
        token." 401 ``M_UNKNOWN_TOKEN`` if "the token was not recognized or has expired";
        401 ``M_MISSING_TOKEN`` without one, as Synapse.
        """
        token = request.args.get("access_token")
        if token is None:
            raise MissingToken("Access token required")
        if not token:
            raise UnknownToken("Access token unknown or expired")
        return {"sub": await self._openid.user_of_token(token)}
