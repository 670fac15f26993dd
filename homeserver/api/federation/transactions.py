"""Receiving transactions from other servers.

Spec: server-server-api.md › Transactions
(https://spec.matrix.org/v1.19/server-server-api/#transactions).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.errors import BadJson
from homeserver.services.federation_inbound import MAX_EDUS, MAX_PDUS, FederationInbound

__all__ = ["Authenticate", "TransactionsApi"]

#: Verifies the current request's X-Matrix signature and returns the origin server's name.
Authenticate = Callable[[], Awaitable[str]]


class TransactionsApi:
    """``PUT /_matrix/federation/v1/send/{txnId}``.

    Args:
        inbound: the inbound federation service.
        authenticate: the request authentication (X-Matrix).
        max_body_bytes: the request body limit.
    """

    def __init__(
        self, inbound: FederationInbound, authenticate: Authenticate, max_body_bytes: int
    ) -> None:
        self._inbound = inbound
        self._authenticate = authenticate
        self._max_body = max_body_bytes

    @route("PUT", "/_matrix/federation/v1/send/{txn_id}")
    async def send(self, txn_id: str) -> JsonDict:
        """PUT /_matrix/federation/v1/send/{txnId} — spec: #put_matrixfederationv1sendtxnid.

        "Push messages representing live activity to another server. ... The receiving server
        ... will respond with a 200 OK response ... even in the event of one or more PDUs
        failing to be processed." A transaction holds at most 50 PDUs and 100 EDUs (``400
        M_BAD_JSON`` otherwise); a retransmission of a (origin, txnId) gets the first answer.
        """
        origin = await self._authenticate()
        body = await read_json_body(self._max_body)
        pdus = body.get("pdus")
        edus = body.get("edus", [])
        if not isinstance(pdus, list) or not all(isinstance(p, dict) for p in pdus):
            raise BadJson("pdus must be a list of objects")
        if edus is None:
            edus = []
        if not isinstance(edus, list) or not all(isinstance(e, dict) for e in edus):
            raise BadJson("edus must be a list of objects")
        if len(pdus) > MAX_PDUS or len(edus) > MAX_EDUS:
            raise BadJson(f"A transaction holds at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs")
        return await self._inbound.on_transaction(origin, txn_id, pdus, edus)
