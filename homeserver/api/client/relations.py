"""Relations and threads: ``/relations`` and ``/threads``.

Spec: client-server-api › Forming relationships between events › Relationships API
(``relations.yaml``) and › Threading › Querying threads in a room (``threads_list.yaml``).
Query strings are parsed here (a bad ``dir``, ``limit``, ``recurse`` or ``include`` is
``400 M_INVALID_PARAM``); the rules live in :mod:`homeserver.services.relations`.
"""

from __future__ import annotations

from typing import Literal, cast

from quart import request

from homeserver.api._http import JsonDict, route
from homeserver.errors import InvalidParam
from homeserver.services.relations import RelationsPage, RelationsService
from homeserver.services.requester import Requester
from homeserver.services.rooms import check_room_id

__all__ = ["RelationsApi"]

_V1 = "/_matrix/client/v1"
_MAX_FIELD_BYTES = 255


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidParam(f"{name!r} must be an integer") from None


def _bool_arg(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw not in ("true", "false"):
        raise InvalidParam(f"{name!r} must be 'true' or 'false'")
    return raw == "true"


def _dir_arg() -> Literal["b", "f"]:
    direction = request.args.get("dir", "b")
    if direction not in ("b", "f"):
        raise InvalidParam("'dir' must be 'b' or 'f'")
    return cast(Literal["b", "f"], direction)


def _check_event_id(event_id: str) -> str:
    if not event_id.startswith("$") or len(event_id.encode()) > _MAX_FIELD_BYTES:
        raise InvalidParam(f"Invalid event ID {event_id!r}")
    return event_id


def _page_json(page: RelationsPage) -> JsonDict:
    out: JsonDict = {"chunk": page.chunk}
    if page.next_batch is not None:
        out["next_batch"] = page.next_batch
    if page.prev_batch is not None:
        out["prev_batch"] = page.prev_batch
    if page.recursion_depth is not None:
        out["recursion_depth"] = page.recursion_depth
    return out


class RelationsApi:
    """``/relations`` and ``/threads``.

    Args:
        relations: the relations service.
    """

    def __init__(self, relations: RelationsService) -> None:
        self._relations = relations

    async def _page(
        self,
        requester: Requester,
        room_id: str,
        event_id: str,
        rel_type: str | None,
        event_type: str | None,
    ) -> JsonDict:
        check_room_id(room_id)
        _check_event_id(event_id)
        page = await self._relations.relations(
            requester,
            room_id,
            event_id,
            rel_type=rel_type,
            event_type=event_type,
            from_token=request.args.get("from"),
            to_token=request.args.get("to"),
            limit=_int_arg("limit"),
            direction=_dir_arg(),
            recurse=_bool_arg("recurse"),
        )
        return _page_json(page)

    @route("GET", f"{_V1}/rooms/{{room_id}}/relations/{{event_id}}", auth="user")
    async def relations(self, requester: Requester, room_id: str, event_id: str) -> JsonDict:
        """GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}.

        Spec: #get_matrixclientv1roomsroomidrelationseventid. "Retrieve all of the child events
        for a given parent event." Topologically most recent first (``dir=b``); ``from``/``to``
        take this endpoint's, ``/messages``' and ``/sync``'s tokens; ``recurse`` follows
        relations of relations (3 levels).
        """
        return await self._page(requester, room_id, event_id, None, None)

    @route("GET", f"{_V1}/rooms/{{room_id}}/relations/{{event_id}}/{{rel_type}}", auth="user")
    async def relations_of_type(
        self, requester: Requester, room_id: str, event_id: str, rel_type: str
    ) -> JsonDict:
        """GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}.

        Spec: #get_matrixclientv1roomsroomidrelationseventidreltype. "Retrieve all of the
        child events for a given parent event which relate to the parent using the given
        ``relType``."
        """
        return await self._page(requester, room_id, event_id, rel_type, None)

    @route(
        "GET",
        f"{_V1}/rooms/{{room_id}}/relations/{{event_id}}/{{rel_type}}/{{event_type}}",
        auth="user",
    )
    async def relations_of_type_and_event_type(
        self, requester: Requester, room_id: str, event_id: str, rel_type: str, event_type: str
    ) -> JsonDict:
        """GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}.

        Spec: #get_matrixclientv1roomsroomidrelationseventidreltypeeventtype. "Retrieve all of
        the child events for a given parent event which relate to the parent using the given
        ``relType`` and have the given ``eventType``."
        """
        return await self._page(requester, room_id, event_id, rel_type, event_type)

    @route("GET", f"{_V1}/rooms/{{room_id}}/threads", auth="user")
    async def threads(self, requester: Requester, room_id: str) -> JsonDict:
        """GET /_matrix/client/v1/rooms/{roomId}/threads.

        Spec: #get_matrixclientv1roomsroomidthreads. "This API is used to paginate through the
        list of the thread roots in a given room." ``include`` is ``all`` or ``participated``;
        the threads with the newest activity come first, each root with its bundled
        aggregations.
        """
        check_room_id(room_id)
        include = request.args.get("include", "all")
        if include not in ("all", "participated"):
            raise InvalidParam("'include' must be 'all' or 'participated'")
        page = await self._relations.threads(
            requester,
            room_id,
            include=cast(Literal["all", "participated"], include),
            from_token=request.args.get("from"),
            limit=_int_arg("limit"),
        )
        out: JsonDict = {"chunk": page.chunk}
        if page.next_batch is not None:
            out["next_batch"] = page.next_batch
        return out
