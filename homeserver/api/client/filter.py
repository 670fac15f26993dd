"""Filters: upload a filter, download it again.

Spec: https://spec.matrix.org/v1.19/client-server-api/#filtering (OpenAPI ``filter.yaml``).

"Filters can be created on the server and can be passed as a parameter to APIs which return
events. These filters alter the data returned from those APIs." A filter is checked on upload
(``M_BAD_JSON`` / ``M_INVALID_PARAM``, see :mod:`homeserver.services.filtering`) and stored as
given. Only the owner may create or read their filters: "The access token must be authorised to
make requests for this user id"; anyone else gets ``403 M_FORBIDDEN`` (Synapse's answer too).
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.errors import Forbidden
from homeserver.services.filters import FilterService
from homeserver.services.requester import Requester

__all__ = ["FilterApi"]


def _check_self(requester: Requester, user_id: str, action: str) -> None:
    if user_id != requester.user_id:
        raise Forbidden(f"Cannot {action} filters for other users")


class FilterApi:
    """``POST /user/{userId}/filter`` and ``GET /user/{userId}/filter/{filterId}``.

    Args:
        filters: the filter service.
        max_body_bytes: the body limit of ``POST``.
    """

    def __init__(self, filters: FilterService, max_body_bytes: int) -> None:
        self._filters = filters
        self._max_body = max_body_bytes

    @route(
        "POST",
        "/_matrix/client/v3/user/{user_id}/filter",
        auth="user",
        rate_limit="client_default",
    )
    async def define_filter(self, requester: Requester, user_id: str) -> JsonDict:
        """POST /_matrix/client/v3/user/{userId}/filter.

        Spec: client-server-api/#post_matrixclientv3useruseridfilter.

        "Uploads a new filter definition to the homeserver. Returns a filter ID that may be used
        in future requests to restrict which events are returned to the client." The ID "Cannot
        start with a ``{``": ours are decimal numbers. Uploading the same filter twice returns
        the same ID.
        """
        _check_self(requester, user_id, "create")
        body = await read_json_body(self._max_body)
        return {"filter_id": await self._filters.create(user_id, body)}

    @route("GET", "/_matrix/client/v3/user/{user_id}/filter/{filter_id}", auth="user")
    async def get_filter(self, requester: Requester, user_id: str, filter_id: str) -> JsonDict:
        """GET /_matrix/client/v3/user/{userId}/filter/{filterId}.

        Spec: client-server-api/#get_matrixclientv3useruseridfilterfilterid.

        "Download a filter": "The filter definition", as uploaded; ``404`` "Unknown filter"
        (``M_NOT_FOUND``) for an ID the user never got.
        """
        _check_self(requester, user_id, "get")
        return await self._filters.get(user_id, filter_id)
