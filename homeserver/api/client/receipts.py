"""Receipts and read markers.

Spec: https://spec.matrix.org/v1.19/client-server-api/#receipts (``receipts.yaml``) and
https://spec.matrix.org/v1.19/client-server-api/#fully-read-markers (``read_markers.yaml``).
"""

from __future__ import annotations

from homeserver.api._http import JsonDict, route
from homeserver.api.client._body import optional_json_body, optional_string
from homeserver.services.receipts import ReceiptsService, parse_thread_id
from homeserver.services.requester import Requester

__all__ = ["ReceiptsApi"]


class ReceiptsApi:
    """``POST /rooms/{roomId}/receipt/{receiptType}/{eventId}`` and ``POST .../read_markers``.

    Args:
        receipts: the receipts service.
        max_body_bytes: the body limit.
    """

    def __init__(self, receipts: ReceiptsService, max_body_bytes: int) -> None:
        self._receipts = receipts
        self._max_body = max_body_bytes

    @route(
        "POST",
        "/_matrix/client/v3/rooms/{room_id}/receipt/{receipt_type}/{event_id}",
        auth="user",
        rate_limit="client_default",
    )
    async def post_receipt(
        self, requester: Requester, room_id: str, receipt_type: str, event_id: str
    ) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/receipt/{receiptType}/{eventId}.

        Spec: client-server-api/#post_matrixclientv3roomsroomidreceiptreceipttypeeventid. "This
        API updates the marker for the given receipt type to the event ID specified."
        ``m.read``, ``m.read.private`` and ``m.fully_read`` (as ``/read_markers``); the body may
        carry ``thread_id`` (``"main"`` or a thread root); a missing body counts as ``{}``.
        Unknown receipt types and bad ``thread_id`` are ``400 M_INVALID_PARAM``, rooms the user
        is not joined to ``403 M_FORBIDDEN``, events not in the room ``404 M_NOT_FOUND``.
        """
        body = await optional_json_body(self._max_body)
        thread_id = parse_thread_id(body)
        await self._receipts.post_receipt(
            requester.user_id, room_id, receipt_type, event_id, thread_id
        )
        return {}

    @route(
        "POST",
        "/_matrix/client/v3/rooms/{room_id}/read_markers",
        auth="user",
        rate_limit="client_default",
    )
    async def read_markers(self, requester: Requester, room_id: str) -> JsonDict:
        """POST /_matrix/client/v3/rooms/{roomId}/read_markers.

        Spec: client-server-api/#post_matrixclientv3roomsroomidread_markers. "Sets the position
        of the read marker for a given room, and optionally the read receipt's location."
        ``m.fully_read``, ``m.read`` and ``m.read.private`` are each optional.
        """
        body = await optional_json_body(self._max_body)
        await self._receipts.set_read_markers(
            requester.user_id,
            room_id,
            fully_read=optional_string(body, "m.fully_read"),
            read=optional_string(body, "m.read"),
            read_private=optional_string(body, "m.read.private"),
        )
        return {}
