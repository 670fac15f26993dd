"""Joins and invites with a real Synapse: our user invites a Synapse user who joins our room;
our user joins a Synapse user's room by its alias and reads its history (backfill) and its
invites from Synapse."""

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


async def _joined(client: httpx.AsyncClient, room_id: str) -> set[str]:
    members = await _ok(await client.get(f"{V3}/rooms/{quote(room_id)}/joined_members"))
    return set(members["joined"])


async def _bodies(client: httpx.AsyncClient, room_id: str) -> list[str]:
    page = await _ok(
        await client.get(f"{V3}/rooms/{quote(room_id)}/messages", params={"dir": "b", "limit": 50})
    )
    return [
        e["content"].get("body") for e in reversed(page["chunk"]) if e["type"] == "m.room.message"
    ]


async def test_synapse_user_accepts_our_invite(
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
        room_id = (await _ok(await ca.post(f"{V3}/createRoom", json={"preset": "private_chat"})))[
            "room_id"
        ]
        r = await ca.post(f"{V3}/rooms/{quote(room_id)}/invite", json={"user_id": bob["user_id"]})
        assert r.status_code == 200, r.text + peer.log[-3000:]
        sync = await _ok(await cb.get(f"{V3}/sync"))
        assert room_id in sync["rooms"]["invite"]
        # Synapse joins our room (make_join/send_join to us, through the inviter's server)
        r = await cb.post(f"{V3}/join/{quote(room_id)}", json={})
        assert r.status_code == 200, r.text + peer.log[-3000:]
        both = {alice["user_id"], bob["user_id"]}
        assert await _joined(ca, room_id) == both
        assert await _joined(cb, room_id) == both
        await _ok(
            await ca.put(
                f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t1",
                json={"msgtype": "m.text", "body": "welcome"},
            )
        )
        with trio.fail_after(30):
            while "welcome" not in await _bodies(cb, room_id):
                await trio.sleep(0.1)


async def test_join_synapse_room_by_alias_with_history(
    federated_server_factory: FederatedServerFactory, synapse_factory: Any
) -> None:
    ours: FederatedServer = await federated_server_factory()
    peer: SynapsePeer = await synapse_factory()
    carol = await peer.register("carol")
    alice = await ours.register("alice")
    async with (
        peer.client(headers={"Authorization": f"Bearer {carol['access_token']}"}) as cc,
        ours.client(headers={"Authorization": f"Bearer {alice['access_token']}"}) as ca,
    ):
        room_id = (
            await _ok(
                await cc.post(
                    f"{V3}/createRoom",
                    json={"preset": "public_chat", "room_alias_name": "plaza", "name": "Plaza"},
                )
            )
        )["room_id"]
        for i in range(3):
            await _ok(
                await cc.put(
                    f"{V3}/rooms/{quote(room_id)}/send/m.room.message/h{i}",
                    json={"msgtype": "m.text", "body": f"history {i}"},
                )
            )
        alias = f"#plaza:{peer.server_name}"
        r = await ca.post(f"{V3}/join/{quote(alias)}", json={})
        assert r.status_code == 200, r.text + peer.log[-3000:]
        assert r.json() == {"room_id": room_id}
        state = await _ok(await ca.get(f"{V3}/rooms/{quote(room_id)}/state/m.room.name"))
        assert state == {"name": "Plaza"}
        both = {alice["user_id"], carol["user_id"]}
        assert await _joined(ca, room_id) == both
        with trio.fail_after(30):
            while await _joined(cc, room_id) != both:
                await trio.sleep(0.1)
        # the messages from before the join come by backfill
        assert await _bodies(ca, room_id) == [f"history {i}" for i in range(3)]

        # an invite from Synapse to a second room, rejected through Synapse
        second = (await _ok(await cc.post(f"{V3}/createRoom", json={"preset": "private_chat"})))[
            "room_id"
        ]
        await _ok(
            await cc.post(f"{V3}/rooms/{quote(second)}/invite", json={"user_id": alice["user_id"]})
        )
        sync = await _ok(await ca.get(f"{V3}/sync"))
        assert second in sync["rooms"]["invite"]
        await _ok(await ca.post(f"{V3}/rooms/{quote(second)}/leave", json={}))
        with trio.fail_after(30):
            while True:
                member = await cc.get(
                    f"{V3}/rooms/{quote(second)}/state/m.room.member/{quote(alice['user_id'])}"
                )
                if member.status_code == 200 and member.json()["membership"] == "leave":
                    break
                await trio.sleep(0.1)
