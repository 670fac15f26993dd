"""Profiles: display name, avatar and extended profile fields.

Spec: https://spec.matrix.org/v1.16/client-server-api/#profiles

Reading needs no access token (the spec lists no security requirement for the ``GET``
endpoints); writing is for the owner only. Validation rules live in
:mod:`homeserver.services.profile`.
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.errors import MissingParam
from homeserver.services.profile import ProfileService
from homeserver.services.requester import Requester

__all__ = ["ProfileApi"]


class ProfileApi:
    """``/profile/{userId}`` and ``/profile/{userId}/{keyName}``.

    Args:
        profiles: the profile service.
        max_body_bytes: the body limit of ``PUT`` (a profile may be 64 KiB).
    """

    def __init__(self, profiles: ProfileService, max_body_bytes: int) -> None:
        self._profiles = profiles
        self._max_body = max_body_bytes

    @route("GET", "/_matrix/client/v3/profile/{user_id}", auth="optional")
    async def get_profile(self, user_id: str) -> JsonDict:
        """GET /_matrix/client/v3/profile/{userId} — spec: #get_matrixclientv3profileuserid.

        "Get the complete profile for a user." 404 ``M_NOT_FOUND`` when "this user does not
        exist".
        """
        profile = await self._profiles.get_profile(user_id)
        return dict(profile.fields)

    @route("GET", "/_matrix/client/v3/profile/{user_id}/{key_name}", auth="optional")
    async def get_profile_field(self, user_id: str, key_name: str) -> JsonDict:
        """GET /_matrix/client/v3/profile/{userId}/{keyName}.

        Spec: client-server-api/#get_matrixclientv3profileuseridkeyname. "Get the value of a
        profile field for a user." 404 when "there is no profile field with this key for this
        user, or the user does not exist".
        """
        return {key_name: await self._profiles.get_field(user_id, key_name)}

    @route(
        "PUT",
        "/_matrix/client/v3/profile/{user_id}/{key_name}",
        auth="user",
        rate_limit="client_default",
    )
    async def put_profile_field(
        self, requester: Requester, user_id: str, key_name: str
    ) -> JsonDict:
        """PUT /_matrix/client/v3/profile/{userId}/{keyName}.

        Spec: client-server-api/#put_matrixclientv3profileuseridkeyname. "Set or update a profile
        field for a user ... the total profile MUST be under 64 KiB." The body holds the value
        under ``keyName`` (``M_MISSING_PARAM`` if not).
        """
        body = await read_json_body(self._max_body)
        if key_name not in body:
            raise MissingParam(f"Missing {key_name!r} in the request body")
        await self._profiles.set_field(requester, user_id, key_name, body[key_name])
        return {}

    @route(
        "DELETE",
        "/_matrix/client/v3/profile/{user_id}/{key_name}",
        auth="user",
        rate_limit="client_default",
    )
    async def delete_profile_field(
        self, requester: Requester, user_id: str, key_name: str
    ) -> JsonDict:
        """DELETE /_matrix/client/v3/profile/{userId}/{keyName}.

        Spec: client-server-api/#delete_matrixclientv3profileuseridkeyname (v1.16). "Remove a
        specific field from a user's profile." 200 also when the field was not set.
        """
        await self._profiles.delete_field(requester, user_id, key_name)
        return {}
