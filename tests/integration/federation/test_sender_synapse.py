"""Our sender and a real Synapse: our user's messages reach a Synapse room as transactions
(TLS against the test CA, X-Matrix signed, PDUs as Synapse checks them), and Synapse's reach us.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio

from tests.integration.federation.conftest import FederatedServer, FederatedServerFactory
from tests.integration.federation.synapse_peer import SynapsePeer, synapse_factory

__all__ = ["synapse_factory"]

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]

V3 = "/_matrix/client/v3"


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _bodies(client: httpx.AsyncClient, room_id: str) -> list[str]:
    page = await _ok(
        await client.get(f"{V3}/rooms/{quote(room_id)}/messages", params={"dir": "b", "limit": 50})
    )
    return [e["content"].get("body") for e in page["chunk"] if e["type"] == "m.room.message"]


async def _wait_for_body(client: httpx.AsyncClient, room_id: str, body: str) -> None:
    with trio.fail_after(30):
        while body not in await _bodies(client, room_id):
            await trio.sleep(0.1)


async def test_messages_to_and_from_synapse(
    federated_server_factory: FederatedServerFactory, synapse_factory: Any
) -> None:
    ours: FederatedServer = await federated_server_factory()
    peer: SynapsePeer = await synapse_factory()
    bob = await peer.register("bob")
    alice = await ours.register("alice")
    async with (
        peer.client(headers={"Authorization": f"Bearer {bob['access_token']}"}) as cb,
        ours.client(headers={"Authorization": f"Bearer {alice['access_token']}"}) as ca,
    ):
        room_id = (
            await _ok(
                await cb.post(
                    f"{V3}/createRoom", json={"preset": "public_chat", "room_version": "10"}
                )
            )
        )["room_id"]
        await _ok(
            await ca.post(
                f"{V3}/join/{quote(room_id)}?server_name={quote(peer.server_name)}", json={}
            )
        )
        await _ok(
            await ca.put(
                f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t1",
                json={"msgtype": "m.text", "body": "hello synapse"},
            )
        )
        try:
            await _wait_for_body(cb, room_id, "hello synapse")
        except trio.TooSlowError:
            pytest.fail("Synapse never got our message:\n" + peer.log[-4000:])
        await _ok(
            await cb.put(
                f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t2",
                json={"msgtype": "m.text", "body": "hello from synapse"},
            )
        )
        await _wait_for_body(ca, room_id, "hello from synapse")
