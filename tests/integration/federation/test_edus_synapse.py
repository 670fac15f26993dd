"""Our EDUs and a real Synapse: typing, read receipts and to-device messages cross both ways
and show in the other side's ``/sync``."""

from __future__ import annotations

from collections.abc import Callable
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


class _Syncer:
    def __init__(self, client: httpx.AsyncClient, name: str, log: Callable[[], str]) -> None:
        self.client = client
        self.name = name
        self.log = log
        self.since: str | None = None

    async def until(self, found: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
        try:
            with trio.fail_after(30):
                while True:
                    params: dict[str, Any] = {"timeout": 1000}
                    if self.since is not None:
                        params["since"] = self.since
                    batch = await _ok(await self.client.get(f"{V3}/sync", params=params))
                    self.since = batch["next_batch"]
                    if found(batch):
                        return batch
        except trio.TooSlowError:
            pytest.fail(f"{self.name} never saw it:\n" + self.log()[-4000:])


def _ephemeral(batch: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = batch.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]


def _typing(room_id: str, users: list[str]) -> Callable[[dict[str, Any]], bool]:
    def check(batch: dict[str, Any]) -> bool:
        return any(
            e["content"]["user_ids"] == users for e in _ephemeral(batch, room_id, "m.typing")
        )

    return check


def _read_by(room_id: str, event_id: str, user_id: str) -> Callable[[dict[str, Any]], bool]:
    def check(batch: dict[str, Any]) -> bool:
        return any(
            user_id in e["content"].get(event_id, {}).get("m.read", {})
            for e in _ephemeral(batch, room_id, "m.receipt")
        )

    return check


def _to_device(sender: str, n: int) -> Callable[[dict[str, Any]], bool]:
    def check(batch: dict[str, Any]) -> bool:
        return any(
            e["sender"] == sender and e["content"] == {"n": n}
            for e in batch.get("to_device", {}).get("events", [])
        )

    return check


async def test_typing_receipts_and_to_device_with_synapse(
    federated_server_factory: FederatedServerFactory, synapse_factory: Any
) -> None:
    ours: FederatedServer = await federated_server_factory()
    peer: SynapsePeer = await synapse_factory()
    bob = await peer.register("bob")
    alice = await ours.register("alice")
    bob_id, alice_id = bob["user_id"], alice["user_id"]
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
        sa = _Syncer(ca, "we", lambda: peer.log)
        sb = _Syncer(cb, "Synapse", lambda: peer.log)
        await sb.until(lambda batch: alice_id in str(batch.get("rooms", {})))
        await sa.until(lambda batch: True)
        typing = f"{V3}/rooms/{quote(room_id)}/typing"
        await _ok(
            await ca.put(f"{typing}/{quote(alice_id)}", json={"typing": True, "timeout": 30000})
        )
        await sb.until(_typing(room_id, [alice_id]))
        await _ok(
            await cb.put(f"{typing}/{quote(bob_id)}", json={"typing": True, "timeout": 30000})
        )
        await sa.until(_typing(room_id, [alice_id, bob_id]))

        sent = await _ok(
            await cb.put(
                f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t1",
                json={"msgtype": "m.text", "body": "read me"},
            )
        )
        event_id = sent["event_id"]
        await sa.until(lambda batch: event_id in str(batch))
        await _ok(
            await ca.post(f"{V3}/rooms/{quote(room_id)}/receipt/m.read/{quote(event_id)}", json={})
        )
        await sb.until(_read_by(room_id, event_id, alice_id))
        mine = await _ok(
            await ca.put(
                f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t2",
                json={"msgtype": "m.text", "body": "read me too"},
            )
        )
        await sb.until(lambda batch: mine["event_id"] in str(batch))
        await _ok(
            await cb.post(
                f"{V3}/rooms/{quote(room_id)}/receipt/m.read/{quote(mine['event_id'])}", json={}
            )
        )
        await sa.until(_read_by(room_id, mine["event_id"], bob_id))

        body = {"messages": {bob_id: {bob["device_id"]: {"n": 1}}}}
        await _ok(await ca.put(f"{V3}/sendToDevice/m.test/d1", json=body))
        await sb.until(_to_device(alice_id, 1))
        body = {"messages": {alice_id: {"*": {"n": 2}}}}
        await _ok(await cb.put(f"{V3}/sendToDevice/m.test/d2", json=body))
        await sa.until(_to_device(bob_id, 2))
