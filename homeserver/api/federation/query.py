"""Queries other servers make of ours: profiles, room aliases and the published room list.

Spec: server-server-api › Querying for information
(https://spec.matrix.org/v1.19/server-server-api/#querying-for-information) and › Public Room
Directory (https://spec.matrix.org/v1.19/server-server-api/#public-room-directory). Each needs
a request signed by the asking server (X-Matrix); answers only ever speak of our own users,
aliases and rooms.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from quart import request

from federation.core.errors import InvalidIdentifier
from federation.core.ids import parse_room_alias
from homeserver.api._http import JsonDict, route
from homeserver.api.client._body import optional_json_body
from homeserver.api.client.directory import page_json, parse_public_rooms_body
from homeserver.errors import InvalidParam, MissingParam, NotFound
from homeserver.services.directory import DirectoryService, PublicRoomsQuery
from homeserver.services.profile import ProfileService

__all__ = ["FederationQueryApi"]

Authenticate = Callable[[], Awaitable[str]]
#: The profile fields the spec names for ``field``; any other key is refused.
_PROFILE_FIELDS = ("displayname", "avatar_url")


class FederationQueryApi:
    """``/query/profile``, ``/query/directory`` and ``/publicRooms`` for other servers.

    Args:
        profiles: local users' profiles.
        directory: local aliases and the published room list.
        authenticate: the request authentication (X-Matrix); returns the origin.
        server_name: ours.
        max_body_bytes: the request body limit.
    """

    def __init__(
        self,
        profiles: ProfileService,
        directory: DirectoryService,
        authenticate: Authenticate,
        *,
        server_name: str,
        max_body_bytes: int,
    ) -> None:
        self._profiles = profiles
        self._directory = directory
        self._authenticate = authenticate
        self._server_name = server_name
        self._max_body = max_body_bytes

    @route("GET", "/_matrix/federation/v1/query/profile")
    async def profile(self) -> JsonDict:
        """GET /_matrix/federation/v1/query/profile — spec:
        #get_matrixfederationv1queryprofile.

        "Performs a query to get profile information from the receiving server." ``user_id``
        (required) and ``field`` (``displayname`` or ``avatar_url``; all fields without it).
        404 ``M_NOT_FOUND`` when "the user does not exist or does not have a profile".
        """
        await self._authenticate()
        user_id = request.args.get("user_id")
        if not user_id:
            raise MissingParam("'user_id' is required")
        field = request.args.get("field")
        if field is not None and field not in _PROFILE_FIELDS:
            raise InvalidParam(f"'field' must be one of {', '.join(_PROFILE_FIELDS)}")
        profile = await self._profiles.get_profile(user_id, ask_remote=False)
        fields: dict[str, Any] = dict(profile.fields)
        if field is not None:
            if field not in fields:
                raise NotFound(f"The profile has no {field!r}")
            return {field: fields[field]}
        return fields

    @route("GET", "/_matrix/federation/v1/query/directory")
    async def directory(self) -> JsonDict:
        """GET /_matrix/federation/v1/query/directory — spec:
        #get_matrixfederationv1querydirectory.

        "Retrieve mapping of a room alias to a room ID." Only our own aliases: "Servers may
        wish to cache the response to this query". 404 ``M_NOT_FOUND`` for an unknown alias.
        """
        await self._authenticate()
        alias = request.args.get("room_alias")
        if not alias:
            raise MissingParam("'room_alias' is required")
        try:
            parsed = parse_room_alias(alias)
        except InvalidIdentifier:
            raise InvalidParam("Invalid room alias") from None
        if parsed.server_name != self._server_name:
            raise NotFound("Room alias not found")
        found = await self._directory.resolve_alias(alias)
        if found is None:
            raise NotFound("Room alias not found")
        room_id, servers = found
        return {"room_id": room_id, "servers": servers}

    @route("GET", "/_matrix/federation/v1/publicRooms")
    async def get_public_rooms(self) -> JsonDict:
        """GET /_matrix/federation/v1/publicRooms — spec: #get_matrixfederationv1publicrooms.

        "Gets all the public rooms for the homeserver." ``limit``, ``since``,
        ``include_all_networks``, ``third_party_instance_id``.
        """
        await self._authenticate()
        raw_limit = request.args.get("limit")
        limit = None
        if raw_limit is not None:
            try:
                limit = int(raw_limit)
            except ValueError:
                raise InvalidParam("'limit' must be an integer") from None
        include_all = request.args.get("include_all_networks", "false")
        if include_all not in ("true", "false"):
            raise InvalidParam("'include_all_networks' must be true or false")
        query = PublicRoomsQuery(
            limit=limit,
            since=request.args.get("since"),
            include_all_networks=include_all == "true",
            third_party_instance_id=request.args.get("third_party_instance_id"),
        )
        return page_json(await self._directory.public_rooms(query))

    @route("POST", "/_matrix/federation/v1/publicRooms")
    async def post_public_rooms(self) -> JsonDict:
        """POST /_matrix/federation/v1/publicRooms — spec: #post_matrixfederationv1publicrooms.

        "Lists the server's published room directory with an optional filter."
        """
        await self._authenticate()
        body = await optional_json_body(self._max_body)
        return page_json(await self._directory.public_rooms(parse_public_rooms_body(body, None)))
