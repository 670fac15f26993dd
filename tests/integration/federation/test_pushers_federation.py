"""Events from another server notify our users' pushers: an invite over federation and a
message sent on the other server reach the push gateway (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from tests.integration.federation.conftest import FederatedServer, FederatedServerFactory
from tests.integration.test_pushers_api import NOTIFY, Gateway, gateway

__all__ = ["gateway"]  # the fixture, used by name below

V3 = "/_matrix/client/v3"


async def _user(server: FederatedServer, name: str) -> tuple[str, httpx.AsyncClient]:
    account = await server.register(name)
    client = server.client()
    client.headers["Authorization"] = f"Bearer {account['access_token']}"
    return account["user_id"], client


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_remote_invite_and_message_are_pushed(
    federated_server_factory: FederatedServerFactory, gateway: Gateway
) -> None:
    a = await federated_server_factory()
    b = await federated_server_factory(push={"allow_private_destinations": True})
    alice, ca = await _user(a, "alice")
    bob, cb = await _user(b, "bob")
    async with ca, cb:
        await _ok(
            await cb.post(
                f"{V3}/pushers/set",
                json={
                    "kind": "http",
                    "app_id": "org.example.app",
                    "app_display_name": "Example",
                    "device_display_name": "Phone",
                    "pushkey": "bobs-phone",
                    "lang": "en",
                    "data": {"url": gateway.url},
                },
            )
        )
        assert gateway.url.endswith(NOTIFY)
        room_id = (await _ok(await ca.post(f"{V3}/createRoom", json={"name": "Over there"})))[
            "room_id"
        ]
        await _ok(await ca.post(f"{V3}/rooms/{quote(room_id)}/invite", json={"user_id": bob}))
        body = await gateway.wait_for(lambda b: b["notification"].get("type") == "m.room.member")
        n = body["notification"]
        assert (n["room_id"], n["sender"], n["membership"]) == (room_id, alice, "invite")
        assert n["user_is_target"] is True
        await _ok(await cb.post(f"{V3}/rooms/{quote(room_id)}/join", json={}))
        sent = await _ok(
            await ca.put(
                f"{V3}/rooms/{quote(room_id)}/send/m.room.message/t1",
                json={"msgtype": "m.text", "body": "from the other server"},
            )
        )
        body = await gateway.wait_for(lambda b: b["notification"].get("type") == "m.room.message")
        n = body["notification"]
        assert n["event_id"] == sent["event_id"]
        assert n["sender"] == alice
        assert n["content"]["body"] == "from the other server"
        assert n["room_name"] == "Over there"
