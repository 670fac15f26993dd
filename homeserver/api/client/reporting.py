"""Reporting content.

Spec: https://spec.matrix.org/v1.19/client-server-api/#reporting-content
(``report_content.yaml``). Who may report what is in :mod:`homeserver.services.reporting`.
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.api.client._body import optional_string, required_string
from homeserver.errors import BadJson, InvalidParam
from homeserver.services.reporting import ReportingService
from homeserver.services.requester import Requester

__all__ = ["ReportingApi"]

_PREFIX = "/_matrix/client/v3"


def _score(body: JsonDict) -> int | None:
    """The legacy ``score`` (removed in v1.18, still sent by older clients): an integer from
    -100 (most offensive) to 0, as the spec had it."""
    score = body.get("score")
    if score is None:
        return None
    if isinstance(score, bool) or not isinstance(score, int):
        raise BadJson("'score' must be an integer")
    if not -100 <= score <= 0:
        raise InvalidParam("'score' must be between -100 and 0")
    return score


class ReportingApi:
    """The three report endpoints.

    Args:
        reporting: the reporting service.
        max_body_bytes: the request body limit.
    """

    def __init__(self, reporting: ReportingService, max_body_bytes: int) -> None:
        self._reporting = reporting
        self._max_body = max_body_bytes

    @route(
        "POST",
        f"{_PREFIX}/rooms/{{room_id}}/report/{{event_id}}",
        auth="user",
        rate_limit="client_default",
    )
    async def report_event(self, requester: Requester, room_id: str, event_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}.

        Spec: client-server-api/#post_matrixclientv3roomsroomidreporteventid. "Reports an event
        as inappropriate to the server [...] The caller must be joined to the room to report
        it."
        """
        body = await read_json_body(self._max_body)
        reason = optional_string(body, "reason")
        await self._reporting.report_event(requester, room_id, event_id, reason, _score(body))
        return {}

    @route("POST", f"{_PREFIX}/rooms/{{room_id}}/report", auth="user", rate_limit="client_default")
    async def report_room(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/report.

        Spec: client-server-api/#post_matrixclientv3roomsroomidreport (added in v1.13).
        "Reports a room as inappropriate to the server [...] The caller is not required to be
        joined to the room to report it."
        """
        body = await read_json_body(self._max_body)
        await self._reporting.report_room(requester, room_id, required_string(body, "reason"))
        return {}

    @route("POST", f"{_PREFIX}/users/{{user_id}}/report", auth="user", rate_limit="client_default")
    async def report_user(self, requester: Requester, user_id: str) -> JsonDict:
        """POST /_matrix/client/v3/users/{userId}/report.

        Spec: client-server-api/#post_matrixclientv3usersuseridreport (added in v1.14).
        "Reports a user as inappropriate to the server [...] The caller is not required to be
        joined to any rooms that the reported user is joined to."
        """
        body = await read_json_body(self._max_body)
        await self._reporting.report_user(requester, user_id, required_string(body, "reason"))
        return {}
