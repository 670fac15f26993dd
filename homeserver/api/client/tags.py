"""Room tagging.

Spec: https://spec.matrix.org/v1.16/client-server-api/#room-tagging

Tags are stored as the room's ``m.tag`` account data (see
:mod:`homeserver.services.account_data`).
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.errors import BadJson
from homeserver.services.account_data import AccountDataService, Tag
from homeserver.services.requester import Requester

__all__ = ["TagsApi"]


def parse_tag(body: JsonDict) -> Tag:
    """The tag body: ``order`` must be a number when present; other keys are kept."""
    order = body.get("order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int | float)):
        raise BadJson("'order' must be a number")
    extra = {k: v for k, v in body.items() if k != "order"}
    return Tag(None if order is None else float(order), extra)


class TagsApi:
    """``/user/{userId}/rooms/{roomId}/tags`` and ``.../tags/{tag}``.

    Args:
        account_data: the account data service, which keeps tags.
        max_body_bytes: the body limit of ``PUT``.
    """

    def __init__(self, account_data: AccountDataService, max_body_bytes: int) -> None:
        self._account_data = account_data
        self._max_body = max_body_bytes

    @route("GET", "/_matrix/client/v3/user/{user_id}/rooms/{room_id}/tags", auth="user")
    async def get_tags(self, requester: Requester, user_id: str, room_id: str) -> JsonDict:
        """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags.

        Spec: client-server-api/#get_matrixclientv3useruseridroomsroomidtags. "List the tags set
        by a user on a room."
        """
        return {"tags": dict(await self._account_data.get_tags(requester, user_id, room_id))}

    @route(
        "PUT",
        "/_matrix/client/v3/user/{user_id}/rooms/{room_id}/tags/{tag:path}",
        auth="user",
        rate_limit="client_default",
    )
    async def put_tag(self, requester: Requester, user_id: str, room_id: str, tag: str) -> JsonDict:
        """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}.

        Spec: client-server-api/#put_matrixclientv3useruseridroomsroomidtagstag. "Add a tag to
        the room." ``order`` is "a number in a range [0,1]"; a tag name "MUST NOT exceed 255
        bytes".
        """
        data = parse_tag(await read_json_body(self._max_body))
        await self._account_data.add_tag(requester, user_id, room_id, tag, data)
        return {}

    @route(
        "DELETE",
        "/_matrix/client/v3/user/{user_id}/rooms/{room_id}/tags/{tag:path}",
        auth="user",
        rate_limit="client_default",
    )
    async def delete_tag(
        self, requester: Requester, user_id: str, room_id: str, tag: str
    ) -> JsonDict:
        """DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}.

        Spec: client-server-api/#delete_matrixclientv3useruseridroomsroomidtagstag. "Remove a tag
        from the room."
        """
        await self._account_data.remove_tag(requester, user_id, room_id, tag)
        return {}
