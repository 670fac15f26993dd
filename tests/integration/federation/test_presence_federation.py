"""Two of our servers: presence crosses as ``m.presence`` EDUs both ways and shows in the other
server's ``/sync``; a user whose last-seen privacy is ``nobody`` never has their presence sent
(only the one ``offline`` when they hide); presence claimed for another server's user is
dropped."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

import httpx
import trio

from tests.integration.federation.conftest import FederatedServer

V3 = "/_matrix/client/v3"
PRIVACY = "org.trio_homeserver.last_seen_privacy"


async def _user(server: FederatedServer, name: str) -> tuple[str, str]:
    account = await server.register(name)
    return account["user_id"], account["access_token"]


def _client(url: str, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=url, timeout=30, headers={"Authorization": f"Bearer {token}"})


async def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def _join(a: FederatedServer, token: str, room_id: str, via: FederatedServer) -> None:
    async with _client(a.client_url, token) as c:
        target = f"{V3}/join/{quote(room_id)}?server_name={quote(via.server_name)}"
        await _ok(await c.post(target, json={}))


class _Syncer:
    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.since: str | None = None
        self.presence: list[dict[str, Any]] = []

    async def until(self, found: Callable[[], Any], timeout: float = 20) -> None:
        """Sync (with ``set_presence=offline``: the syncing user stays as they are) until
        ``found()`` over all presence events seen so far is truthy."""
        with trio.fail_after(timeout):
            while True:
                params: dict[str, Any] = {"timeout": 1000, "set_presence": "offline"}
                if self.since is not None:
                    params["since"] = self.since
                batch = await _ok(await self.client.get(f"{V3}/sync", params=params))
                self.since = batch["next_batch"]
                self.presence.extend(batch.get("presence", {}).get("events", []))
                if found():
                    return

    def of(self, user_id: str) -> list[dict[str, Any]]:
        return [e["content"] for e in self.presence if e["sender"] == user_id]


async def _set(client: httpx.AsyncClient, user_id: str, state: str, msg: str) -> None:
    body = {"presence": state, "status_msg": msg}
    await _ok(await client.put(f"{V3}/presence/{quote(user_id)}/status", json=body))


async def test_presence_crosses_both_ways_and_hidden_users_stay_home(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    alice, ta = await _user(a, "alice")
    carol, tc = await _user(a, "carol")
    bob, tb = await _user(b, "bob")
    async with (
        _client(a.client_url, ta) as ca,
        _client(a.client_url, tc) as cc,
        _client(b.client_url, tb) as cb,
    ):
        room = await _ok(await ca.post(f"{V3}/createRoom", json={"preset": "public_chat"}))
        room_id = room["room_id"]
        await _ok(await cc.post(f"{V3}/join/{quote(room_id)}", json={}))
        await _ok(
            await cc.put(
                f"{V3}/user/{quote(carol)}/account_data/{PRIVACY}", json={"last_seen": "nobody"}
            )
        )
        await _join(b, tb, room_id, a)
        sa, sb = _Syncer(ca), _Syncer(cb)
        await sa.until(lambda: True)
        await sb.until(lambda: True)
        await _set(cc, carol, "online", "hidden-carol")
        await _set(ca, alice, "unavailable", "from-a")
        await sb.until(lambda: any(c.get("status_msg") == "from-a" for c in sb.of(alice)))
        assert sb.of(alice)[-1]["presence"] == "unavailable"
        await _set(cb, bob, "online", "from-b")
        await sa.until(lambda: any(c.get("status_msg") == "from-b" for c in sa.of(bob)))
        assert sa.of(bob)[-1]["presence"] == "online"
        # carol's presence never reached B; alice's later change did, after carol's
        await _set(ca, alice, "online", "again")
        await sb.until(lambda: any(c.get("status_msg") == "again" for c in sb.of(alice)))
        assert all(c.get("presence") == "offline" and len(c) == 1 for c in sb.of(carol))

        # presence claimed by B for A's user is dropped; B's own user's shows
        async def send(txn: str, user_id: str, msg: str) -> None:
            push = [{"user_id": user_id, "presence": "online", "status_msg": msg}]
            body = {
                "origin": b.server_name,
                "origin_server_ts": 0,
                "pdus": [],
                "edus": [{"edu_type": "m.presence", "content": {"push": push}}],
            }
            r = await b.signed_request(a, "PUT", f"/_matrix/federation/v1/send/{txn}", body)
            assert r.status_code == 200, r.text

        await send("forged", alice, "forged")
        await send("bad", bob, "x" * 2000)  # over-long status: dropped
        await send("real", bob, "real")
        await sa.until(lambda: any(c.get("status_msg") == "real" for c in sa.of(bob)))
        assert all(c.get("status_msg") not in ("forged", "x" * 2000) for c in sa.presence)
