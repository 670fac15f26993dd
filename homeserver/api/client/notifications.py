"""Listing notifications.

Spec: https://spec.matrix.org/v1.19/client-server-api/#listing-notifications
(``notifications.yaml``): the events that notified the user, newest first.
"""

from __future__ import annotations

from quart import request

from homeserver.api._http import JsonDict, route
from homeserver.errors import InvalidParam
from homeserver.services.pushers import PusherService
from homeserver.services.requester import Requester

__all__ = ["NotificationsApi"]

_PREFIX = "/_matrix/client/v3"


class NotificationsApi:
    """``GET /notifications``.

    Args:
        pushers: the pusher service (which reads the recorded notifications).
    """

    def __init__(self, pushers: PusherService) -> None:
        self._pushers = pushers

    @route("GET", f"{_PREFIX}/notifications", auth="user")
    async def notifications(self, requester: Requester) -> JsonDict:
        """GET /_matrix/client/v3/notifications.

        Spec: client-server-api/#get_matrixclientv3notifications. "This API is used to
        paginate through the list of events that the user has been, or would have been
        notified about." ``from``: "Pagination token to continue from"; ``limit``;
        ``only``: "Allows basic filtering of events returned. Supply ``highlight`` to
        return only events where the notification had the highlight tweak set."
        """
        raw_limit = request.args.get("limit")
        limit: int | None = None
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError:
                raise InvalidParam("'limit' must be an integer") from None
            if limit < 0:
                raise InvalidParam("'limit' must not be negative")
        return await self._pushers.notifications(
            requester,
            from_token=request.args.get("from") or None,
            limit=limit,
            only=request.args.get("only"),
        )
