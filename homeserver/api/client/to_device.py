"""Send-to-device messaging.

Spec: https://spec.matrix.org/v1.19/client-server-api/#send-to-device-messaging (OpenAPI
``to_device.yaml``). Delivery happens in ``/sync`` (``to_device.events``) through
:class:`~homeserver.services.e2ee_sync.E2eeSyncSource`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.errors import BadJson, MissingParam
from homeserver.services.requester import Requester
from homeserver.services.to_device import ToDeviceService

__all__ = ["ToDeviceApi"]


def _messages(body: Mapping[str, Any]) -> dict[str, dict[str, Mapping[str, Any]]]:
    if "messages" not in body:
        raise MissingParam("Missing 'messages'")
    messages = body["messages"]
    if not isinstance(messages, Mapping):
        raise BadJson("messages must be an object")
    out: dict[str, dict[str, Mapping[str, Any]]] = {}
    for user_id, by_device in messages.items():
        if not isinstance(by_device, Mapping):
            raise BadJson("messages maps user IDs to objects of device IDs")
        for device_id, content in by_device.items():
            if not device_id or not isinstance(content, Mapping):
                raise BadJson("each message is an object under a device ID or '*'")
        out[user_id] = dict(by_device)
    return out


class ToDeviceApi:
    """``PUT /sendToDevice/{eventType}/{txnId}``.

    Args:
        to_device: the to-device service.
        max_body_bytes: the body limit.
    """

    def __init__(self, to_device: ToDeviceService, *, max_body_bytes: int) -> None:
        self._to_device = to_device
        self._max_body = max_body_bytes

    @route("PUT", "/_matrix/client/v3/sendToDevice/{event_type}/{txn_id}", auth="user")
    async def send(self, requester: Requester, event_type: str, txn_id: str) -> JsonDict:
        """PUT /_matrix/client/v3/sendToDevice/{eventType}/{txnId}.

        Spec: #put_matrixclientv3sendtodeviceeventtypetxnid. "This endpoint is used to send
        send-to-device events to a set of client devices." ``*`` as device ID means every
        device of the user; the transaction ID makes retries idempotent.
        """
        body = await read_json_body(self._max_body)
        await self._to_device.send(requester, event_type, txn_id, _messages(body))
        return {}
