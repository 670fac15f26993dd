"""User directory search.

Spec: https://spec.matrix.org/v1.16/client-server-api/#user-directory
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.api.client._body import required_string
from homeserver.errors import BadJson, Codes, MatrixError
from homeserver.services.requester import Requester
from homeserver.services.user_directory import DEFAULT_LIMIT, UserDirectoryService

__all__ = ["UserDirectoryApi"]


class UserDirectoryApi:
    """``POST /user_directory/search``.

    Args:
        directory: the user directory service.
    """

    def __init__(self, directory: UserDirectoryService) -> None:
        self._directory = directory

    @route(
        "POST", "/_matrix/client/v3/user_directory/search", auth="user", rate_limit="client_default"
    )
    async def search(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/user_directory/search.

        Spec: client-server-api/#post_matrixclientv3user_directorysearch.

        "Performs a search for users ... The search is performed case-insensitively on user IDs
        and display names." ``search_term`` is required; ``limit`` defaults to 10. Found are
        the users who share a room with the requester and those in public rooms (unless the
        server searches all its users: ``user_directory.search_all_users``). Guests may not
        search (spec: Guest access does not list this endpoint; Synapse refuses them too).
        """
        if requester.is_guest:
            raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guests may not search users")
        body = await read_json_body(16 * 1024)
        term = required_string(body, "search_term")
        limit = body.get("limit", DEFAULT_LIMIT)
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise BadJson("'limit' must be an integer")
        found = await self._directory.search(requester.user_id, term, limit)
        results: list[JsonDict] = []
        for entry in found.results:
            item: JsonDict = {"user_id": entry.user_id}
            if entry.display_name is not None:
                item["display_name"] = entry.display_name
            if entry.avatar_url is not None:
                item["avatar_url"] = entry.avatar_url
            results.append(item)
        return {"results": results, "limited": found.limited}
