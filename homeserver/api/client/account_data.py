"""Client config: global and per-room account data.

Spec: https://spec.matrix.org/v1.16/client-server-api/#client-config
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.services.account_data import AccountDataService
from homeserver.services.requester import Requester

__all__ = ["AccountDataApi"]


class AccountDataApi:
    """Global (``/user/{userId}/account_data/{type}``) and per-room account data.

    Args:
        account_data: the account data service.
        max_body_bytes: the body limit of ``PUT``.
    """

    def __init__(self, account_data: AccountDataService, max_body_bytes: int) -> None:
        self._account_data = account_data
        self._max_body = max_body_bytes

    @route("GET", "/_matrix/client/v3/user/{user_id}/account_data/{data_type:path}", auth="user")
    async def get_account_data(
        self, requester: Requester, user_id: str, data_type: str
    ) -> JsonDict:
        """GET /_matrix/client/v3/user/{userId}/account_data/{type}.

        Spec: client-server-api/#get_matrixclientv3useruseridaccount_datatype. "Get some account
        data for the client. This config is only visible to the user that set the account data."
        """
        return dict(await self._account_data.get(requester, user_id, data_type))

    @route(
        "PUT",
        "/_matrix/client/v3/user/{user_id}/account_data/{data_type:path}",
        auth="user",
        rate_limit="client_default",
    )
    async def put_account_data(
        self, requester: Requester, user_id: str, data_type: str
    ) -> JsonDict:
        """PUT /_matrix/client/v3/user/{userId}/account_data/{type}.

        Spec: client-server-api/#put_matrixclientv3useruseridaccount_datatype. "Set some account
        data for the client." ``m.fully_read`` and ``m.push_rules`` are 405 ``M_BAD_JSON``.
        """
        content = await read_json_body(self._max_body)
        await self._account_data.put(requester, user_id, data_type, content)
        return {}

    @route(
        "GET",
        "/_matrix/client/v3/user/{user_id}/rooms/{room_id}/account_data/{data_type:path}",
        auth="user",
    )
    async def get_room_account_data(
        self, requester: Requester, user_id: str, room_id: str, data_type: str
    ) -> JsonDict:
        """GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}.

        Spec: client-server-api/#get_matrixclientv3useruseridroomsroomidaccount_datatype. "Get
        some account data for the client on a given room." 400 ``M_INVALID_PARAM`` for a bad
        room ID.
        """
        return dict(await self._account_data.get(requester, user_id, data_type, room_id))

    @route(
        "PUT",
        "/_matrix/client/v3/user/{user_id}/rooms/{room_id}/account_data/{data_type:path}",
        auth="user",
        rate_limit="client_default",
    )
    async def put_room_account_data(
        self, requester: Requester, user_id: str, room_id: str, data_type: str
    ) -> JsonDict:
        """PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}.

        Spec: client-server-api/#put_matrixclientv3useruseridroomsroomidaccount_datatype. "Set
        some account data for the client on a given room."
        """
        content = await read_json_body(self._max_body)
        await self._account_data.put(requester, user_id, data_type, content, room_id)
        return {}
