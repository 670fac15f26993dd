"""Typing notifications.

Spec: https://spec.matrix.org/v1.19/client-server-api/#typing-notifications (``typing.yaml``).
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.config import TypingConfig
from homeserver.errors import BadJson, Forbidden
from homeserver.services.receipts import check_room_id
from homeserver.services.requester import Requester
from homeserver.services.typing import TypingService

__all__ = ["TypingApi"]


class TypingApi:
    """``PUT /rooms/{roomId}/typing/{userId}``.

    Args:
        typing: the typing service.
        config: the ``typing`` section (default timeout).
        max_body_bytes: the body limit.
    """

    def __init__(self, typing: TypingService, config: TypingConfig, max_body_bytes: int) -> None:
        self._typing = typing
        self._cfg = config
        self._max_body = max_body_bytes

    @route(
        "PUT",
        "/_matrix/client/v3/rooms/{room_id}/typing/{user_id}",
        auth="user",
        rate_limit="client_default",
    )
    async def put_typing(self, requester: Requester, room_id: str, user_id: str) -> JsonDict:
        """PUT /_matrix/client/v3/rooms/{roomId}/typing/{userId}.

        Spec: client-server-api/#put_matrixclientv3roomsroomidtypinguserid. "This tells the
        server that the user is typing for the next N milliseconds where N is the value
        specified in the ``timeout`` key. Alternatively, if ``typing`` is ``false``, it tells
        the server that the user has stopped typing." Only for oneself (``403``); the user must
        be joined to the room (``403 M_FORBIDDEN``). A timeout above ``typing.max_timeout_ms``
        is cut to it; without one, ``typing.default_timeout_ms`` applies.
        """
        if user_id != requester.user_id:
            raise Forbidden("Cannot set the typing state of another user")
        check_room_id(room_id)
        body = await read_json_body(self._max_body)
        typing = body.get("typing")
        if not isinstance(typing, bool):
            raise BadJson("'typing' must be true or false")
        timeout = body.get("timeout", self._cfg.default_timeout_ms)
        if typing and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout < 0):
            raise BadJson("'timeout' must be a non-negative integer (milliseconds)")
        await self._typing.set_typing(
            requester.user_id, room_id, typing, timeout if isinstance(timeout, int) else 0
        )
        return {}
