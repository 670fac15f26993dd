"""Server A sends signed transactions into a room on server B, over TLS: the events reach a
local user's ``/sync`` on B, and A can read B's room graph."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import trio
from nio import AsyncClient, AsyncClientConfig, RoomMessagesResponse, SyncResponse

from federation.core.builder import build_event
from federation.core.events import Event
from federation.core.room_versions import get_room_version
from tests.integration.federation.conftest import FederatedServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _nio_reads(base_url: str, room_id: str) -> tuple[list[str], list[str], int]:
    """matrix-nio logs in as alice on B: the bodies its sync and /messages see, and the
    room's unread notification count."""

    async def scenario() -> tuple[list[str], list[str], int]:
        client = AsyncClient(base_url, "alice", config=AsyncClientConfig(store_sync_tokens=False))
        try:
            await client.login("a long passphrase")
            synced = await client.sync(timeout=0)
            assert isinstance(synced, SyncResponse), synced
            timeline = synced.rooms.join[room_id].timeline.events
            sync_bodies = [getattr(e, "body", "") for e in timeline]
            unread = synced.rooms.join[room_id].unread_notifications.notification_count or 0
            page = await client.room_messages(room_id, start="", limit=20)
            assert isinstance(page, RoomMessagesResponse), page
            return sync_bodies, [getattr(e, "body", "") for e in page.chunk], unread
        finally:
            await client.close()

    return asyncio.run(scenario())


async def _register(client: httpx.AsyncClient, name: str) -> str:
    resp = await client.post(
        "/_matrix/client/v3/register",
        json={"username": name, "password": "a long passphrase", "auth": {"type": "m.login.dummy"}},
    )
    assert resp.status_code == 200, resp.text
    token: str = resp.json()["access_token"]
    return token


def _event(
    a: FederatedServer,
    room_id: str,
    sender: str,
    event_type: str,
    content: dict[str, Any],
    prevs: list[str],
    auth: list[str],
    depth: int,
    state_key: str | None = None,
) -> Event:
    return build_event(
        get_room_version("10"),
        room_id=room_id,
        sender=sender,
        type=event_type,
        content=content,
        prev_event_ids=prevs,
        auth_event_ids=auth,
        depth=depth,
        origin_server_ts=1_700_000_000_000,
        origin=a.server_name,
        signing_key=a.signing_key,
        state_key=state_key,
    )


async def test_transaction_reaches_sync_and_room_graph(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    async with b.client() as client:
        token = await _register(client, "alice")
        auth_header = {"Authorization": f"Bearer {token}"}
        resp = await client.post(
            "/_matrix/client/v3/createRoom",
            json={"preset": "public_chat", "room_version": "10"},
            headers=auth_header,
        )
        assert resp.status_code == 200, resp.text
        room_id = resp.json()["room_id"]
        state = (
            await client.get(f"/_matrix/client/v3/rooms/{room_id}/state", headers=auth_header)
        ).json()
        by_key = {(e["type"], e["state_key"]): e["event_id"] for e in state}
        last = (
            await client.get(
                f"/_matrix/client/v3/rooms/{room_id}/messages",
                params={"dir": "b", "limit": "1"},
                headers=auth_header,
            )
        ).json()["chunk"][0]["event_id"]
        first_sync = (await client.get("/_matrix/client/v3/sync", headers=auth_header)).json()
        since = first_sync["next_batch"]

        rob = f"@rob:{a.server_name}"
        base_auth = [by_key[("m.room.create", "")], by_key[("m.room.power_levels", "")]]
        join = _event(
            a,
            room_id,
            rob,
            "m.room.member",
            {"membership": "join"},
            [last],
            [*base_auth, by_key[("m.room.join_rules", "")]],
            depth=50,
            state_key=rob,
        )
        message = _event(
            a,
            room_id,
            rob,
            "m.room.message",
            {"msgtype": "m.text", "body": "hello from A"},
            [join.event_id],
            [*base_auth, join.event_id],
            depth=51,
        )
        body = {
            "origin": a.server_name,
            "origin_server_ts": 1_700_000_000_000,
            "pdus": [join.pdu, message.pdu],
        }
        with trio.fail_after(30):
            resp = await a.signed_request(b, "PUT", "/_matrix/federation/v1/send/txn1", body)
        assert resp.status_code == 200, resp.text
        assert resp.json() == {"pdus": {join.event_id: {}, message.event_id: {}}}

        synced = (
            await client.get(
                "/_matrix/client/v3/sync", params={"since": since}, headers=auth_header
            )
        ).json()
        timeline = synced["rooms"]["join"][room_id]["timeline"]["events"]
        assert [(e["sender"], e["type"]) for e in timeline][-2:] == [
            (rob, "m.room.member"),
            (rob, "m.room.message"),
        ]
        assert timeline[-1]["content"]["body"] == "hello from A"

        # matrix-nio on B: /sync, /messages and the unread count show the remote message
        sync_bodies, page_bodies, unread = await trio.to_thread.run_sync(
            _nio_reads, b.client_url, room_id
        )
        assert "hello from A" in sync_bodies and "hello from A" in page_bodies
        assert unread >= 1

        # the same transaction again: the same answer
        again = await a.signed_request(b, "PUT", "/_matrix/federation/v1/send/txn1", body)
        assert again.json() == resp.json()

        # A, now in the room, reads it
        got = await a.signed_request(b, "GET", f"/_matrix/federation/v1/event/{last}")
        assert got.status_code == 200 and got.json()["pdus"][0]["room_id"] == room_id
        state_ids = await a.signed_request(
            b, "GET", f"/_matrix/federation/v1/state_ids/{room_id}?event_id={message.event_id}"
        )
        assert state_ids.status_code == 200
        assert join.event_id in state_ids.json()["pdu_ids"]
        # unsigned requests are refused
        async with b.federation_client() as plain:
            unsigned = await plain.get(f"/_matrix/federation/v1/event/{last}")
        assert unsigned.status_code == 401
