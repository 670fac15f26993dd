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
    RoomCreateResponse,
    RoomMessageText,
    SyncResponse,
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
