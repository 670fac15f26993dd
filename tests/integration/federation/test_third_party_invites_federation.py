"""Third-party invites across two of our servers: the invitee's server gets the identity
server's ``/3pid/onbind`` and exchanges the invite with the inviter's server
(``PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}``), which sends the invite.

Spec: server-server-api › Third-party invites. The fake identity server is the one of
``tests/integration/test_identity_server.py``.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import trio

from tests.integration.federation.conftest import FederatedServer, FederatedServerFactory
from tests.integration.test_identity_server import (
    ACCESS_TOKEN,
    IDENTITY,
    FakeIdentityServer,
    id_server,
)

__all__ = ["id_server"]  # the fixture, used by name below


async def _login(server: FederatedServer, name: str) -> tuple[str, dict[str, str]]:
    login = await server.register(name)
    return login["user_id"], {"Authorization": f"Bearer {login['access_token']}"}


async def _member(server: FederatedServer, auth: dict[str, str], room: str, user: str) -> Any:
    async with server.client(headers=auth) as c:
        r = await c.get(f"/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}")
    return r.json() if r.status_code == 200 else None


async def test_onbind_at_the_invitees_server_exchanges_the_invite(
    federated_server_factory: FederatedServerFactory, id_server: FakeIdentityServer
) -> None:
    a = await federated_server_factory(**IDENTITY)
    b = await federated_server_factory(**IDENTITY)
    _, alice = await _login(a, "alice")
    bob_id, bob = await _login(b, "bob")
    async with a.client(headers=alice) as c:
        r = await c.post("/_matrix/client/v3/createRoom", json={"preset": "private_chat"})
        room_id = r.json()["room_id"]
        r = await c.post(
            f"/_matrix/client/v3/rooms/{room_id}/invite",
            json={
                "id_server": id_server.name,
                "id_access_token": ACCESS_TOKEN,
                "medium": "email",
                "address": "bob@example.org",
            },
        )
        assert r.status_code == 200, r.text
    async with b.client() as c:
        r = await c.post(
            "/_matrix/federation/v1/3pid/onbind",
            json={
                "medium": "email",
                "address": "bob@example.org",
                "mxid": bob_id,
                "invites": id_server.signed_invites(bob_id),
            },
        )
    assert r.status_code == 200, r.text
    member = await _member(a, alice, room_id, bob_id)
    assert member["membership"] == "invite"
    assert member["third_party_invite"]["display_name"] == "Bob"
    with trio.fail_after(20):
        while True:
            async with b.client(headers=bob) as c:
                r = await c.post(f"/_matrix/client/v3/rooms/{room_id}/join", json={})
            if r.status_code == 200:
                break
            await trio.sleep(0.2)
    assert (await _member(a, alice, room_id, bob_id))["membership"] == "join"


async def test_exchange_refuses_what_it_cannot_verify(
    federated_server_factory: FederatedServerFactory, id_server: FakeIdentityServer
) -> None:
    a = await federated_server_factory(**IDENTITY)
    b = await federated_server_factory(**IDENTITY)
    alice_id, alice = await _login(a, "alice")
    async with a.client(headers=alice) as c:
        r = await c.post("/_matrix/client/v3/createRoom", json={"preset": "private_chat"})
    room_id = r.json()["room_id"]
    target = f"/_matrix/federation/v1/exchange_third_party_invite/{quote(room_id, safe='')}"
    bob = f"@bob:{b.server_name}"
    event = {
        "type": "m.room.member",
        "room_id": room_id,
        "sender": alice_id,
        "state_key": bob,
        "content": {
            "membership": "invite",
            "third_party_invite": {"signed": id_server.sign({"mxid": bob, "token": "nope"})},
        },
    }
    async with a.federation_client() as c:  # not signed
        r = await c.put(target, json=event)
    assert r.status_code == 401, r.text
    r = await b.signed_request(a, "PUT", target, event)  # no such m.room.third_party_invite
    assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN"), r.text
    r = await b.signed_request(a, "PUT", target, {**event, "sender": bob})  # not our user
    assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM"), r.text
    r = await b.signed_request(a, "PUT", target, {**event, "room_id": "!other:x"})
    assert r.status_code == 400, r.text
    assert await _member(a, alice, room_id, bob) is None
