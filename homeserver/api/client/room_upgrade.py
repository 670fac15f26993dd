"""Room upgrades.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-upgrades (``room_upgrades.yaml``).
What the server does is in :mod:`homeserver.services.room_upgrade`.
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.api.client._body import required_string
from homeserver.errors import BadJson
from homeserver.services.requester import Requester
from homeserver.services.room_upgrade import RoomUpgradeService

__all__ = ["RoomUpgradeApi"]


class RoomUpgradeApi:
    """``POST /rooms/{roomId}/upgrade``.

    Args:
        upgrades: the room upgrade service.
        max_body_bytes: the request body limit.
    """

    def __init__(self, upgrades: RoomUpgradeService, max_body_bytes: int) -> None:
        self._upgrades = upgrades
        self._max_body = max_body_bytes

    @route(
        "POST",
        "/_matrix/client/v3/rooms/{room_id}/upgrade",
        auth="user",
        rate_limit="client_default",
    )
    async def upgrade(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/upgrade — spec: #post_matrixclientv3roomsroomidupgrade.

        "Upgrades the given room to a particular room version." Body: ``new_version``, and
        ``additional_creators`` for room versions with additional creators (v12+).
        """  # noqa: E501
        body = await read_json_body(self._max_body)
        new_version = required_string(body, "new_version")
        creators = body.get("additional_creators", [])
        if not isinstance(creators, list) or not all(isinstance(u, str) for u in creators):
            raise BadJson("'additional_creators' must be a list of user IDs")
        replacement = await self._upgrades.upgrade(requester, room_id, new_version, creators)
        return {"replacement_room": replacement}
