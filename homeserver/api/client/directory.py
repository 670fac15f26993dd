"""Room aliases and the published room directory.

Spec: https://spec.matrix.org/v1.19/client-server-api/#room-aliases (``directory.yaml``) and
https://spec.matrix.org/v1.19/client-server-api/#published-room-directory
(``list_public_rooms.yaml``).

Bodies and query strings become typed values here; who may do what lives in
:mod:`homeserver.services.directory`.
"""

from __future__ import annotations

from typing import Any

from quart import request

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.api.client._body import optional_json_body, required_string
from homeserver.errors import BadJson, InvalidParam, MissingToken
from homeserver.services.directory import (
    DirectoryService,
    PublicRoomsPage,
    PublicRoomsQuery,
    PublishedRoom,
)
from homeserver.services.requester import Requester

__all__ = ["DirectoryApi", "chunk_json", "parse_public_rooms_body"]

_PREFIX = "/_matrix/client/v3"
_CHUNK_OPTIONAL = ("name", "topic", "avatar_url", "canonical_alias", "join_rule", "room_type")


def chunk_json(room: PublishedRoom) -> JsonDict:
    """A ``PublishedRoomsChunk``: the spec's keys only, absent optional ones omitted (matrix-nio
    builds ``PublicRoom(**chunk)`` and fails on any other key)."""
    out: JsonDict = {
        "room_id": room.room_id,
        "num_joined_members": room.num_joined_members,
        "world_readable": room.world_readable,
        "guest_can_join": room.guest_can_join,
    }
    for key in _CHUNK_OPTIONAL:
        value = getattr(room, key)
        if value is not None:
            out[key] = value
    return out


def page_json(page: PublicRoomsPage) -> JsonDict:
    out: JsonDict = {"chunk": [chunk_json(r) for r in page.chunk]}
    if page.next_batch is not None:
        out["next_batch"] = page.next_batch
    if page.prev_batch is not None:
        out["prev_batch"] = page.prev_batch
    if page.total_room_count_estimate is not None:
        out["total_room_count_estimate"] = page.total_room_count_estimate
    return out


def _int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise BadJson(f"{name!r} must be an integer")
    return value


def _opt_str(value: Any, name: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadJson(f"{name!r} must be a string")
    return value


def parse_public_rooms_body(body: JsonDict, server: str | None) -> PublicRoomsQuery:
    """The ``POST /publicRooms`` body as a :class:`PublicRoomsQuery`.

    Raises:
        BadJson: a field has the wrong type.
    """
    raw_filter = body.get("filter")
    if raw_filter is not None and not isinstance(raw_filter, dict):
        raise BadJson("'filter' must be an object")
    flt: dict[str, Any] = raw_filter or {}
    room_types: tuple[str | None, ...] | None = None
    raw_types = flt.get("room_types")
    if raw_types is not None:
        if not isinstance(raw_types, list) or not all(
            t is None or isinstance(t, str) for t in raw_types
        ):
            raise BadJson("'room_types' must be a list of strings and nulls")
        room_types = tuple(raw_types)
    include_all = body.get("include_all_networks", False)
    if not isinstance(include_all, bool):
        raise BadJson("'include_all_networks' must be a boolean")
    return PublicRoomsQuery(
        limit=_int(body.get("limit"), "limit"),
        since=_opt_str(body.get("since"), "since"),
        server=server,
        generic_search_term=_opt_str(flt.get("generic_search_term"), "generic_search_term"),
        room_types=room_types,
        include_all_networks=include_all,
        third_party_instance_id=_opt_str(
            body.get("third_party_instance_id"), "third_party_instance_id"
        ),
    )


class DirectoryApi:
    """``/directory/room/{roomAlias}``, ``/rooms/{roomId}/aliases``,
    ``/directory/list/room/{roomId}`` and ``/publicRooms``.

    Args:
        directory: the directory service.
        max_body_bytes: the request body limit.
        public_rooms_without_auth: ``room_directory.public_rooms_without_auth``.
    """

    def __init__(
        self,
        directory: DirectoryService,
        max_body_bytes: int,
        *,
        public_rooms_without_auth: bool = False,
    ) -> None:
        self._directory = directory
        self._max_body = max_body_bytes
        self._public_without_auth = public_rooms_without_auth

    # --- aliases ------------------------------------------------------------------------------

    @route("PUT", f"{_PREFIX}/directory/room/{{room_alias:path}}", auth="user")
    async def put_alias(self, requester: Requester, room_alias: str) -> JsonDict:
        """PUT /_matrix/client/v3/directory/room/{roomAlias} — spec: #put_matrixclientv3directoryroomroomalias.

        "Create a new mapping from room alias to room ID." ``409`` when the alias exists.
        """  # noqa: E501
        body = await read_json_body(self._max_body)
        room_id = required_string(body, "room_id")
        await self._directory.put_alias(requester, room_alias, room_id)
        return {}

    @route("GET", f"{_PREFIX}/directory/room/{{room_alias:path}}")
    async def get_alias(self, room_alias: str) -> JsonDict:
        """GET /_matrix/client/v3/directory/room/{roomAlias} — spec: #get_matrixclientv3directoryroomroomalias.

        "Requests that the server resolve a room alias to a room ID." No access token needed.
        """  # noqa: E501
        room_id, servers = await self._directory.get_alias(room_alias)
        return {"room_id": room_id, "servers": servers}

    @route("DELETE", f"{_PREFIX}/directory/room/{{room_alias:path}}", auth="user")
    async def delete_alias(self, requester: Requester, room_alias: str) -> JsonDict:
        """DELETE /_matrix/client/v3/directory/room/{roomAlias} — spec: #delete_matrixclientv3directoryroomroomalias.

        "Remove a mapping of room alias to room ID." By the alias's creator, a server admin or
        a room member with the power to send ``m.room.canonical_alias``.
        """  # noqa: E501
        await self._directory.delete_alias(requester, room_alias)
        return {}

    @route("GET", f"{_PREFIX}/rooms/{{room_id}}/aliases", auth="user")
    async def local_aliases(self, requester: Requester, room_id: str) -> JsonDict:
        """GET /_matrix/client/v3/rooms/{roomId}/aliases — spec: #get_matrixclientv3roomsroomidaliases.

        "Get a list of aliases maintained by the local server for the given room." Members
        only, or anyone when the room is ``world_readable``.
        """  # noqa: E501
        return {"aliases": await self._directory.local_aliases(requester, room_id)}

    # --- directory visibility -----------------------------------------------------------------

    @route("GET", f"{_PREFIX}/directory/list/room/{{room_id}}")
    async def get_visibility(self, room_id: str) -> JsonDict:
        """GET /_matrix/client/v3/directory/list/room/{roomId} — spec: #get_matrixclientv3directorylistroomroomid.

        "Gets the visibility of a given room in the server's published room directory."
        """  # noqa: E501
        public = await self._directory.get_visibility(room_id)
        return {"visibility": "public" if public else "private"}

    @route("PUT", f"{_PREFIX}/directory/list/room/{{room_id}}", auth="user")
    async def put_visibility(self, requester: Requester, room_id: str) -> JsonDict:
        """PUT /_matrix/client/v3/directory/list/room/{roomId} — spec: #put_matrixclientv3directorylistroomroomid.

        "Sets the visibility of a given room in the server's published room directory."
        ``visibility`` defaults to ``public``.
        """  # noqa: E501
        body = await optional_json_body(self._max_body)
        visibility = body.get("visibility", "public")
        if visibility not in ("public", "private"):
            raise InvalidParam("'visibility' must be 'public' or 'private'")
        await self._directory.put_visibility(requester, room_id, visibility == "public")
        return {}

    # --- the published room list --------------------------------------------------------------

    @route("GET", f"{_PREFIX}/publicRooms", auth="optional")
    async def get_public_rooms(self, requester: Requester | None) -> JsonDict:
        """GET /_matrix/client/v3/publicRooms — spec: #get_matrixclientv3publicrooms.

        "Lists a server's published room directory." ``limit``, ``since``, ``server``.
        """
        if requester is None and not self._public_without_auth:
            raise MissingToken()
        raw_limit = request.args.get("limit")
        limit = None
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError:
                raise InvalidParam("'limit' must be an integer") from None
        query = PublicRoomsQuery(
            limit=limit, since=request.args.get("since"), server=request.args.get("server")
        )
        return page_json(await self._directory.public_rooms(query))

    @route("POST", f"{_PREFIX}/publicRooms", auth="user")
    async def post_public_rooms(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/publicRooms — spec: #post_matrixclientv3publicrooms.

        "Lists a server's published room directory with an optional filter."
        ``filter.generic_search_term``, ``filter.room_types``, ``include_all_networks``,
        ``third_party_instance_id``, ``limit``, ``since``; ``server`` in the query string.
        """
        body = await optional_json_body(self._max_body)
        query = parse_public_rooms_body(body, request.args.get("server"))
        return page_json(await self._directory.public_rooms(query))
