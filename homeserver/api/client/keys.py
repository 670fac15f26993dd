"""End-to-end encryption keys: upload, query, claim, changes, cross-signing.

Spec: https://spec.matrix.org/v1.19/client-server-api/#end-to-end-encryption (OpenAPI
``keys.yaml`` and ``cross_signing.yaml``). Bodies are checked for shape here; the key objects
inside are parsed and verified by :mod:`e2ee` through :class:`~homeserver.services.keys.KeyService`.

``/keys/device_signing/upload`` and ``/keys/signatures/upload`` are also served under
``/_matrix/client/unstable/``, their prefix before Matrix 1.1.

``/keys/device_signing/upload`` uses user-interactive authentication unless the user has no
master key yet or the upload holds no new keys (the service decides); the UIA check sees the
raw body, so it happens here.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from quart import request

from federation.core.canonicaljson import encode_canonical_json
from federation.core.errors import CanonicalJSONError
from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.errors import BadJson, InvalidParam, MissingParam
from homeserver.services.keys import KeyService
from homeserver.services.requester import Requester
from homeserver.services.uia import UiaService, request_key
from homeserver.streams import InvalidStreamToken, StreamToken

__all__ = ["KeysApi"]

_PREFIX = "/_matrix/client/v3"
#: The cross-signing endpoints were first served under the unstable prefix (MSC1756); Synapse
#: still serves them there, and SyTest and older clients use it.
_UNSTABLE = "/_matrix/client/unstable"
#: The longest ``timeout`` honoured for remote key queries and claims, in milliseconds.
_MAX_TIMEOUT_MS = 60_000


def _timeout(body: Mapping[str, Any]) -> int:
    value = body.get("timeout", 10_000)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise BadJson("timeout must be a non-negative integer")
    return min(value, _MAX_TIMEOUT_MS)


def _object(value: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise BadJson(f"{what} must be an object")
    return value


def _query_body(body: Mapping[str, Any]) -> dict[str, list[str]]:
    if "device_keys" not in body:
        raise MissingParam("Missing 'device_keys'")
    out: dict[str, list[str]] = {}
    for user_id, device_ids in _object(body["device_keys"], "device_keys").items():
        if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
            raise BadJson("device_keys maps user IDs to lists of device IDs")
        out[user_id] = device_ids
    return out


def _claim_body(body: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    if "one_time_keys" not in body:
        raise MissingParam("Missing 'one_time_keys'")
    out: dict[str, dict[str, str]] = {}
    for user_id, by_device in _object(body["one_time_keys"], "one_time_keys").items():
        devices = _object(by_device, f"one_time_keys.{user_id}")
        if not all(isinstance(a, str) and a for a in devices.values()):
            raise BadJson("one_time_keys maps device IDs to algorithm names")
        out[user_id] = dict(devices)
    return out


def _token_arg(name: str) -> StreamToken | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    try:
        return StreamToken.parse(raw)
    except InvalidStreamToken:
        raise InvalidParam(f"{name!r} is not a valid sync token") from None


def _signing_request_key(body: Mapping[str, Any]) -> str:
    """Binds a UIA session to this exact set of keys (a hash, so the key stays short)."""
    keys = {k: v for k, v in body.items() if k != "auth"}
    try:
        digest = hashlib.sha256(encode_canonical_json(keys)).hexdigest()
    except CanonicalJSONError:
        raise BadJson("The keys are not canonical JSON") from None
    return request_key("POST", "/keys/device_signing/upload", {"keys": digest})


class KeysApi:
    """``/keys/*`` of the client-server API.

    Args:
        keys: the key service.
        uia: user-interactive authentication (cross-signing key replacement).
        reauth_flows: the UIA flows that re-authenticate a user.
        max_body_bytes: the body limit of these endpoints.
    """

    def __init__(
        self,
        keys: KeyService,
        uia: UiaService,
        *,
        reauth_flows: list[list[str]],
        max_body_bytes: int,
    ) -> None:
        self._keys = keys
        self._uia = uia
        self._flows = reauth_flows
        self._max_body = max_body_bytes

    @route("POST", f"{_PREFIX}/keys/upload", auth="user")
    async def upload(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/keys/upload — spec: #post_matrixclientv3keysupload.

        "Publishes end-to-end encryption keys for the device." Device keys must be the
        requester's device's and self-signed; a one-time key ID already stored with other
        content is refused. Answers ``one_time_key_counts``.
        """
        body = await read_json_body(self._max_body)
        counts = await self._keys.upload(requester, body)
        return {"one_time_key_counts": counts}

    @route("POST", f"{_PREFIX}/keys/query", auth="user")
    async def query(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/keys/query — spec: #post_matrixclientv3keysquery.

        "Returns the current devices and identity keys for the given users." An empty device
        list means every device; remote users are reported under ``failures`` until
        federation exists.
        """
        body = await read_json_body(self._max_body)
        return await self._keys.query(requester, _query_body(body), _timeout(body))

    @route("POST", f"{_PREFIX}/keys/claim", auth="user")
    async def claim(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/keys/claim — spec: #post_matrixclientv3keysclaim.

        "Claims one-time keys for use in pre-key messages." One key per device, never the
        same one-time key twice; the fallback key when no one-time key is left.
        """
        body = await read_json_body(self._max_body)
        return await self._keys.claim(_claim_body(body), _timeout(body))

    @route("GET", f"{_PREFIX}/keys/changes", auth="user")
    async def changes(self, requester: Requester) -> JsonDict:
        """GET /_matrix/client/v3/keys/changes — spec: #get_matrixclientv3keyschanges.

        "Gets a list of users who have updated their device identity keys since a previous
        sync token." ``from`` is required; ``to`` defaults to now.
        """
        from_token = _token_arg("from")
        if from_token is None:
            raise MissingParam("Missing 'from'")
        to_token = _token_arg("to") or await self._keys.current_token()
        changed, left = await self._keys.device_list_changes(
            requester.user_id, from_token, to_token
        )
        return {"changed": sorted(changed), "left": sorted(left)}

    @route("POST", f"{_PREFIX}/keys/device_signing/upload", auth="user")
    @route("POST", f"{_UNSTABLE}/keys/device_signing/upload", auth="user")
    async def upload_signing_keys(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/keys/device_signing/upload.

        Spec: #post_matrixclientv3keysdevice_signingupload. "Publishes cross-signing keys for
        the user." User-interactive authentication "MUST be performed ... except ... there is
        no existing master signing key ... OR ... the request contains no new keys".
        """
        body = await read_json_body(self._max_body)
        if await self._keys.cross_signing_upload_needs_auth(requester, body):
            done = await self._uia.check(
                requester=requester,
                body=body,
                request_key=_signing_request_key(body),
                flows=self._flows,
                description="replace your cross-signing keys",
            )
            await self._keys.upload_cross_signing_keys(requester, body)
            await self._uia.finish(done)
        else:
            await self._keys.upload_cross_signing_keys(requester, body)
        return {}

    @route("POST", f"{_PREFIX}/keys/signatures/upload", auth="user")
    @route("POST", f"{_UNSTABLE}/keys/signatures/upload", auth="user")
    async def upload_signatures(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/keys/signatures/upload.

        Spec: #post_matrixclientv3keyssignaturesupload. "Publishes cross-signing signatures
        for the user." Each signed object must match the stored key; what failed is listed
        per user and key ID under ``failures`` (``M_INVALID_SIGNATURE`` for a bad signature).
        """
        body = await read_json_body(self._max_body)
        return await self._keys.upload_signatures(requester, body)
