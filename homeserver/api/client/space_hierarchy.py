"""The space hierarchy.

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomidhierarchy
(``space_hierarchy.yaml``). The walk and who sees which room are in
:mod:`homeserver.services.space_hierarchy`.
"""

from __future__ import annotations

from quart import request

from homeserver.api._http import JsonDict, route
from homeserver.errors import InvalidParam
from homeserver.services.requester import Requester
from homeserver.services.space_hierarchy import SpaceHierarchyService

__all__ = ["SpaceHierarchyApi"]


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidParam(f"'{name}' must be an integer") from None


def _bool_arg(name: str) -> bool:
    raw = request.args.get(name, "false")
    if raw not in ("true", "false"):
        raise InvalidParam(f"'{name}' must be true or false")
    return raw == "true"


class SpaceHierarchyApi:
    """``GET /_matrix/client/v1/rooms/{roomId}/hierarchy``.

    Args:
        hierarchy: the space hierarchy service.
    """

    def __init__(self, hierarchy: SpaceHierarchyService) -> None:
        self._hierarchy = hierarchy

    @route("GET", "/_matrix/client/v1/rooms/{room_id}/hierarchy", auth="user")
    async def hierarchy(self, requester: Requester, room_id: str) -> JsonDict:
        """GET /_matrix/client/v1/rooms/{roomId}/hierarchy.

        Spec: client-server-api/#get_matrixclientv1roomsroomidhierarchy. "Paginates over the
        space tree in a depth-first manner to locate child rooms of a given space."
        ``suggested_only``, ``limit``, ``max_depth``, ``from``.
        """
        page = await self._hierarchy.hierarchy(
            requester,
            room_id,
            limit=_int_arg("limit"),
            max_depth=_int_arg("max_depth"),
            suggested_only=_bool_arg("suggested_only"),
            from_token=request.args.get("from"),
        )
        out: JsonDict = {"rooms": page.rooms}
        if page.next_batch is not None:
            out["next_batch"] = page.next_batch
        return out
