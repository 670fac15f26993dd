"""The user directory over real sockets: only users who share a room with the searcher or are
in a public room are found, unless ``user_directory.search_all_users`` is on."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from homeserver.storage import user_directory as user_directory_store
from tests.integration.conftest import RunningServer, ServerFactory

V3 = "/_matrix/client/v3"
SEARCH = f"{V3}/user_directory/search"


class User:
    def __init__(self, server: RunningServer, login: dict[str, Any]) -> None:
        self.user_id: str = login["user_id"]
        self.client = server.client(headers={"Authorization": f"Bearer {login['access_token']}"})


async def _user(server: RunningServer, name: str) -> User:
    return User(server, await server.register(name))


async def _found(c: httpx.AsyncClient, term: str, **body: Any) -> list[str]:
    r = await c.post(SEARCH, json={"search_term": term, **body})
    assert r.status_code == 200, r.text
    return [entry["user_id"] for entry in r.json()["results"]]


async def _room(c: httpx.AsyncClient, preset: str, invite: list[str] | None = None) -> str:
    r = await c.post(f"{V3}/createRoom", json={"preset": preset, "invite": invite or []})
    assert r.status_code == 200, r.text
    room_id: str = r.json()["room_id"]
    return room_id


async def _state(c: httpx.AsyncClient, room_id: str, event_type: str, content: Any) -> None:
    r = await c.put(f"{V3}/rooms/{room_id}/state/{event_type}", json=content)
    assert r.status_code == 200, r.text


async def test_directory_finds_only_users_in_shared_or_public_rooms(
    server: RunningServer,
) -> None:
    alice = await _user(server, "dir-alice")
    bob = await _user(server, "dir-bob")
    carol = await _user(server, "dir-carol")
    dave = await _user(server, "dir-dave")
    async with alice.client as a, bob.client as b, carol.client as c, dave.client as d:
        # nobody shares anything: alice finds no one, not even by exact user ID
        assert await _found(a, "dir-") == []
        assert await _found(a, dave.user_id) == []

        # a private room dave is alone in does not make him findable
        await _room(d, "private_chat")
        assert await _found(a, "dir-dave") == []

        # a private room alice shares with bob: bob (and alice) are found, by alice only
        shared = await _room(a, "private_chat", invite=[bob.user_id])
        assert bob.user_id not in await _found(a, "dir-bob")  # only invited so far
        assert (await b.post(f"{V3}/rooms/{shared}/join", json={})).status_code == 200
        assert await _found(a, "dir-bob") == [bob.user_id]
        assert await _found(b, "dir-") == [alice.user_id]  # not himself: private room
        assert await _found(c, "dir-bob") == []
        # ... until bob leaves
        assert (await b.post(f"{V3}/rooms/{shared}/leave", json={})).status_code == 200
        assert await _found(a, "dir-bob") == []

        # carol's room becomes public and private again: she appears and disappears
        room = await _room(c, "private_chat")
        assert await _found(a, "dir-carol") == []
        await _state(c, room, "m.room.join_rules", {"join_rule": "public"})
        assert await _found(a, "dir-carol") == [carol.user_id]
        assert await _found(d, "dir-carol") == [carol.user_id]
        assert await _found(c, "dir-carol") == [carol.user_id]  # herself, in a public room
        await _state(c, room, "m.room.join_rules", {"join_rule": "invite"})
        assert await _found(a, "dir-carol") == []
        # world-readable history makes a room public too
        await _state(c, room, "m.room.history_visibility", {"history_visibility": "world_readable"})
        assert await _found(a, "dir-carol") == [carol.user_id]
        await _state(c, room, "m.room.history_visibility", {"history_visibility": "shared"})
        assert await _found(a, "dir-carol") == []

        # a public room: dave joins and is found; he leaves and is not
        public = await _room(a, "public_chat")
        assert (await d.post(f"{V3}/rooms/{public}/join", json={})).status_code == 200
        assert await _found(c, "dir-dave") == [dave.user_id]
        assert (await d.post(f"{V3}/rooms/{public}/leave", json={})).status_code == 200
        assert await _found(c, "dir-dave") == []

        # display names are searched as well, case-insensitively
        r = await b.put(
            f"{V3}/profile/{bob.user_id}/displayname", json={"displayname": "Bobby Tables"}
        )
        assert r.status_code == 200
        assert await _found(a, "bobby") == []
        assert (await b.post(f"{V3}/rooms/{public}/join", json={})).status_code == 200
        assert await _found(c, "BOBBY") == [bob.user_id]

        # bad input
        r = await a.post(SEARCH, json={"search_term": "x", "limit": "1"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_JSON"
        r = await a.post(SEARCH, json={})
        assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"


async def test_limit_and_chunks(server: RunningServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(user_directory_store, "CHUNK", 2)
    alice = await _user(server, "chunk-alice")
    others = [await _user(server, f"chunk-{i}") for i in range(5)]
    hidden = [await _user(server, f"chunk-{i}x") for i in range(3)]
    async with alice.client as a:
        room = await _room(a, "private_chat", invite=[u.user_id for u in others])
        for user in others:
            async with user.client as u:
                assert (await u.post(f"{V3}/rooms/{room}/join", json={})).status_code == 200
        visible = sorted(u.user_id for u in others)
        assert await _found(a, "chunk-", limit=50) == visible
        r = await a.post(SEARCH, json={"search_term": "chunk-", "limit": 3})
        assert [e["user_id"] for e in r.json()["results"]] == visible[:3]
        assert r.json()["limited"] is True
        r = await a.post(SEARCH, json={"search_term": "chunk-", "limit": 5})
        assert r.json()["limited"] is False
        assert not {u.user_id for u in hidden} & set(await _found(a, "chunk-", limit=50))


async def test_search_all_users(homeserver_factory: ServerFactory) -> None:
    srv = await homeserver_factory(user_directory={"search_all_users": True})
    alice = await _user(srv, "all-alice")
    bob = await _user(srv, "all-bob")
    async with alice.client as a:
        assert await _found(a, "all-") == [alice.user_id, bob.user_id]
