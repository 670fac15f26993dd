"""Server keys: publishing ours, and answering notary queries about other servers'.

Spec: server-server-api.md › Retrieving server keys
(https://spec.matrix.org/v1.19/server-server-api/#retrieving-server-keys). These endpoints
need no authentication: "Key API specifically does not require a signed request".
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from quart import request

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.errors import BadJson, InvalidParam
from homeserver.services.server_keys import ServerKeys

__all__ = ["ServerKeysApi"]


def _min_valid(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadJson(f"{where}: minimum_valid_until_ts must be an integer")
    return value


class ServerKeysApi:
    """``/_matrix/key/v2/server`` and ``/_matrix/key/v2/query``.

    Args:
        keys: the key ring.
        max_body_bytes: request body limit.
    """

    def __init__(self, keys: ServerKeys, max_body_bytes: int) -> None:
        self._keys = keys
        self._max_body = max_body_bytes

    @route("GET", "/_matrix/key/v2/server")
    async def server_keys(self) -> JsonDict:
        """GET /_matrix/key/v2/server — spec: server-server-api › Publishing Keys
        (#get_matrixkeyv2server).

        "Gets the homeserver's published signing keys. The homeserver may have any number of
        active keys and may have a number of old keys." Signed by our active key, with
        ``valid_until_ts`` ``federation.key_validity_period_s`` from now.
        """
        return self._keys.own_keys_response()

    @route("GET", "/_matrix/key/v2/server/{key_id}")
    async def server_key(self, key_id: str) -> JsonDict:
        """GET /_matrix/key/v2/server/{keyId} — the deprecated form with a key ID (the spec
        now has servers return all keys); older servers still ask it, so we answer with every
        key, as Synapse does."""
        _ = key_id
        return self._keys.own_keys_response()

    @route("GET", "/_matrix/key/v2/query/{server_name}")
    async def query_one(self, server_name: str) -> JsonDict:
        """GET /_matrix/key/v2/query/{serverName} — spec: server-server-api › Querying Keys
        Through Another Server (#get_matrixkeyv2queryservername).

        "Query for another server's keys. The receiving (notary) server must sign the keys
        returned by the queried server." ``minimum_valid_until_ts``: "If not supplied, the
        notary server MUST use the current time."
        """
        return await self._query_one(server_name, None)

    @route("GET", "/_matrix/key/v2/query/{server_name}/{key_id}")
    async def query_one_key(self, server_name: str, key_id: str) -> JsonDict:
        """GET /_matrix/key/v2/query/{serverName}/{keyId} — the form before the key ID was
        deprecated (SyTest and older servers use it)."""
        return await self._query_one(server_name, key_id)

    async def _query_one(self, server_name: str, key_id: str | None) -> JsonDict:
        raw = request.args.get("minimum_valid_until_ts")
        minimum: int | None = None
        if raw is not None:
            try:
                minimum = int(raw)
            except ValueError:
                raise InvalidParam("minimum_valid_until_ts must be an integer") from None
        if key_id:
            return {"server_keys": await self._keys.query({server_name: {key_id: minimum}})}
        return {
            "server_keys": await self._keys.query({server_name: {}}, minimum_valid_until_ts=minimum)
        }

    @route("POST", "/_matrix/key/v2/query")
    async def query(self) -> JsonDict:
        """POST /_matrix/key/v2/query — spec: server-server-api › Querying Keys Through
        Another Server (#post_matrixkeyv2query).

        "Query for keys from multiple servers in a batch format. The receiving (notary) server
        must sign the keys returned by the queried servers."
        """
        body = await read_json_body(self._max_body)
        server_keys = body.get("server_keys")
        if not isinstance(server_keys, Mapping):
            raise BadJson("server_keys must be an object")
        criteria: dict[str, dict[str, int | None]] = {}
        for server_name, keys in server_keys.items():
            if not isinstance(keys, Mapping):
                raise BadJson(f"server_keys.{server_name} must be an object")
            wanted: dict[str, int | None] = {}
            for key_id, criterion in keys.items():
                if not isinstance(criterion, Mapping):
                    raise BadJson(f"server_keys.{server_name}.{key_id} must be an object")
                wanted[key_id] = _min_valid(
                    criterion.get("minimum_valid_until_ts"), f"server_keys.{server_name}.{key_id}"
                )
            criteria[server_name] = wanted
        return {"server_keys": await self._keys.query(criteria)}
