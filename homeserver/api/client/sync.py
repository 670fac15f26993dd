"""``GET /_matrix/client/v3/sync``, served as a raw endpoint (see :mod:`homeserver.api.raw`).

Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv3sync
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from typing import Any, Protocol

from homeserver.api._http import JsonDict, route
from homeserver.api.client._body import optional_json_body
from homeserver.api.raw import RawRequest
from homeserver.errors import InvalidParam
from homeserver.services.filtering import SyncFilter
from homeserver.services.peeking import PeekService
from homeserver.services.receipts import check_room_id
from homeserver.services.requester import Requester
from homeserver.services.sync import SyncRequest, SyncService, parse_since

__all__ = ["PeekApi", "SyncEndpoint"]

_PRESENCE_STATES = frozenset({"online", "offline", "unavailable"})
#: The peek endpoints take an empty object.
_PEEK_BODY_BYTES = 4096


class FilterResolver(Protocol):
    def resolve(self, user_id: str, param: str | None) -> Awaitable[SyncFilter]: ...


def _bool_param(query: Mapping[str, str], name: str) -> bool:
    value = query.get(name)
    if value is None or value == "false":
        return False
    if value == "true":
        return True
    raise InvalidParam(f"{name} must be 'true' or 'false'")


def _timeout_param(query: Mapping[str, str]) -> int:
    value = query.get("timeout")
    if value is None or value == "":
        return 0
    try:
        timeout = int(value)
    except ValueError:
        raise InvalidParam("timeout must be an integer number of milliseconds") from None
    if timeout < 0:
        raise InvalidParam("timeout must not be negative")
    return timeout


class SyncEndpoint:
    """GET /_matrix/client/v3/sync.

    Spec: client-server-api/#get_matrixclientv3sync. "Synchronise the client's state with the
    latest state on the server. Clients use this API when they first log in to get an initial
    snapshot of the state on the server, and then continue to call this API to get incremental
    deltas to the state, and to receive new messages." ``since``: "A point in time to continue a
    sync from"; ``timeout``: "The maximum time to wait, in milliseconds, before returning this
    request"; ``full_state``; ``set_presence``: "Controls whether the client is automatically
    marked as online by polling this API."

    Args:
        sync: the sync service.
        filters: turns the ``filter`` parameter (an ID or inline JSON) into a filter.
    """

    method = "GET"
    path = "/_matrix/client/v3/sync"
    rate_limit: str | None = None
    json_body_limit = 0

    def __init__(
        self, sync: SyncService, filters: FilterResolver, apis: list[object] | None = None
    ) -> None:
        self._sync = sync
        self._filters = filters
        #: the framework routes that go with ``/sync`` (peeking), for the app to register
        self.apis: list[object] = apis or []

    async def __call__(self, request: RawRequest) -> dict[str, Any]:
        query = request.query
        requester = request.requester
        since = parse_since(query.get("since"))
        set_presence = query.get("set_presence")
        if set_presence is not None and set_presence not in _PRESENCE_STATES:
            raise InvalidParam("set_presence must be one of online, offline, unavailable")
        full_state = _bool_param(query, "full_state")
        timeout_ms = _timeout_param(query)
        sync_filter = await self._filters.resolve(requester.user_id, query.get("filter"))
        return await self._sync.sync(
            SyncRequest(
                user_id=requester.user_id,
                device_id=requester.device_id,
                filter=sync_filter,
                since=since,
                full_state=full_state,
                timeout_ms=timeout_ms,
                set_presence=set_presence,
                until_disconnect=request.until_disconnect,
            )
        )


class PeekApi:
    """``POST /peek/{roomIdOrAlias}`` and ``POST /unpeek/{roomId}`` (MSC2753, unstable).

    Args:
        peeks: the peek service.
    """

    def __init__(self, peeks: PeekService) -> None:
        self._peeks = peeks

    @route(
        "POST",
        "/_matrix/client/v3/peek/{room_id_or_alias}",
        auth="user",
        rate_limit="client_default",
    )
    async def peek(self, requester: Requester, room_id_or_alias: str) -> JsonDict:
        """POST /_matrix/client/v3/peek/{roomIdOrAlias}.

        Not in Matrix v1.19: MSC2753 ("Peeking via /sync"). "Start peeking into a room. The
        room will appear in the ``peek`` section of ``/sync`` for this device." Only
        world-readable rooms (``403 M_FORBIDDEN``); unknown rooms and aliases are ``404``.
        Answers ``{"room_id": ...}``.
        """
        await optional_json_body(_PEEK_BODY_BYTES)
        device_id = _device_of(requester)
        room_id = await self._peeks.peek(requester.user_id, device_id, room_id_or_alias)
        return {"room_id": room_id}

    @route(
        "POST",
        "/_matrix/client/v3/unpeek/{room_id}",
        auth="user",
        rate_limit="client_default",
    )
    async def unpeek(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/unpeek/{roomId}.

        Not in Matrix v1.19: MSC2753. "Stop peeking into a room." Not peeking is not an error.
        """
        await optional_json_body(_PEEK_BODY_BYTES)
        check_room_id(room_id)
        self._peeks.unpeek(requester.user_id, _device_of(requester), room_id)
        return {}


def _device_of(requester: Requester) -> str:
    if requester.device_id is None:
        raise InvalidParam("Peeks belong to a device; this access token has none")
    return requester.device_id
