"""Uploaded filters and the ``filter`` parameter of ``/sync``.

Spec: client-server-api/_index.md › Filtering; OpenAPI ``filter.yaml`` and ``sync.yaml``
(``filter``: "The ID of a filter created using the filter API or a filter JSON object encoded as
a string. The server will detect whether it is an ID or a JSON object by whether the first
character is a ``"{"`` open brace.").

A filter is checked with :func:`~homeserver.services.filtering.parse_sync_filter` before it is
stored, and stored as given (so ``GET`` returns what was uploaded: matrix-js-sdk compares the two
to decide whether to reuse a filter ID). Errors follow Synapse where the spec says nothing:

- ``GET /user/{userId}/filter/{filterId}`` with an unknown ID, or one that is not a filter ID of
  ours at all: ``404 M_NOT_FOUND`` (the spec's "Unknown filter").
- ``/sync?filter=<unknown ID>``: ``400 M_INVALID_PARAM`` "No such filter" (Synapse turns the
  store's 404 into this, since the request itself names a bad parameter).
- ``/sync?filter={not json``: ``400 M_NOT_JSON``; an inline filter that is JSON but invalid:
  the ``M_BAD_JSON`` / ``M_INVALID_PARAM`` of the parser.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

from homeserver.errors import InvalidParam, NotFound
from homeserver.services.filtering import (
    DEFAULT_SYNC_FILTER,
    SyncFilter,
    decode_filter_param,
    parse_sync_filter,
)
from homeserver.storage.filters import FilterStore

__all__ = ["FilterService"]

#: Stored filter IDs are non-negative integers below this (a BIGINT column).
_MAX_FILTER_ID = 2**63


def _stored_id(filter_id: str) -> int | None:
    """The integer a filter ID names, or ``None`` if it cannot be one of ours."""
    if not filter_id.isascii() or not filter_id.isdigit() or len(filter_id) > 19:
        return None
    value = int(filter_id)
    return value if value < _MAX_FILTER_ID else None


#: ``/sync`` filter parameters kept parsed (least recently used dropped first).
_RESOLVED_CACHE_SIZE = 4096
#: Longer parameters are parsed every time (they would make the cache large).
_MAX_CACHED_PARAM = 2048


class FilterService:
    """Create, fetch and resolve a user's filters.

    Args:
        filters: the filter store.
    """

    def __init__(self, filters: FilterStore) -> None:
        self._filters = filters
        self._resolved: OrderedDict[str, SyncFilter] = OrderedDict()

    async def create(self, user_id: str, body: Mapping[str, Any]) -> str:
        """Check and store a filter for ``user_id``; return its ID (never starting with ``{``).

        Uploading a filter identical to an earlier one returns the earlier ID.

        Raises:
            BadJson: ``body`` is not an object or a field has the wrong type.
            InvalidParam: a field has a value the spec does not allow.
        """
        parse_sync_filter(body)
        return str(await self._filters.add_filter(user_id, body))

    async def get(self, user_id: str, filter_id: str) -> dict[str, Any]:
        """The filter ``user_id`` uploaded as ``filter_id``, as uploaded.

        Raises:
            NotFound: the user has no such filter (another user's filter is not visible).
        """
        definition = await self._get(user_id, filter_id)
        if definition is None:
            raise NotFound("No such filter")
        return definition

    async def resolve(self, user_id: str, param: str | None) -> SyncFilter:
        """The filter a ``/sync`` request asks for through its ``filter`` query parameter.

        Args:
            user_id: the syncing user (stored IDs are looked up among their filters).
            param: the parameter: absent (the default filter), an inline JSON object (it starts
                with ``{``), or the ID of a stored filter.

        Raises:
            NotJson: an inline filter that is not JSON.
            BadJson: an inline filter of the wrong shape.
            InvalidParam: an inline filter with a bad value, or an unknown filter ID.
        """
        if param is None:
            return DEFAULT_SYNC_FILTER
        # Every /sync of a client sends the same parameter: parse it once. Parsed filters are
        # immutable and stored ones are never changed, so the cache needs no invalidation.
        key = param if param.startswith("{") else f"{user_id}\n{param}"
        cached = self._resolved.get(key)
        if cached is not None:
            self._resolved.move_to_end(key)
            return cached
        if param.startswith("{"):
            resolved = parse_sync_filter(decode_filter_param(param))
        else:
            definition = await self._get(user_id, param)
            if definition is None:
                raise InvalidParam("No such filter")
            # Stored filters were checked on upload; parsing again keeps one code path (and
            # rejects a row written by an older, laxer version instead of misreading it).
            resolved = parse_sync_filter(definition)
        if len(key) <= _MAX_CACHED_PARAM:
            self._resolved[key] = resolved
        if len(self._resolved) > _RESOLVED_CACHE_SIZE:
            self._resolved.popitem(last=False)
        return resolved

    async def _get(self, user_id: str, filter_id: str) -> dict[str, Any] | None:
        stored = _stored_id(filter_id)
        if stored is None:
            return None
        return await self._filters.get_filter(user_id, stored)
