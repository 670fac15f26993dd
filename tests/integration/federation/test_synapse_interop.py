"""Our server and a real Synapse on loopback: keys, TLS and request signatures, both ways.

The Synapse peer is started by the test (``synapse_peer.py``, pinned version); both servers
trust the test's CA and nothing else.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import pytest
import trio

from federation.core.signing import SigningKey, verify_signed_json
from federation.core.xmatrix import sign_request
from tests.integration.federation.conftest import FederatedServer, FederatedServerFactory
from tests.integration.federation.synapse_peer import SynapsePeer, synapse_factory

__all__ = ["synapse_factory"]

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::DeprecationWarning")]


async def _synapse_request(
    ours: FederatedServer, peer: SynapsePeer, method: str, target: str, content: Any = None
) -> httpx.Response:
    header = sign_request(
        ours.signing_key, method, target, ours.server_name, peer.server_name, content
    )
    async with httpx.AsyncClient(
        base_url=peer.federation_url, verify=ours.ssl_context(), timeout=60
    ) as c:
        return await c.request(method, target, json=content, headers={"Authorization": header})


async def test_keys_and_signed_requests_both_ways(
    federated_server_factory: FederatedServerFactory, synapse_factory: Any
) -> None:
    ours: FederatedServer = await federated_server_factory()
    peer: SynapsePeer = await synapse_factory()
    bob = await peer.register("bob")
    async with peer.client(headers={"Authorization": f"Bearer {bob['access_token']}"}) as c:
        r = await c.put(
            f"/_matrix/client/v3/profile/{quote(bob['user_id'])}/displayname",
            json={"displayname": "Bob on Synapse"},
        )
        assert r.status_code == 200, r.text

    # Synapse, as a notary, fetches our keys over TLS (our certificate, its CA list) and
    # accepts our self-signature.
    async with httpx.AsyncClient(verify=ours.ssl_context(), timeout=60) as c:
        r = await c.post(
            f"{peer.federation_url}/_matrix/key/v2/query",
            json={
                "server_keys": {
                    ours.server_name: {ours.signing_key.key_id: {"minimum_valid_until_ts": 0}}
                }
            },
        )
    assert r.status_code == 200, r.text
    [keys] = r.json()["server_keys"]
    assert keys["server_name"] == ours.server_name
    assert ours.signing_key.key_id in keys["verify_keys"]
    verify_signed_json(keys, ours.server_name, ours.signing_key.verify_key)

    # We, as a notary, fetch Synapse's keys and vouch for them; the answer carries Synapse's
    # own signature and ours.
    async with ours.federation_client() as c:
        r = await c.get(f"/_matrix/key/v2/query/{peer.server_name}")
    assert r.status_code == 200, r.text
    [theirs] = r.json()["server_keys"]
    assert theirs["server_name"] == peer.server_name
    assert set(theirs["signatures"]) == {peer.server_name, ours.server_name}
    verify_signed_json(theirs, ours.server_name, ours.signing_key.verify_key)

    # A request signed by us is accepted by Synapse (it fetched our key to check it) ...
    target = f"/_matrix/federation/v1/query/profile?user_id={quote(bob['user_id'])}"
    r = await _synapse_request(ours, peer, "GET", target)
    assert r.status_code == 200, r.text
    assert r.json()["displayname"] == "Bob on Synapse"
    # ... and one signed with another key under our key ID is not.
    forged = SigningKey.generate(ours.signing_key.version)
    header = sign_request(forged, "GET", target, ours.server_name, peer.server_name)
    async with httpx.AsyncClient(base_url=peer.federation_url, verify=ours.ssl_context()) as c:
        r = await c.get(target, headers={"Authorization": header})
    assert r.status_code == 401, r.text

    # Synapse asks us: a Synapse user looks up our user's profile and alias. Synapse signs the
    # requests; we fetch its key and check them.
    async with ours.client() as c:
        r = await c.post(
            "/_matrix/client/v3/register",
            json={
                "username": "alice",
                "password": "correct horse",
                "auth": {"type": "m.login.dummy"},
            },
        )
        alice = r.json()
        c.headers["Authorization"] = f"Bearer {alice['access_token']}"
        r = await c.put(
            f"/_matrix/client/v3/profile/{quote(alice['user_id'])}/displayname",
            json={"displayname": "Alice here"},
        )
        assert r.status_code == 200
        r = await c.post("/_matrix/client/v3/createRoom", json={"room_alias_name": "hall"})
        room_id = r.json()["room_id"]
    async with peer.client(headers={"Authorization": f"Bearer {bob['access_token']}"}) as c:
        r = await c.get(f"/_matrix/client/v3/profile/{quote(alice['user_id'])}")
        assert r.status_code == 200, r.text + peer.log[-2000:]
        assert r.json()["displayname"] == "Alice here"
        alias = f"#hall:{ours.server_name}"
        r = await c.get(f"/_matrix/client/v3/directory/room/{quote(alias)}")
        assert r.status_code == 200, r.text
        assert r.json()["room_id"] == room_id
        assert r.json()["servers"] == [ours.server_name]
        r = await c.post(
            "/_matrix/client/v3/createRoom",
            json={"room_alias_name": "garden", "preset": "public_chat", "visibility": "public"},
        )
        assert r.status_code == 200, r.text
        synapse_room = r.json()["room_id"]

    # ... and we ask Synapse: our user resolves a Synapse alias and reads its directory.
    async with ours.client(headers={"Authorization": f"Bearer {alice['access_token']}"}) as c:
        r = await c.get(f"/_matrix/client/v3/directory/room/{quote(f'#garden:{peer.server_name}')}")
        assert r.status_code == 200, r.text
        assert r.json()["room_id"] == synapse_room
        assert peer.server_name in r.json()["servers"]
        # Synapse updates its directory in the background: wait for the room to be listed.
        with trio.fail_after(20):
            while True:
                r = await c.get(
                    "/_matrix/client/v3/publicRooms", params={"server": peer.server_name}
                )
                assert r.status_code == 200, r.text
                if r.json()["chunk"]:
                    break
                await trio.sleep(0.2)
        assert [x["room_id"] for x in r.json()["chunk"]] == [synapse_room]
