"""Two of our servers: E2EE keys and device lists across servers. A client's ``/keys/query`` and
``/keys/claim`` for the other server's users are answered by that server (a dead server is a
``failures`` entry); a device or key change of a user reaches the ``/sync`` of the other
server's users sharing a room (``device_lists.changed``); ``/user/devices`` and
``/user/keys/*`` answer for local users only and refuse bad bodies."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import trio

from tests.integration.federation.conftest import FederatedServer

V3 = "/_matrix/client/v3"


async def _user(server: FederatedServer, name: str) -> tuple[str, str, str]:
    account = await server.register(name)
    return account["user_id"], account["access_token"], account["device_id"]


def _client(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _device_keys(user_id: str, device_id: str, tag: str) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "device_id": device_id,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {f"curve25519:{device_id}": f"curve{tag}", f"ed25519:{device_id}": f"ed{tag}"},
        "signatures": {user_id: {f"ed25519:{device_id}": f"sig{tag}"}},
    }


async def _upload(
    client: httpx.AsyncClient, user_id: str, device_id: str, tag: str, otks: int = 0
) -> None:
    body: dict[str, Any] = {"device_keys": _device_keys(user_id, device_id, tag)}
    if otks:
        body["one_time_keys"] = {
            f"signed_curve25519:K{tag}{i}": {
                "key": f"otk{tag}{i}",
                "signatures": {user_id: {f"ed25519:{device_id}": "s"}},
            }
            for i in range(otks)
        }
    await _ok(await client.post(f"{V3}/keys/upload", json=body))


async def _shared_room(a: FederatedServer, b: FederatedServer, ta: str, tb: str) -> str:
    async with _client(a.client_url, ta) as ca, _client(b.client_url, tb) as cb:
        room_id = (await _ok(await ca.post(f"{V3}/createRoom", json={"preset": "public_chat"})))[
            "room_id"
        ]
        await _ok(
            await cb.post(f"{V3}/join/{quote(room_id)}?server_name={quote(a.server_name)}", json={})
        )
        with trio.fail_after(20):
            while True:
                members = await _ok(await ca.get(f"{V3}/rooms/{quote(room_id)}/joined_members"))
                if len(members["joined"]) == 2:
                    break
                await trio.sleep(0.05)
    return room_id


class _Syncer:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.since: str | None = None

    async def until(
        self, found: Callable[[dict[str, Any]], Any], timeout: float = 20
    ) -> dict[str, Any]:
        with trio.fail_after(timeout):
            while True:
                params: dict[str, Any] = {"timeout": 1000}
                if self.since is not None:
                    params["since"] = self.since
                batch = await _ok(await self.client.get(f"{V3}/sync", params=params))
                self.since = batch["next_batch"]
                if found(batch):
                    return batch


def _changed(batch: dict[str, Any]) -> list[str]:
    changed: list[str] = batch.get("device_lists", {}).get("changed", [])
    return changed


async def test_keys_of_remote_users_are_queried_and_claimed_from_their_server(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    _alice, ta, _ = await _user(a, "alice")
    bob, tb, bob_device = await _user(b, "bob")
    async with _client(a.client_url, ta) as ca, _client(b.client_url, tb) as cb:
        await _upload(cb, bob, bob_device, "1", otks=1)
        with socket.socket() as s:  # a server nobody listens on
            s.bind(("127.0.0.1", 0))
            dead = f"@x:127.0.0.1:{s.getsockname()[1]}"
        answer = await _ok(
            await ca.post(
                f"{V3}/keys/query", json={"device_keys": {bob: [], dead: []}, "timeout": 3000}
            )
        )
        assert (
            answer["device_keys"][bob][bob_device]["keys"]
            == _device_keys(bob, bob_device, "1")["keys"]
        )
        assert list(answer["failures"]) == [dead.split(":", 1)[1]]
        wanted = {bob: {bob_device: "signed_curve25519"}}
        claimed = await _ok(await ca.post(f"{V3}/keys/claim", json={"one_time_keys": wanted}))
        assert list(claimed["one_time_keys"][bob][bob_device]) == ["signed_curve25519:K10"]
        again = await _ok(await ca.post(f"{V3}/keys/claim", json={"one_time_keys": wanted}))
        assert again["one_time_keys"].get(bob, {}).get(bob_device) in (None, {})


async def test_device_list_changes_reach_the_other_servers_sync_both_ways(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    alice, ta, alice_device = await _user(a, "alice")
    bob, tb, bob_device = await _user(b, "bob")
    await _shared_room(a, b, ta, tb)
    async with _client(a.client_url, ta) as ca, _client(b.client_url, tb) as cb:
        sa, sb = _Syncer(ca), _Syncer(cb)
        await sa.until(lambda batch: True)
        await sb.until(lambda batch: True)
        await _upload(cb, bob, bob_device, "2")
        await sa.until(lambda batch: bob in _changed(batch))
        answer = await _ok(await ca.post(f"{V3}/keys/query", json={"device_keys": {bob: []}}))
        assert answer["device_keys"][bob][bob_device]["keys"]["ed25519:" + bob_device] == "ed2"
        await _upload(ca, alice, alice_device, "3")
        await sb.until(lambda batch: alice in _changed(batch))
        # a new login (a new device) is a change too
        await a.register("carol")  # unrelated: nothing for bob
        async with httpx.AsyncClient(base_url=a.client_url) as anon:
            await _ok(
                await anon.post(
                    f"{V3}/login",
                    json={
                        "type": "m.login.password",
                        "identifier": {"type": "m.id.user", "user": "alice"},
                        "password": "correct horse",
                    },
                )
            )
        batch = await sb.until(lambda batch: _changed(batch))
        assert _changed(batch) == [alice]


async def test_inbound_updates_only_from_the_users_server(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    alice, ta, _ = await _user(a, "alice")
    bob, tb, _ = await _user(b, "bob")
    await _shared_room(a, b, ta, tb)
    async with _client(a.client_url, ta) as ca:
        sa = _Syncer(ca)
        await sa.until(lambda batch: True)

        async def send(txn: str, edus: list[dict[str, Any]]) -> None:
            body = {"origin": b.server_name, "origin_server_ts": 0, "pdus": [], "edus": edus}
            r = await b.signed_request(a, "PUT", f"/_matrix/federation/v1/send/{txn}", body)
            assert r.status_code == 200, r.text

        carol = f"@carol:{a.server_name}"
        await send(
            "wrong",
            [
                {
                    "edu_type": "m.device_list_update",
                    "content": {"user_id": carol, "device_id": "X"},
                },
                {"edu_type": "m.device_list_update", "content": {"user_id": bob}},
                {"edu_type": "m.signing_key_update", "content": {"user_id": bob}},
            ],
        )
        master = {"user_id": bob, "usage": ["master"], "keys": {"ed25519:pub": "pub"}}
        await send(
            "right",
            [
                {
                    "edu_type": "m.signing_key_update",
                    "content": {"user_id": bob, "master_key": master},
                }
            ],
        )
        seen: set[str] = set()

        def collect(batch: dict[str, Any]) -> bool:
            seen.update(_changed(batch))
            return bob in seen

        await sa.until(collect)
        assert seen == {bob}
        assert alice not in seen


async def test_user_devices_and_keys_served_for_local_users_only(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    alice, ta, alice_device = await _user(a, "alice")
    bob, _, _ = await _user(b, "bob")
    async with _client(a.client_url, ta) as ca:
        await _upload(ca, alice, alice_device, "4", otks=1)
    r = await b.signed_request(a, "GET", f"/_matrix/federation/v1/user/devices/{quote(alice)}")
    devices = await _ok(r)
    assert devices["user_id"] == alice
    assert isinstance(devices["stream_id"], int) and devices["stream_id"] > 0
    assert [d["device_id"] for d in devices["devices"]] == [alice_device]
    assert devices["devices"][0]["keys"]["keys"] == _device_keys(alice, alice_device, "4")["keys"]
    r = await b.signed_request(a, "GET", f"/_matrix/federation/v1/user/devices/{quote(bob)}")
    assert r.status_code == 400, r.text
    query = "/_matrix/federation/v1/user/keys/query"
    answer = await _ok(
        await b.signed_request(a, "POST", query, {"device_keys": {alice: [], bob: []}})
    )
    assert list(answer["device_keys"]) == [alice]
    assert "user_signing_keys" not in answer
    for bad in ({}, {"device_keys": []}, {"device_keys": {alice: "x"}}):
        r = await b.signed_request(a, "POST", query, bad)
        assert r.status_code == 400, (bad, r.text)
    claim = "/_matrix/federation/v1/user/keys/claim"
    claimed = await _ok(
        await b.signed_request(
            a, "POST", claim, {"one_time_keys": {alice: {alice_device: "signed_curve25519"}}}
        )
    )
    assert list(claimed["one_time_keys"][alice][alice_device]) == ["signed_curve25519:K40"]
    for bad in ({}, {"one_time_keys": {alice: [1]}}, {"one_time_keys": {alice: {"D": 1}}}):
        r = await b.signed_request(a, "POST", claim, bad)
        assert r.status_code == 400, (bad, r.text)
    unsigned = await a.federation_client().__aenter__()
    try:
        r = await unsigned.post(query, json={"device_keys": {alice: []}})
        assert r.status_code == 401, r.text
    finally:
        await unsigned.aclose()


async def test_held_device_lists_follow_updates_and_resync_at_a_gap(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    _alice, ta, _ = await _user(a, "alice")
    bob, tb, bob_device = await _user(b, "bob")
    await _shared_room(a, b, ta, tb)
    async with _client(a.client_url, ta) as ca, _client(b.client_url, tb) as cb:
        sa = _Syncer(ca)
        await sa.until(lambda batch: True)
        await _upload(cb, bob, bob_device, "5")
        await sa.until(lambda batch: bob in _changed(batch))

        async def keys_of_bob() -> dict[str, Any]:
            answer = await _ok(await ca.post(f"{V3}/keys/query", json={"device_keys": {bob: []}}))
            return dict(answer["device_keys"][bob][bob_device]["keys"])

        assert await keys_of_bob() == _device_keys(bob, bob_device, "5")["keys"]
        held = await _ok(
            await a.signed_request(b, "GET", f"/_matrix/federation/v1/user/devices/{quote(bob)}")
        )
        stream_id = held["stream_id"]

        async def update(txn: str, prev_id: int, stream: int, tag: str) -> None:
            content = {
                "user_id": bob,
                "device_id": bob_device,
                "stream_id": stream,
                "prev_id": [prev_id],
                "keys": _device_keys(bob, bob_device, tag),
            }
            body = {
                "origin": b.server_name,
                "origin_server_ts": 0,
                "pdus": [],
                "edus": [{"edu_type": "m.device_list_update", "content": content}],
            }
            r = await b.signed_request(a, "PUT", f"/_matrix/federation/v1/send/{txn}", body)
            assert r.status_code == 200, r.text

        # in sequence: applied to the held list (B itself still has "5": the answer is A's)
        await update("seq", stream_id, stream_id + 1, "held")
        await sa.until(lambda batch: bob in _changed(batch))
        assert await keys_of_bob() == _device_keys(bob, bob_device, "held")["keys"]
        # a gap: the whole list is fetched again from B ("5"), the update's own keys unused
        await update("gap", stream_id + 5, stream_id + 6, "bogus")
        await sa.until(lambda batch: bob in _changed(batch))
        assert await keys_of_bob() == _device_keys(bob, bob_device, "5")["keys"]
        # an old update changes nothing
        await update("old", stream_id - 1, stream_id, "stale")
        assert await keys_of_bob() == _device_keys(bob, bob_device, "5")["keys"]
