"""``GET /_matrix/client/v1/rooms/{roomId}/hierarchy`` over real sockets: the depth-first walk
in the spec's child order, who sees which room, depth, suggested-only, pagination and bad input."""

from __future__ import annotations

from typing import Any

import httpx

from tests.integration.conftest import RunningServer

V3 = "/_matrix/client/v3"
V1 = "/_matrix/client/v1"


async def _user(server: RunningServer, name: str) -> httpx.AsyncClient:
    body = await server.register(name)
    return server.client(headers={"Authorization": f"Bearer {body['access_token']}"})


async def _room(c: httpx.AsyncClient, name: str, preset: str, **extra: Any) -> str:
    r = await c.post(f"{V3}/createRoom", json={"name": name, "preset": preset, **extra})
    assert r.status_code == 200, r.text
    room_id: str = r.json()["room_id"]
    return room_id


async def _child(c: httpx.AsyncClient, parent: str, child: str, **content: Any) -> None:
    content.setdefault("via", ["test.local"])
    r = await c.put(f"{V3}/rooms/{parent}/state/m.space.child/{child}", json=content)
    assert r.status_code == 200, r.text


async def _names(c: httpx.AsyncClient, room_id: str, **params: Any) -> list[str]:
    r = await c.get(f"{V1}/rooms/{room_id}/hierarchy", params=params)
    assert r.status_code == 200, r.text
    return [room.get("name", "?") for room in r.json()["rooms"]]


async def test_space_hierarchy(server: RunningServer) -> None:
    async with await _user(server, "alice") as alice, await _user(server, "bob") as bob:
        space = await _room(alice, "S", "public_chat", creation_content={"type": "m.space"})
        a = await _room(alice, "A", "public_chat")
        a1 = await _room(alice, "A1", "public_chat")
        b = await _room(alice, "B", "private_chat")
        c = await _room(alice, "C", "private_chat")
        w = await _room(
            alice,
            "W",
            "private_chat",
            initial_state=[
                {
                    "type": "m.room.history_visibility",
                    "content": {"history_visibility": "world_readable"},
                }
            ],
        )
        await _child(alice, space, c)  # no order: after the ordered ones
        await _child(alice, space, a, order="b", suggested=True)
        await _child(alice, space, b, order="a")
        await _child(alice, space, w, order="\x01bad")  # invalid order: by timestamp, after C
        await _child(alice, space, "!elsewhere:remote.example")  # not known here: left out
        await _child(alice, space, "!gone:test.local", via=[])  # emptied: no child
        await _child(alice, a, a1)

        assert await _names(alice, space) == ["S", "B", "A", "A1", "C", "W"]
        r = await alice.get(f"{V1}/rooms/{space}/hierarchy")
        top = r.json()["rooms"][0]
        assert top["room_id"] == space and top["room_type"] == "m.space"
        assert top["num_joined_members"] == 1 and top["join_rule"] == "public"
        assert top["world_readable"] is False and top["guest_can_join"] is False
        children = {e["state_key"]: e for e in top["children_state"]}
        assert set(children) == {a, b, c, w, "!elsewhere:remote.example"}
        assert children[a]["content"] == {"via": ["test.local"], "order": "b", "suggested": True}
        assert children[a]["type"] == "m.space.child" and "origin_server_ts" in children[a]
        assert children[a]["sender"] == "@alice:test.local"
        assert "next_batch" not in r.json()

        # bob is in none of the rooms: he sees the public and world-readable ones only
        assert await _names(bob, space) == ["S", "A", "A1", "W"]
        r = await bob.get(f"{V1}/rooms/{b}/hierarchy")
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        r = await bob.get(f"{V1}/rooms/!unknown:test.local/hierarchy")
        assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
        # invited: he may see it
        r = await alice.post(f"{V3}/rooms/{b}/invite", json={"user_id": "@bob:test.local"})
        assert r.status_code == 200, r.text
        assert await _names(bob, space) == ["S", "B", "A", "A1", "W"]

        # depth and suggested-only
        assert await _names(alice, space, max_depth=0) == ["S"]
        assert await _names(alice, space, max_depth=1) == ["S", "B", "A", "C", "W"]
        assert await _names(alice, space, suggested_only="true") == ["S", "A"]

        # pagination
        r = await alice.get(f"{V1}/rooms/{space}/hierarchy", params={"limit": 4})
        assert [x["name"] for x in r.json()["rooms"]] == ["S", "B", "A", "A1"]
        token = r.json()["next_batch"]
        r = await alice.get(f"{V1}/rooms/{space}/hierarchy", params={"limit": 4, "from": token})
        assert [x["name"] for x in r.json()["rooms"]] == ["C", "W"]
        assert "next_batch" not in r.json()
        r = await alice.get(
            f"{V1}/rooms/{space}/hierarchy", params={"from": token, "suggested_only": "true"}
        )
        assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM")

        for params in (
            {"limit": 0},
            {"limit": "x"},
            {"max_depth": -1},
            {"suggested_only": "yes"},
            {"from": "nonsense"},
        ):
            r = await alice.get(f"{V1}/rooms/{space}/hierarchy", params=params)
            assert (r.status_code, r.json()["errcode"]) == (400, "M_INVALID_PARAM"), params
    async with server.client() as anon:
        r = await anon.get(f"{V1}/rooms/{space}/hierarchy")
        assert r.status_code == 401
