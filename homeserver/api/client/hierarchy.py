"""Space hierarchy.

Spec: client-server-api › Spaces, ``GET /_matrix/client/v1/rooms/{roomId}/hierarchy``
(data/api/client-server/space_hierarchy.yaml, v1.2). The walk and its rules:
:mod:`homeserver.services.hierarchy`.
"""

from __future__ import annotations

from quart import request

from homeserver.api._http import JsonDict, route
from homeserver.api.client.directory import chunk_json
from homeserver.errors import InvalidParam
from homeserver.services.hierarchy import HierarchyService
from homeserver.services.requester import Requester

__all__ = ["HierarchyApi"]


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if not raw.lstrip("-").isdigit() or len(raw) > 18:
        raise InvalidParam(f"{name!r} must be an integer")
    return int(raw)


def _bool_arg(name: str) -> bool:
    raw = request.args.get(name)
    if raw is None:
        return False
    if raw not in ("true", "false"):
        raise InvalidParam(f"{name!r} must be 'true' or 'false'")
    return raw == "true"


class HierarchyApi:
    """``/rooms/{roomId}/hierarchy``.

    Args:
        hierarchy: the space tree walker.
    """

    def __init__(self, hierarchy: HierarchyService) -> None:
        self._hierarchy = hierarchy

    @route("GET", "/_matrix/client/v1/rooms/{room_id}/hierarchy", auth="user")
    async def get_hierarchy(self, requester: Requester, room_id: str) -> JsonDict:
        """GET /_matrix/client/v1/rooms/{roomId}/hierarchy.

        Spec: client-server-api/#get_matrixclientv1roomsroomidhierarchy.

        "Paginates over the space tree in a depth-first manner to locate child rooms of a given
        space." Each room is a room summary with its ``children_state`` (the ``m.space.child``
        events as stripped state with ``origin_server_ts``). 400 for a bad ``from``, ``limit``
        or ``max_depth``; 403 when "the user cannot view or peek on the room".
        """
        page = await self._hierarchy.hierarchy(
            requester,
            room_id,
            suggested_only=_bool_arg("suggested_only"),
            limit=_int_arg("limit"),
            max_depth=_int_arg("max_depth"),
            from_token=request.args.get("from"),
        )
        out: JsonDict = {
            "rooms": [
                {**chunk_json(room.summary), "children_state": room.children_state}
                for room in page.rooms
            ]
        }
        if page.next_batch is not None:
            out["next_batch"] = page.next_batch
        return out
