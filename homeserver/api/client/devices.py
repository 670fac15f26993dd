"""Device management.

Spec: https://spec.matrix.org/v1.16/client-server-api/#device-management

Deleting devices needs user-interactive authentication (spec, Security considerations: "Servers
should require additional authentication beyond the access token when deleting devices"); the
UIA check sees the raw body (its ``auth`` dict), so it happens here, before the service runs.
"""

from __future__ import annotations

from collections.abc import Sequence

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.api.client._body import optional_json_body, optional_string
from homeserver.errors import BadJson, Forbidden, MissingParam
from homeserver.services.devices import Device, DeviceService
from homeserver.services.requester import Requester
from homeserver.services.uia import UiaService, request_key

__all__ = ["DELETE_FLOWS", "DevicesApi", "device_json"]

#: The UIA flows that authorise deleting devices.
DELETE_FLOWS: list[list[str]] = [["m.login.password"]]


def device_json(device: Device) -> JsonDict:
    """A device in the spec's shape.

    ``display_name`` and ``last_seen_*`` are sent as ``null`` when unset (the spec says absent):
    matrix-nio 0.26 requires all four keys, and Synapse sends ``null`` too.
    """
    return {
        "device_id": device.device_id,
        "display_name": device.display_name,
        "last_seen_ip": device.last_seen_ip,
        "last_seen_ts": device.last_seen_ts,
    }


def _request_key(method: str, path: str, device_ids: Sequence[str]) -> str:
    """Binds a UIA session to this request: the same method, path and (sorted) devices."""
    return request_key(method, path, {"devices": sorted(set(device_ids))})


class DevicesApi:
    """``/devices``, ``/devices/{deviceId}``, ``/delete_devices`` and ``/admin/whois``.

    Args:
        devices: the device service.
        uia: user-interactive authentication.
        max_body_bytes: the body limit of these endpoints.
    """

    def __init__(self, devices: DeviceService, uia: UiaService, max_body_bytes: int) -> None:
        self._devices = devices
        self._uia = uia
        self._max_body = max_body_bytes

    @route("GET", "/_matrix/client/v3/devices", auth="user")
    async def get_devices(self, requester: Requester) -> JsonDict:
        """GET /_matrix/client/v3/devices — spec: client-server-api/#get_matrixclientv3devices.

        "Gets information about all devices for the current user."
        """
        devices = await self._devices.list_devices(requester.user_id)
        return {"devices": [device_json(d) for d in devices]}

    @route("GET", "/_matrix/client/v3/devices/{device_id}", auth="user")
    async def get_device(self, requester: Requester, device_id: str) -> JsonDict:
        """GET /_matrix/client/v3/devices/{deviceId} — spec: #get_matrixclientv3devicesdeviceid.

        "Gets information on a single device, by device id." 404 if the user has no such device.
        """
        return device_json(await self._devices.get_device(requester.user_id, device_id))

    @route("PUT", "/_matrix/client/v3/devices/{device_id}", auth="user")
    async def put_device(self, requester: Requester, device_id: str) -> JsonDict:
        """PUT /_matrix/client/v3/devices/{deviceId} — spec: #put_matrixclientv3devicesdeviceid.

        "Updates the metadata on the given device, or creates a new device. The ability to create
        new devices is only available to application services: regular clients may only update
        existing devices." So an unknown device is 404; no ``display_name`` leaves it unchanged.
        """
        body = await read_json_body(self._max_body)
        display_name = optional_string(body, "display_name")
        if display_name is None:
            await self._devices.check_device_exists(requester.user_id, device_id)
        else:
            await self._devices.rename_device(requester.user_id, device_id, display_name)
        return {}

    @route("GET", "/_matrix/client/v3/admin/whois/{user_id}", auth="user")
    async def whois(self, requester: Requester, user_id: str) -> JsonDict:
        """GET /_matrix/client/v3/admin/whois/{userId} — spec: #get_matrixclientv3adminwhoisuserid.

        "Gets information about a particular user. This API may be restricted to only be called
        by the user being looked up, or by a server admin": so it is (403 ``M_FORBIDDEN``
        otherwise). Each device is one session; its one connection is the device's last-seen
        IP address and time, once the device has been seen (user agents are not kept). A user
        with no devices here (unknown, or on another server) has none listed.
        """
        if requester.user_id != user_id and not requester.is_admin:
            raise Forbidden("You may only look up yourself")
        devices = await self._devices.list_devices(user_id)
        return {
            "user_id": user_id,
            "devices": {
                d.device_id: {"sessions": [{"connections": _connections(d)}]} for d in devices
            },
        }

    @route("DELETE", "/_matrix/client/v3/devices/{device_id}", auth="user")
    async def delete_device(self, requester: Requester, device_id: str) -> JsonDict:
        """DELETE /_matrix/client/v3/devices/{deviceId}.

        Spec: client-server-api/#delete_matrixclientv3devicesdeviceid.

        "This API endpoint uses the User-Interactive Authentication API ... Deletes the given
        device, and invalidates any access token associated with it." 200 also when the device
        "had been removed previously".
        """
        body = await optional_json_body(self._max_body)
        done = await self._uia.check(
            requester=requester,
            body=body,
            request_key=_request_key("DELETE", f"/devices/{device_id}", [device_id]),
            flows=DELETE_FLOWS,
            description="remove a device from your account",
        )
        await self._devices.delete_devices(requester.user_id, [device_id])
        await self._uia.finish(done)
        return {}

    @route("POST", "/_matrix/client/v3/delete_devices", auth="user")
    async def delete_devices(self, requester: Requester) -> JsonDict:
        """POST /_matrix/client/v3/delete_devices — spec: #post_matrixclientv3delete_devices.

        "This API endpoint uses the User-Interactive Authentication API ... Deletes the given
        devices, and invalidates any access token associated with them." ``devices`` is required.
        """
        body = await read_json_body(self._max_body)
        device_ids = _device_ids(body)
        done = await self._uia.check(
            requester=requester,
            body=body,
            request_key=_request_key("POST", "/delete_devices", device_ids),
            flows=DELETE_FLOWS,
            description="remove devices from your account",
        )
        await self._devices.delete_devices(requester.user_id, device_ids)
        await self._uia.finish(done)
        return {}


def _connections(device: Device) -> list[JsonDict]:
    if device.last_seen_ts is None:
        return []
    connection: JsonDict = {"last_seen": device.last_seen_ts}
    if device.last_seen_ip is not None:
        connection["ip"] = device.last_seen_ip
    return [connection]


def _device_ids(body: JsonDict) -> list[str]:
    if "devices" not in body:
        raise MissingParam("Missing 'devices'")
    devices = body["devices"]
    if not isinstance(devices, list) or not all(isinstance(d, str) for d in devices):
        raise BadJson("'devices' must be a list of strings")
    return devices
