"""Server-side search.

Spec: https://spec.matrix.org/v1.19/client-server-api/#server-side-search
(``search.yaml``). The search itself, its ordering, pagination and visibility rules are in
:mod:`homeserver.services.search`.
"""

from __future__ import annotations

from quart import request

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.services.requester import Requester
from homeserver.services.search import SearchService, parse_search_request

__all__ = ["SearchApi"]


class SearchApi:
    """``POST /search``.

    Args:
        search: the search service.
        max_body_bytes: the request body limit.
    """

    def __init__(self, search: SearchService, max_body_bytes: int) -> None:
        self._search = search
        self._max_body = max_body_bytes

    @route("POST", "/_matrix/client/v3/search", auth="user", rate_limit="client_default")
    async def search(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/search.

        Spec: client-server-api/#post_matrixclientv3search. "Performs a full text search across
        different categories." The only category is ``room_events``: "This category covers all
        events that the user is allowed to see, including events in rooms that they have left."
        """
        criteria = parse_search_request(await read_json_body(self._max_body))
        return await self._search.search(requester, criteria, request.args.get("next_batch"))
