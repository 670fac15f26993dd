"""Presence.

Spec: https://spec.matrix.org/v1.19/client-server-api/#presence (``presence.yaml``); the
last-seen privacy setting: docs/reference/presence_privacy.md.
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.api.client._body import optional_string, required_string
from homeserver.errors import Forbidden
from homeserver.services.presence import PresenceService
from homeserver.services.requester import Requester

__all__ = ["PresenceApi"]


class PresenceApi:
    """``PUT`` and ``GET /presence/{userId}/status``.

    Args:
        presence: the presence service.
        max_body_bytes: the body limit.
    """

    def __init__(self, presence: PresenceService, max_body_bytes: int) -> None:
        self._presence = presence
        self._max_body = max_body_bytes

    @route(
        "PUT",
        "/_matrix/client/v3/presence/{user_id}/status",
        auth="user",
        rate_limit="client_default",
    )
    async def put_status(self, requester: Requester, user_id: str) -> JsonDict:
        """PUT /_matrix/client/v3/presence/{userId}/status.

        Spec: client-server-api/#put_matrixclientv3presenceuseridstatus. "This API sets the
        given user's presence state. ... You cannot set the presence state of another user."
        (``403 M_FORBIDDEN``). ``presence`` is required (``online``, ``unavailable``,
        ``offline``: else ``400 M_INVALID_PARAM``); ``status_msg`` is optional.
        """
        if user_id != requester.user_id:
            raise Forbidden("Cannot set the presence state of another user")
        body = await read_json_body(self._max_body)
        presence = required_string(body, "presence")
        status_msg = optional_string(body, "status_msg")
        await self._presence.set_presence(requester.user_id, presence, status_msg)
        return {}

    @route("GET", "/_matrix/client/v3/presence/{user_id}/status", auth="user")
    async def get_status(self, requester: Requester, user_id: str) -> JsonDict:
        """GET /_matrix/client/v3/presence/{userId}/status.

        Spec: client-server-api/#get_matrixclientv3presenceuseridstatus. "Get the given user's
        presence state." ``403 M_FORBIDDEN`` "You are not allowed to see this user's presence
        status" when the user's last-seen privacy hides it from the requester; ``404
        M_NOT_FOUND`` for unknown users.
        """
        return await self._presence.get_presence(requester.user_id, user_id)
