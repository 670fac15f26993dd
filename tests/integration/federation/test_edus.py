"""Two of our servers: typing, receipts and to-device messages cross as EDUs both ways and show
in the other server's ``/sync`` as a local user's would; EDUs for another server's users,
``m.read.private`` receipts and repeated to-device message IDs do not."""

from __future__ import annotations

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


async def _shared_room(a: FederatedServer, b: FederatedServer, ta: str, tb: str) -> str:
    async with _client(a.client_url, ta) as ca, _client(b.client_url, tb) as cb:
        room_id = (await _ok(await ca.post(f"{V3}/createRoom", json={"preset": "public_chat"})))[
            "room_id"
        ]
        await _ok(
            await cb.post(f"{V3}/join/{quote(room_id)}?server_name={quote(a.server_name)}", json={})
        )
        with trio.fail_after(20):  # A knows B joined (receipts and typing need the member)
            while True:
                members = await _ok(await ca.get(f"{V3}/rooms/{quote(room_id)}/joined_members"))
                if len(members["joined"]) == 2:
                    break
                await trio.sleep(0.05)
    return room_id


class _Syncer:
    """A ``/sync`` loop of one client that keeps every batch."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.since: str | None = None

    async def until(
        self, found: Callable[[dict[str, Any]], Any], timeout: float = 20
    ) -> dict[str, Any]:
        """Sync until ``found(batch)`` is truthy; that batch."""
        with trio.fail_after(timeout):
            while True:
                params: dict[str, Any] = {"timeout": 1000}
                if self.since is not None:
                    params["since"] = self.since
                batch = await _ok(await self.client.get(f"{V3}/sync", params=params))
                self.since = batch["next_batch"]
                if found(batch):
                    return batch


def _ephemeral(batch: dict[str, Any], room_id: str, event_type: str) -> list[dict[str, Any]]:
    room = batch.get("rooms", {}).get("join", {}).get(room_id, {})
    return [e for e in room.get("ephemeral", {}).get("events", []) if e["type"] == event_type]


def _typing(batch: dict[str, Any], room_id: str) -> list[str] | None:
    events = _ephemeral(batch, room_id, "m.typing")
    return events[-1]["content"]["user_ids"] if events else None


def _receipts(batch: dict[str, Any], room_id: str) -> dict[str, Any]:
    merged: dict[str, Any] = {}
    for event in _ephemeral(batch, room_id, "m.receipt"):
        for event_id, by_type in event["content"].items():
            for receipt_type, users in by_type.items():
                merged.setdefault(event_id, {}).setdefault(receipt_type, {}).update(users)
    return merged


async def _send(client: httpx.AsyncClient, room_id: str, body: str) -> str:
    sent = await _ok(
        await client.put(
            f"{V3}/rooms/{quote(room_id)}/send/m.room.message/{body}",
            json={"msgtype": "m.text", "body": body},
        )
    )
    return str(sent["event_id"])


async def test_typing_crosses_both_ways_and_stops(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    alice, ta, _ = await _user(a, "alice")
    bob, tb, _ = await _user(b, "bob")
    room_id = await _shared_room(a, b, ta, tb)
    typing = f"{V3}/rooms/{quote(room_id)}/typing"
    async with _client(a.client_url, ta) as ca, _client(b.client_url, tb) as cb:
        sa, sb = _Syncer(ca), _Syncer(cb)
        await sa.until(lambda b: True)
        await sb.until(lambda b: True)
        await _ok(await ca.put(f"{typing}/{quote(alice)}", json={"typing": True, "timeout": 30000}))
        await sb.until(lambda batch: _typing(batch, room_id) == [alice])
        await _ok(await cb.put(f"{typing}/{quote(bob)}", json={"typing": True, "timeout": 30000}))
        await sa.until(lambda batch: _typing(batch, room_id) == [alice, bob])
        await _ok(await ca.put(f"{typing}/{quote(alice)}", json={"typing": False}))
        await sb.until(lambda batch: _typing(batch, room_id) == [bob])


async def test_typing_and_receipts_from_the_wrong_server_are_dropped(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    alice, ta, _ = await _user(a, "alice")
    bob, tb, _ = await _user(b, "bob")
    room_id = await _shared_room(a, b, ta, tb)
    async with _client(a.client_url, ta) as ca:
        event_id = await _send(ca, room_id, "hello")
        sa = _Syncer(ca)
        await sa.until(lambda b: True)

        async def send(txn: str, edus: list[dict[str, Any]]) -> None:
            body = {"origin": b.server_name, "origin_server_ts": 0, "pdus": [], "edus": edus}
            r = await b.signed_request(a, "PUT", f"/_matrix/federation/v1/send/{txn}", body)
            assert r.status_code == 200, r.text

        def receipt(user: str) -> dict[str, Any]:
            data = {"event_ids": [event_id], "data": {"ts": 1}}
            return {"edu_type": "m.receipt", "content": {room_id: {"m.read": {user: data}}}}

        def typing(user: str) -> dict[str, Any]:
            content = {"room_id": room_id, "user_id": user, "typing": True}
            return {"edu_type": "m.typing", "content": content}

        # B claims A's own user: nothing happens
        await send("wrong", [typing(alice), receipt(alice)])
        # malformed EDUs are dropped without failing the transaction
        await send(
            "bad",
            [
                {"edu_type": "m.typing", "content": {"room_id": room_id, "user_id": bob}},
                {"edu_type": "m.receipt", "content": {room_id: {"m.read": {bob: "x"}}}},
                {"edu_type": "m.direct_to_device", "content": {"sender": bob}},
            ],
        )
        # then B's own user, which shows
        await send("right", [typing(bob), receipt(bob)])
        seen_typing: list[list[str]] = []
        receipts: dict[str, Any] = {}

        def done(batch: dict[str, Any]) -> bool:
            if (t := _typing(batch, room_id)) is not None:
                seen_typing.append(t)
            for eid, by_type in _receipts(batch, room_id).items():
                receipts.setdefault(eid, {}).update(by_type.get("m.read", {}))
            return bool(
                seen_typing and seen_typing[-1] == [bob] and bob in receipts.get(event_id, {})
            )

        await sa.until(done)
        assert all(alice not in t for t in seen_typing)
        assert set(receipts[event_id]) == {bob}
        assert receipts[event_id][bob] == {"ts": 1}


async def test_receipts_cross_with_threads_and_private_ones_stay_home(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    alice, ta, _ = await _user(a, "alice")
    bob, tb, _ = await _user(b, "bob")
    room_id = await _shared_room(a, b, ta, tb)
    async with _client(a.client_url, ta) as ca, _client(b.client_url, tb) as cb:
        first = await _send(ca, room_id, "first")
        second = await _send(ca, room_id, "second")
        sa, sb = _Syncer(ca), _Syncer(cb)
        await sb.until(lambda batch: second in str(batch))
        await sa.until(lambda b: True)
        receipt = f"{V3}/rooms/{quote(room_id)}/receipt"
        await _ok(await cb.post(f"{receipt}/m.read.private/{quote(first)}", json={}))
        await _ok(await cb.post(f"{receipt}/m.read/{quote(second)}", json={"thread_id": "main"}))
        seen: dict[str, Any] = {}

        def got(batch: dict[str, Any]) -> bool:
            for eid, by_type in _receipts(batch, room_id).items():
                for receipt_type, users in by_type.items():
                    seen.setdefault(eid, {}).setdefault(receipt_type, {}).update(users)
            return bool(seen.get(second, {}).get("m.read", {}).get(bob))

        await sa.until(got)
        assert seen[second]["m.read"][bob]["thread_id"] == "main"
        assert isinstance(seen[second]["m.read"][bob]["ts"], int)
        assert first not in seen  # the private receipt never left B
        # and A's receipts reach B
        await _ok(await ca.post(f"{receipt}/m.read/{quote(second)}", json={}))
        batch = await sb.until(
            lambda batch: alice in _receipts(batch, room_id).get(second, {}).get("m.read", {})
        )
        assert "thread_id" not in _receipts(batch, room_id)[second]["m.read"][alice]


def _to_device(batch: dict[str, Any]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = batch.get("to_device", {}).get("events", [])
    return events


async def test_to_device_messages_cross_both_ways_once(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    alice, ta, alice_device = await _user(a, "alice")
    bob, tb, bob_device = await _user(b, "bob")
    async with _client(a.client_url, ta) as ca, _client(b.client_url, tb) as cb:
        sa, sb = _Syncer(ca), _Syncer(cb)
        await sa.until(lambda b: True)
        await sb.until(lambda b: True)
        body = {"messages": {bob: {bob_device: {"n": 1}}}}
        await _ok(await ca.put(f"{V3}/sendToDevice/m.test/t1", json=body))
        await _ok(await ca.put(f"{V3}/sendToDevice/m.test/t1", json=body))  # a retry
        got = await sb.until(_to_device)
        assert _to_device(got) == [{"type": "m.test", "sender": alice, "content": {"n": 1}}]
        body = {"messages": {alice: {"*": {"n": 2}}}}
        await _ok(await cb.put(f"{V3}/sendToDevice/m.test/t1", json=body))
        got = await sa.until(_to_device)
        assert _to_device(got) == [{"type": "m.test", "sender": bob, "content": {"n": 2}}]
        assert alice_device

        # the same message ID twice from B (a retried transaction) is delivered once;
        # a sender of another server is refused
        async def send(txn: str, sender: str, message_id: str, n: int) -> None:
            edu = {
                "edu_type": "m.direct_to_device",
                "content": {
                    "sender": sender,
                    "type": "m.test",
                    "message_id": message_id,
                    "messages": {alice: {alice_device: {"n": n}}},
                },
            }
            txn_body = {"origin": b.server_name, "origin_server_ts": 0, "pdus": [], "edus": [edu]}
            r = await b.signed_request(a, "PUT", f"/_matrix/federation/v1/send/{txn}", txn_body)
            assert r.status_code == 200, r.text

        await send("x1", bob, "m1", 3)
        await send("x2", bob, "m1", 3)
        await send("x3", "@mallory:elsewhere.example", "m2", 4)
        await send("x4", bob, "m3", 5)
        received: list[dict[str, Any]] = []

        def collect(batch: dict[str, Any]) -> bool:
            received.extend(_to_device(batch))
            return any(e["content"] == {"n": 5} for e in received)

        await sa.until(collect)
        assert [e["content"]["n"] for e in received] == [3, 5]
