"""Our users' devices and keys for other servers.

Spec: server-server-api › Device Management (``GET /user/devices/{userId}``,
https://spec.matrix.org/v1.19/server-server-api/#device-management) and › End-to-End
Encryption (``POST /user/keys/query``, ``POST /user/keys/claim``,
https://spec.matrix.org/v1.19/server-server-api/#end-to-end-encryption). Each needs a request
signed by the asking server (X-Matrix); answers only ever speak of our own users.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from homeserver.api._http import JsonDict, route
from homeserver.api.client._body import optional_json_body
from homeserver.errors import BadJson, MissingParam
from homeserver.services.federation_devices import FederationDevices

__all__ = ["UserKeysApi"]

Authenticate = Callable[[], Awaitable[str]]


def _object(body: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    if key not in body:
        raise MissingParam(f"'{key}' is required")
    value = body[key]
    if not isinstance(value, Mapping):
        raise BadJson(f"'{key}' must be an object")
    return value


class UserKeysApi:
    """``/user/devices/{userId}``, ``/user/keys/query`` and ``/user/keys/claim``.

    Args:
        devices: our users' devices and keys.
        authenticate: the request authentication (X-Matrix); returns the origin.
        max_body_bytes: the request body limit.
    """

    def __init__(
        self, devices: FederationDevices, authenticate: Authenticate, max_body_bytes: int
    ) -> None:
        self._devices = devices
        self._authenticate = authenticate
        self._max_body = max_body_bytes

    @route("GET", "/_matrix/federation/v1/user/devices/{user_id}")
    async def user_devices(self, user_id: str) -> JsonDict:
        """GET /_matrix/federation/v1/user/devices/{userId} — spec:
        #get_matrixfederationv1userdevicesuserid.

        "Gets information on all of the user's devices": ``stream_id`` ("Unique ID for the
        user's device list. Must be incremented when any of the device list changes."), the
        devices with their keys, and the master and self-signing keys. 400 for a user of
        another server.
        """
        await self._authenticate()
        return await self._devices.user_devices(user_id)

    @route("POST", "/_matrix/federation/v1/user/keys/query")
    async def query(self) -> JsonDict:
        """POST /_matrix/federation/v1/user/keys/query — spec:
        #post_matrixfederationv1userkeysquery.

        "Returns the current devices and identity keys for the given users."
        ``device_keys``: ``{user_id: [device_id, ...]}``, an empty list for every device.
        """
        await self._authenticate()
        body = await optional_json_body(self._max_body)
        wanted: dict[str, list[str]] = {}
        for user_id, device_ids in _object(body, "device_keys").items():
            if not isinstance(device_ids, list) or not all(isinstance(d, str) for d in device_ids):
                raise BadJson("device_keys values must be lists of device IDs")
            wanted[user_id] = device_ids
        return await self._devices.query(wanted)

    @route("POST", "/_matrix/federation/v1/user/keys/claim")
    async def claim(self) -> JsonDict:
        """POST /_matrix/federation/v1/user/keys/claim — spec:
        #post_matrixfederationv1userkeysclaim.

        "Claims one-time keys for use in pre-key messages." ``one_time_keys``:
        ``{user_id: {device_id: algorithm}}``; a device without one-time keys gives its
        fallback key, or nothing.
        """
        await self._authenticate()
        body = await optional_json_body(self._max_body)
        wanted: dict[str, dict[str, str]] = {}
        for user_id, by_device in _object(body, "one_time_keys").items():
            if not isinstance(by_device, Mapping) or not all(
                isinstance(a, str) for a in by_device.values()
            ):
                raise BadJson("one_time_keys values must map device IDs to algorithms")
            wanted[user_id] = dict(by_device)
        return await self._devices.claim(wanted)
