"""The space hierarchy over real sockets (SQLite and PostgreSQL), and matrix-nio reading it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import trio
from nio import AsyncClient, AsyncClientConfig, SpaceGetHierarchyResponse  # type: ignore[import-untyped]

from tests.integration.conftest import RunningServer

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"


async def _room(c: Any, name: str, **body: Any) -> str:
    r = await c.post(f"{V3}/createRoom", json={"name": name, **body})
    assert r.status_code == 200, r.text
    room_id: str = r.json()["room_id"]
    return room_id


async def _space(c: Any, name: str, **body: Any) -> str:
    return await _room(c, name, creation_content={"type": "m.space"}, **body)


async def _child(c: Any, space: str, child: str, **content: Any) -> None:
    body = {"via": ["test.local"], **content}
    r = await c.put(f"{V3}/rooms/{space}/state/m.space.child/{child}", json=body)
    assert r.status_code == 200, r.text


async def test_hierarchy_walk_visibility_and_paging(server: RunningServer) -> None:
    alice = await server.register("alice")
    bob = await server.register("bob")
    auth = {"Authorization": f"Bearer {alice['access_token']}"}
    bob_auth = {"Authorization": f"Bearer {bob['access_token']}"}
    async with server.client(headers=auth) as a, server.client(headers=bob_auth) as b:
        top = await _space(a, "Top", preset="public_chat")
        sub = await _space(a, "Sub", preset="public_chat")
        public = await _room(a, "Public", preset="public_chat", topic="open")
        private = await _room(a, "Private", preset="private_chat")
        deep = await _room(a, "Deep", preset="public_chat")
        removed = await _room(a, "Removed", preset="public_chat")
        # order: "a" before "b" (order keys), then by timestamp
        await _child(a, top, sub, order="b")
        await _child(a, top, public, order="a", suggested=True)
        await _child(a, top, private)
        await _child(a, top, removed)
        r = await a.put(f"{V3}/rooms/{top}/state/m.space.child/{removed}", json={})
        assert r.status_code == 200  # no via: no longer a child
        await _child(a, sub, deep)
        await _child(a, sub, top)  # a loop

        r = await a.get(f"{V1}/rooms/{top}/hierarchy")
        assert r.status_code == 200, r.text
        rooms = r.json()["rooms"]
        assert [x["room_id"] for x in rooms] == [top, public, sub, deep, private]
        assert "next_batch" not in r.json()
        first = rooms[0]
        assert first["room_type"] == "m.space" and first["name"] == "Top"
        assert first["num_joined_members"] == 1 and first["join_rule"] == "public"
        assert [c["state_key"] for c in first["children_state"]] == [public, sub, private]
        assert all(
            "origin_server_ts" in c and c["type"] == "m.space.child"
            for c in first["children_state"]
        )
        assert rooms[1]["children_state"] == [] and rooms[1]["topic"] == "open"

        # bob is in none of them: the private room is left out
        r = await b.get(f"{V1}/rooms/{top}/hierarchy")
        assert [x["room_id"] for x in r.json()["rooms"]] == [top, public, sub, deep]

        # max_depth and suggested_only
        r = await b.get(f"{V1}/rooms/{top}/hierarchy", params={"max_depth": "1"})
        assert [x["room_id"] for x in r.json()["rooms"]] == [top, public, sub]
        r = await b.get(f"{V1}/rooms/{top}/hierarchy", params={"suggested_only": "true"})
        assert [x["room_id"] for x in r.json()["rooms"]] == [top, public]

        # pages of one: the same walk, and the parameters may not change
        seen: list[str] = []
        token = None
        for _ in range(10):
            params = {"limit": "1"} | ({"from": token} if token else {})
            page = (await b.get(f"{V1}/rooms/{top}/hierarchy", params=params)).json()
            seen += [x["room_id"] for x in page["rooms"]]
            token = page.get("next_batch")
            if token is None:
                break
        assert seen == [top, public, sub, deep]
        page = (await b.get(f"{V1}/rooms/{top}/hierarchy", params={"limit": "1"})).json()
        r = await b.get(
            f"{V1}/rooms/{top}/hierarchy",
            params={"from": page["next_batch"], "max_depth": "1"},
        )
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"

        # errors: a room bob may not see, unknown rooms, bad parameters
        r = await b.get(f"{V1}/rooms/{private}/hierarchy")
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        r = await b.get(f"{V1}/rooms/!nope:test.local/hierarchy")
        assert r.status_code == 403
        for params in (
            {"limit": "0"},
            {"limit": "x"},
            {"max_depth": "-1"},
            {"suggested_only": "yes"},
            {"from": "garbage"},
        ):
            r = await b.get(f"{V1}/rooms/{top}/hierarchy", params=params)
            assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM", params


async def test_matrix_nio_reads_a_space(server: RunningServer) -> None:
    async def scenario(base_url: str) -> None:
        client = AsyncClient(base_url, "", config=AsyncClientConfig(store_sync_tokens=False))
        try:
            await client.register("nio", "correct horse battery")
            space = await client.room_create(name="Space", space=True)
            room = await client.room_create(name="Room in space")
            await client.room_put_state(
                space.room_id, "m.space.child", {"via": ["test.local"]}, state_key=room.room_id
            )
            answer = await client.space_get_hierarchy(space.room_id, limit=10)
            assert isinstance(answer, SpaceGetHierarchyResponse), answer
            assert [r["room_id"] for r in answer.rooms] == [space.room_id, room.room_id]
            assert answer.rooms[1]["name"] == "Room in space"
        finally:
            await client.close()

    await trio.to_thread.run_sync(lambda: asyncio.run(scenario(server.base_url)))
