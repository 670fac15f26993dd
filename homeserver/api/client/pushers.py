"""Pushers.

Spec: https://spec.matrix.org/v1.19/client-server-api/#pushers (``pushers.yaml``): the
user's pushers, and creating, updating and deleting them. What is accepted is in
:mod:`homeserver.services.pushers`.
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.services.pushers import PusherService
from homeserver.services.requester import Requester

__all__ = ["PushersApi"]

_PREFIX = "/_matrix/client/v3"


class PushersApi:
    """``GET /pushers`` and ``POST /pushers/set``.

    Args:
        pushers: the pusher service.
        max_body_bytes: the request body limit.
    """

    def __init__(self, pushers: PusherService, max_body_bytes: int) -> None:
        self._pushers = pushers
        self._max_body = max_body_bytes

    @route("GET", f"{_PREFIX}/pushers", auth="user")
    async def get_pushers(self, requester: Requester) -> JsonDict:
        """GET /_matrix/client/v3/pushers.

        Spec: client-server-api/#get_matrixclientv3pushers. "Gets all currently active
        pushers for the authenticated user."
        """
        return {"pushers": await self._pushers.pushers(requester)}

    @route("POST", f"{_PREFIX}/pushers/set", auth="user", rate_limit="client_default")
    async def set_pusher(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/pushers/set.

        Spec: client-server-api/#post_matrixclientv3pushersset. "This endpoint allows a
        pusher to be created, modified or deleted for this user." "If the kind is ``null``,
        the pusher is deleted"; ``append``: "If false, other pushers with the same App ID
        and pushkey for different users are deleted."
        """
        body = await read_json_body(self._max_body)
        await self._pushers.set_pusher(requester, body)
        return {}
