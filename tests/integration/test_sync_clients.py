"""matrix-nio syncing against the server: a second user sees what the first one does.

nio is an asyncio library and the server runs on Trio, so the scenario runs in an asyncio loop
in a worker thread while the server serves from the test's nursery.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest
import trio
from nio import (  # type: ignore[import-untyped]
    AsyncClient,
    AsyncClientConfig,
    InviteMemberEvent,
    PresenceEvent,
    ReceiptEvent,
    RoomCreateResponse,
    RoomMessageText,
    SyncResponse,
    TypingNoticeEvent,
)

from tests.integration.conftest import RunningServer

T = TypeVar("T")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


async def in_asyncio(fn: Callable[..., Awaitable[T]], *args: Any) -> T:
    return await trio.to_thread.run_sync(lambda: asyncio.run(fn(*args)))


def _client(base_url: str) -> AsyncClient:
    return AsyncClient(base_url, config=AsyncClientConfig(store_sync_tokens=False))


async def test_nio_sync_loop_sees_the_other_user(server: RunningServer) -> None:
    async def scenario(base_url: str) -> dict[str, Any]:
        alice, bob = _client(base_url), _client(base_url)
        seen: dict[str, Any] = {"messages": [], "invites": []}

        def on_message(room: Any, event: RoomMessageText) -> None:
            seen["messages"].append((room.room_id, event.sender, event.body))

        def on_invite(room: Any, event: InviteMemberEvent) -> None:
            seen["invites"].append(room.room_id)

        bob.add_event_callback(on_message, RoomMessageText)
        bob.add_event_callback(on_invite, InviteMemberEvent)
        try:
            assert (await alice.register("alice", "correct horse battery")).user_id
            assert (await bob.register("bob", "correct horse battery")).user_id
            first = await bob.sync(timeout=0, full_state=True)
            assert isinstance(first, SyncResponse), first

            created = await alice.room_create(name="Chat", invite=[bob.user_id])
            assert isinstance(created, RoomCreateResponse), created
            room_id = created.room_id

            # bob's long-poll is woken by the invite
            resp = await bob.sync(timeout=10_000)
            assert isinstance(resp, SyncResponse), resp
            assert room_id in resp.rooms.invite and room_id in seen["invites"]
            assert bob.invited_rooms[room_id].name == "Chat"
            await bob.join(room_id)
            await bob.sync(timeout=0)
            assert room_id in bob.rooms
            assert set(bob.rooms[room_id].users) == {alice.user_id, bob.user_id}

            async def send_later() -> None:
                await asyncio.sleep(0.2)
                await alice.room_send(
                    room_id, "m.room.message", {"msgtype": "m.text", "body": "hello bob"}
                )

            sender = asyncio.create_task(send_later())
            resp = await bob.sync(timeout=10_000)
            await sender
            assert isinstance(resp, SyncResponse), resp
            if not seen["messages"]:
                await bob.sync(timeout=10_000)
            seen["room_id"] = room_id
            seen["display"] = bob.rooms[room_id].display_name
            return seen
        finally:
            await alice.close()
            await bob.close()

    seen = await in_asyncio(scenario, server.base_url)
    assert (seen["room_id"], "@alice:test.local", "hello bob") in seen["messages"]
    assert seen["display"] == "Chat"


async def test_nio_sync_sees_typing_receipts_and_presence(server: RunningServer) -> None:
    """bob's nio sync loop sees alice typing, alice's read receipt and alice's presence."""

    async def scenario(base_url: str) -> dict[str, Any]:
        alice, bob = _client(base_url), _client(base_url)
        seen: dict[str, Any] = {"typing": [], "receipts": [], "presence": []}

        def on_typing(room: Any, event: TypingNoticeEvent) -> None:
            seen["typing"].append(list(event.users))

        def on_receipt(room: Any, event: ReceiptEvent) -> None:
            seen["receipts"].extend((r.user_id, r.event_id, r.receipt_type) for r in event.receipts)

        def on_presence(event: PresenceEvent) -> None:
            seen["presence"].append((event.user_id, event.presence, event.status_msg))

        bob.add_ephemeral_callback(on_typing, TypingNoticeEvent)
        bob.add_ephemeral_callback(on_receipt, ReceiptEvent)
        bob.add_presence_callback(on_presence, PresenceEvent)

        async def sync_until(what: str, check: Callable[[], bool]) -> None:
            for _ in range(10):
                if check():
                    return
                resp = await bob.sync(timeout=5_000)
                assert isinstance(resp, SyncResponse), resp
            raise AssertionError(f"bob's sync never showed {what}: {seen}")

        try:
            assert (await alice.register("alice", "correct horse battery")).user_id
            assert (await bob.register("bob", "correct horse battery")).user_id
            created = await alice.room_create(name="Live", invite=[bob.user_id])
            assert isinstance(created, RoomCreateResponse), created
            room_id = created.room_id
            await bob.sync(timeout=0)
            await bob.join(room_id)
            await alice.sync(timeout=0)
            sent = await alice.room_send(
                room_id, "m.room.message", {"msgtype": "m.text", "body": "hi"}
            )
            await bob.sync(timeout=0)

            await alice.room_typing(room_id, True, 20_000)
            await sync_until("typing", lambda: [alice.user_id] in seen["typing"])
            await alice.room_typing(room_id, False)
            await sync_until("typing stopped", lambda: seen["typing"][-1] == [])

            await alice.update_receipt_marker(room_id, sent.event_id)
            await sync_until(
                "the receipt",
                lambda: any(r[:2] == (alice.user_id, sent.event_id) for r in seen["receipts"]),
            )

            await alice.set_presence("unavailable", "in a meeting")
            await sync_until(
                "alice's presence",
                lambda: (alice.user_id, "unavailable", "in a meeting") in seen["presence"],
            )
            return seen
        finally:
            await alice.close()
            await bob.close()

    seen = await in_asyncio(scenario, server.base_url)
    assert seen["typing"][-1] == []
