"""Edits, reactions and threads through real client libraries: matrix-nio's relations and threads
calls, mautrix-python's edit, reaction and thread helpers, and the bundled aggregations they get
back (SQLite and PostgreSQL).

Both libraries are asyncio; each scenario runs in its own loop in a worker thread while the
server serves from the test's nursery.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import trio
from mautrix.api import Method, Path
from mautrix.client import Client
from mautrix.types import EventType, TextMessageEventContent
from nio import AsyncClient, AsyncClientConfig, RoomGetEventResponse, RoomSendResponse
from nio.api import RelationshipType, ThreadInclusion

from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def _nio(server: RunningServer, login: dict[str, Any]) -> AsyncClient:
    client = AsyncClient(
        server.base_url, login["user_id"], config=AsyncClientConfig(store_sync_tokens=False)
    )
    client.access_token = login["access_token"]
    client.user_id = login["user_id"]
    client.device_id = login["device_id"]
    return client


async def test_nio_edit_reaction_thread(server: RunningServer) -> None:
    alice = await server.register("nioalice")
    bob = await server.register("niobob")

    async def scenario() -> None:
        a, b = _nio(server, alice), _nio(server, bob)
        try:
            created = await a.room_create(name="nio relations", invite=[bob["user_id"]])
            room_id = created.room_id
            assert (await b.join(room_id)).room_id == room_id

            async def send(client: AsyncClient, content: dict[str, Any], typ: str) -> str:
                resp = await client.room_send(room_id, typ, content)
                assert isinstance(resp, RoomSendResponse), resp
                return str(resp.event_id)

            root = await send(a, {"msgtype": "m.text", "body": "hello"}, "m.room.message")
            edit = await send(
                a,
                {
                    "msgtype": "m.text",
                    "body": "* hello, world",
                    "m.new_content": {"msgtype": "m.text", "body": "hello, world"},
                    "m.relates_to": {"rel_type": "m.replace", "event_id": root},
                },
                "m.room.message",
            )
            reaction = await send(
                b,
                {"m.relates_to": {"rel_type": "m.annotation", "event_id": root, "key": "🎉"}},
                "m.reaction",
            )
            replies = [
                await send(
                    b,
                    {
                        "msgtype": "m.text",
                        "body": f"reply {i}",
                        "m.relates_to": {"rel_type": "m.thread", "event_id": root},
                    },
                    "m.room.message",
                )
                for i in range(3)
            ]

            # nio's relations iterator pages through every child (two per page)
            children = [
                e.event_id async for e in b.room_get_event_relations(room_id, root, limit=2)
            ]
            assert children == [*reversed(replies), reaction, edit]
            threaded = [
                e.event_id
                async for e in b.room_get_event_relations(
                    room_id, root, rel_type=RelationshipType.thread
                )
            ]
            assert threaded == list(reversed(replies))
            reactions = [
                e.source["content"]["m.relates_to"]["key"]
                async for e in a.room_get_event_relations(
                    room_id, root, RelationshipType.annotation, "m.reaction"
                )
            ]
            assert reactions == ["🎉"]

            # the thread list, and the root's bundled aggregations as nio hands them over
            roots = [e async for e in a.room_get_threads(room_id)]
            assert [e.event_id for e in roots] == [root]
            mine = [
                e.event_id async for e in a.room_get_threads(room_id, ThreadInclusion.participated)
            ]
            assert mine == [root]
            got = await b.room_get_event(room_id, root)
            assert isinstance(got, RoomGetEventResponse), got
            relations = got.event.source["unsigned"]["m.relations"]
            assert relations["m.replace"]["event_id"] == edit
            thread = relations["m.thread"]
            assert thread["latest_event"]["event_id"] == replies[-1]
            assert thread["count"] == 3 and thread["current_user_participated"] is True
            assert "m.annotation" not in relations
        finally:
            await a.close()
            await b.close()

    await trio.to_thread.run_sync(lambda: asyncio.run(scenario()))


async def test_mautrix_edit_reaction_thread(server: RunningServer) -> None:
    login = await server.register("mautrixalice")

    async def scenario() -> None:
        client = Client(
            base_url=server.base_url, token=login["access_token"], mxid=login["user_id"]
        )
        try:
            room_id = await client.create_room(name="mautrix relations")
            root = await client.send_text(room_id, "original")
            edit = TextMessageEventContent(body="edited")
            edit.set_edit(root)
            edit_id = await client.send_message_event(room_id, EventType.ROOM_MESSAGE, edit)
            await client.react(room_id, root, "👍")
            reply = TextMessageEventContent(body="in the thread")
            reply.set_thread_parent(root)
            reply_id = await client.send_message_event(room_id, EventType.ROOM_MESSAGE, reply)

            # mautrix's typed event keeps the content as sent; the aggregation is in unsigned
            raw = await client.api.request(Method.GET, Path.v3.rooms[room_id].event[root])
            relations = raw["unsigned"]["m.relations"]
            assert relations["m.replace"]["event_id"] == str(edit_id)
            assert relations["m.replace"]["content"]["m.new_content"]["body"] == "edited"
            assert relations["m.thread"]["latest_event"]["event_id"] == str(reply_id)
            typed = await client.get_event(room_id, root)
            assert typed.content.body == "original"

            page = await client.api.request(
                Method.GET, Path.v1.rooms[room_id].relations[root]["m.annotation"]
            )
            assert [e["content"]["m.relates_to"]["key"] for e in page["chunk"]] == ["👍"]
            threads = await client.api.request(Method.GET, Path.v1.rooms[room_id].threads)
            assert [e["event_id"] for e in threads["chunk"]] == [str(root)]

            # a redacted reply leaves the thread, and says what redacted it
            redaction = await client.redact(room_id, reply_id, reason="wrong thread")
            threads = await client.api.request(Method.GET, Path.v1.rooms[room_id].threads)
            assert threads["chunk"] == []
            raw = await client.api.request(Method.GET, Path.v3.rooms[room_id].event[reply_id])
            assert raw["unsigned"]["redacted_because"]["event_id"] == str(redaction)
        finally:
            await client.api.session.close()

    await trio.to_thread.run_sync(lambda: asyncio.run(scenario()))
