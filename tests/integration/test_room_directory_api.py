"""Aliases, the room directory and ``/publicRooms`` over real sockets (SQLite and PostgreSQL),
and matrix-nio parsing the answers."""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import quote

import pytest
import trio
from nio import (  # type: ignore[import-untyped]
    AsyncClient,
    AsyncClientConfig,
    RoomDeleteAliasResponse,
    RoomPutAliasResponse,
    RoomResolveAliasResponse,
)
from nio.responses import PublicRoomsResponse  # type: ignore[import-untyped]

from tests.integration.conftest import RunningServer, ServerFactory

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
V3 = "/_matrix/client/v3"


class User:
    def __init__(self, server: RunningServer, login: dict[str, Any]) -> None:
        self.user_id: str = login["user_id"]
        self.token: str = login["access_token"]
        self.client = server.client(headers={"Authorization": f"Bearer {self.token}"})


async def _user(server: RunningServer, name: str) -> User:
    return User(server, await server.register(name))


def _alias_url(alias: str) -> str:
    return f"{V3}/directory/room/{quote(alias, safe='')}"


async def _room(client: Any, **body: Any) -> str:
    r = await client.post(f"{V3}/createRoom", json=body)
    assert r.status_code == 200, r.text
    room_id: str = r.json()["room_id"]
    return room_id


async def test_aliases_over_http(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    carol = await _user(server, "carol")
    async with alice.client as a, bob.client as b, carol.client as c, server.client() as anon:
        room = await _room(a, preset="public_chat", room_version="11")
        other = await _room(a, preset="private_chat")
        assert (await b.post(f"{V3}/rooms/{room}/join", json={})).status_code == 200

        # create, resolve (without a token), conflict
        r = await b.put(_alias_url("#bobs/room:test.local"), json={"room_id": room})
        assert r.status_code == 200 and r.json() == {}, r.text
        r = await anon.get(_alias_url("#bobs/room:test.local"))
        assert r.status_code == 200 and r.json() == {"room_id": room, "servers": ["test.local"]}
        r = await a.put(_alias_url("#bobs/room:test.local"), json={"room_id": other})
        assert r.status_code == 409 and r.json()["errcode"] == "M_UNKNOWN"

        # failures of PUT
        for url, body, status, errcode in (
            (_alias_url("#x:elsewhere.example"), {"room_id": room}, 400, "M_INVALID_PARAM"),
            (_alias_url("no-sigil:test.local"), {"room_id": room}, 400, "M_INVALID_PARAM"),
            (_alias_url("#x:test.local"), {"room_id": "nonsense"}, 400, "M_INVALID_PARAM"),
            (_alias_url("#x:test.local"), {}, 400, "M_MISSING_PARAM"),
            (_alias_url("#x:test.local"), {"room_id": 5}, 400, "M_BAD_JSON"),
            (_alias_url("#x:test.local"), {"room_id": other}, 403, "M_FORBIDDEN"),  # not joined
            (_alias_url("#x:test.local"), {"room_id": "!unknown:test.local"}, 403, "M_FORBIDDEN"),
        ):
            r = await b.put(url, json=body)
            assert (r.status_code, r.json()["errcode"]) == (status, errcode), (url, body, r.text)
        r = await b.put(_alias_url("#x:test.local"), content=b"{nope")
        assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"
        r = await anon.put(_alias_url("#x:test.local"), json={"room_id": room})
        assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"

        # failures of GET
        r = await anon.get(_alias_url("#missing:test.local"))
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        # an alias of another server is asked of that server; one that cannot be reached is
        # 502, as in Synapse (tests/integration/federation/test_queries.py asks a live one)
        r = await anon.get(_alias_url("#remote:elsewhere.example"))
        assert r.status_code == 502 and r.json()["errcode"] == "M_UNKNOWN"
        r = await anon.get(_alias_url("not-an-alias"))
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"

        # local aliases: members, not outsiders
        await a.put(_alias_url("#alices:test.local"), json={"room_id": room})
        r = await b.get(f"{V3}/rooms/{room}/aliases")
        assert r.status_code == 200
        assert r.json() == {"aliases": ["#alices:test.local", "#bobs/room:test.local"]}
        r = await c.get(f"{V3}/rooms/{room}/aliases")
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        r = await c.get(f"{V3}/rooms/!unknown:test.local/aliases")
        assert r.status_code == 403

        # canonical alias: must point to the room
        url = f"{V3}/rooms/{room}/state/m.room.canonical_alias"
        r = await a.put(
            url, json={"alias": "#alices:test.local", "alt_aliases": ["#bobs/room:test.local"]}
        )
        assert r.status_code == 200, r.text
        await a.put(_alias_url("#elsewhere:test.local"), json={"room_id": other})
        r = await a.put(url, json={"alias": "#elsewhere:test.local"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_ALIAS"
        r = await a.put(url, json={"alt_aliases": ["#nowhere:test.local"]})
        assert r.status_code == 400 and r.json()["errcode"] == "M_BAD_ALIAS"
        r = await a.put(url, json={"alias": "bad alias"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"

        # delete: not bob's to delete (level 0); alice (moderator) may; then gone
        r = await b.delete(_alias_url("#alices:test.local"))
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"
        r = await b.delete(_alias_url("#bobs/room:test.local"))  # his own
        assert r.status_code == 200 and r.json() == {}
        r = await a.delete(_alias_url("#alices:test.local"))
        assert r.status_code == 200
        r = await a.delete(_alias_url("#alices:test.local"))
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        assert (await b.get(f"{V3}/rooms/{room}/aliases")).json() == {"aliases": []}


async def test_directory_visibility_and_public_rooms(server: RunningServer) -> None:
    alice = await _user(server, "alice")
    bob = await _user(server, "bob")
    async with alice.client as a, bob.client as b, server.client() as anon:
        rooms = [
            await _room(a, preset="public_chat", name=f"Room {i}", topic=f"topic {i}")
            for i in range(4)
        ]
        private = await _room(a, preset="private_chat", name="hidden")
        for room_id in rooms[:3]:
            r = await a.put(f"{V3}/directory/list/room/{room_id}", json={"visibility": "public"})
            assert r.status_code == 200 and r.json() == {}, r.text
        assert (await b.post(f"{V3}/rooms/{rooms[1]}/join", json={})).status_code == 200

        r = await anon.get(f"{V3}/directory/list/room/{rooms[0]}")
        assert r.json() == {"visibility": "public"}
        r = await anon.get(f"{V3}/directory/list/room/{private}")
        assert r.json() == {"visibility": "private"}
        r = await anon.get(f"{V3}/directory/list/room/!unknown:test.local")
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        r = await a.put(f"{V3}/directory/list/room/!unknown:test.local", json={})
        assert r.status_code == 404
        r = await b.put(f"{V3}/directory/list/room/{rooms[3]}", json={"visibility": "public"})
        assert r.status_code == 403 and r.json()["errcode"] == "M_FORBIDDEN"  # not a moderator
        r = await a.put(f"{V3}/directory/list/room/{rooms[3]}", json={"visibility": "hidden"})
        assert r.status_code == 400 and r.json()["errcode"] == "M_INVALID_PARAM"

        # GET: largest first, exact chunk keys, paging with next_batch / prev_batch
        r = await a.get(f"{V3}/publicRooms", params={"limit": 2})
        assert r.status_code == 200, r.text
        first = r.json()
        assert first["total_room_count_estimate"] == 3 and "prev_batch" not in first
        assert first["chunk"][0]["room_id"] == rooms[1]
        chunk = first["chunk"][0]
        assert chunk == {
            "room_id": rooms[1],
            "num_joined_members": 2,
            "world_readable": False,
            "guest_can_join": False,
            "name": "Room 1",
            "topic": "topic 1",
            "join_rule": "public",
        }
        r = await a.get(f"{V3}/publicRooms", params={"limit": 2, "since": first["next_batch"]})
        second = r.json()
        assert len(second["chunk"]) == 1 and "next_batch" not in second
        listed = {c["room_id"] for c in first["chunk"] + second["chunk"]}
        assert listed == set(rooms[:3])
        r = await a.get(f"{V3}/publicRooms", params={"limit": 2, "since": second["prev_batch"]})
        assert r.json()["chunk"] == first["chunk"]

        # POST: filters
        r = await a.post(f"{V3}/publicRooms", json={"filter": {"generic_search_term": "ROOM 2"}})
        assert [c["room_id"] for c in r.json()["chunk"]] == [rooms[2]]
        r = await a.post(f"{V3}/publicRooms", json={"filter": {"room_types": ["m.space"]}})
        assert r.json()["chunk"] == []
        r = await a.post(
            f"{V3}/publicRooms",
            json={"filter": {"room_types": [None]}, "include_all_networks": True},
        )
        assert len(r.json()["chunk"]) == 3
        r = await a.post(f"{V3}/publicRooms", params={"server": "test.local"}, json={"limit": 1})
        assert len(r.json()["chunk"]) == 1 and "next_batch" in r.json()

        # failures
        for method, params, body, status, errcode in (
            ("GET", {"limit": "many"}, None, 400, "M_INVALID_PARAM"),
            ("GET", {"since": "not-a-token"}, None, 400, "M_INVALID_PARAM"),
            ("GET", {"server": "other.example"}, None, 502, "M_UNKNOWN"),
            ("GET", {"server": "bad server name"}, None, 400, "M_INVALID_PARAM"),
            ("POST", {}, {"limit": "ten"}, 400, "M_BAD_JSON"),
            ("POST", {}, {"filter": []}, 400, "M_BAD_JSON"),
            ("POST", {}, {"filter": {"room_types": [1]}}, 400, "M_BAD_JSON"),
            ("POST", {}, {"filter": {"generic_search_term": 1}}, 400, "M_BAD_JSON"),
            ("POST", {}, {"include_all_networks": "yes"}, 400, "M_BAD_JSON"),
            (
                "POST",
                {},
                {"include_all_networks": True, "third_party_instance_id": "irc"},
                400,
                "M_INVALID_PARAM",
            ),
        ):
            r = await a.request(method, f"{V3}/publicRooms", params=params, json=body)
            assert (r.status_code, r.json()["errcode"]) == (status, errcode), (params, body, r.text)
        r = await a.post(f"{V3}/publicRooms", content=b"[")
        assert r.status_code == 400 and r.json()["errcode"] == "M_NOT_JSON"
        r = await anon.get(f"{V3}/publicRooms")
        assert r.status_code == 401 and r.json()["errcode"] == "M_MISSING_TOKEN"
        r = await anon.post(f"{V3}/publicRooms", json={})
        assert r.status_code == 401

        # unpublishing takes the room out
        await a.put(f"{V3}/directory/list/room/{rooms[0]}", json={"visibility": "private"})
        r = await a.get(f"{V3}/publicRooms")
        assert {c["room_id"] for c in r.json()["chunk"]} == {rooms[1], rooms[2]}


async def test_public_rooms_without_auth_when_configured(homeserver_factory: ServerFactory) -> None:
    server = await homeserver_factory(room_directory={"public_rooms_without_auth": True})
    async with server.client() as anon:
        r = await anon.get(f"{V3}/publicRooms")
        assert r.status_code == 200 and r.json() == {"chunk": [], "total_room_count_estimate": 0}


async def test_matrix_nio_directory(server: RunningServer) -> None:
    """nio builds ``PublicRoom(**chunk)``: any key outside the spec's would make it fail."""
    alice = await _user(server, "alice")
    async with alice.client as a:
        room = await _room(a, preset="public_chat", name="nio's room", topic="about nio")
        await a.put(f"{V3}/directory/list/room/{room}", json={"visibility": "public"})
        await a.put(f"{V3}/rooms/{room}/state/m.room.avatar", json={"url": "mxc://test.local/x"})
        await a.put(
            f"{V3}/rooms/{room}/state/m.room.history_visibility",
            json={"history_visibility": "world_readable"},
        )

    async def scenario(base_url: str, user_id: str, token: str) -> None:
        client = AsyncClient(base_url, user_id, config=AsyncClientConfig(store_sync_tokens=False))
        client.access_token = token
        client.user_id = user_id
        try:
            put = await client.room_put_alias("#nio:test.local", room)
            assert isinstance(put, RoomPutAliasResponse), put
            resolved = await client.room_resolve_alias("#nio:test.local")
            assert isinstance(resolved, RoomResolveAliasResponse), resolved
            assert resolved.room_id == room and resolved.servers == ["test.local"]
            await client.room_put_state(
                room, "m.room.canonical_alias", {"alias": "#nio:test.local"}
            )
            listed = await client.list_public_rooms(limit=5)
            assert isinstance(listed, PublicRoomsResponse), listed
            [entry] = listed.public_rooms
            assert entry.room_id == room and entry.name == "nio's room"
            assert entry.topic == "about nio" and entry.avatar_url == "mxc://test.local/x"
            assert entry.canonical_alias == "#nio:test.local" and entry.world_readable
            assert entry.join_rule == "public" and entry.num_joined_members == 1
            filtered = await client.list_public_rooms(filter_generic_search_term="NIO")
            assert isinstance(filtered, PublicRoomsResponse), filtered
            assert [r.room_id for r in filtered.public_rooms] == [room]
            assert filtered.total_room_count_estimate == 1
            await client.room_put_state(room, "m.room.canonical_alias", {})
            deleted = await client.room_delete_alias("#nio:test.local")
            assert isinstance(deleted, RoomDeleteAliasResponse), deleted
        finally:
            await client.close()

    await trio.to_thread.run_sync(
        lambda: asyncio.run(scenario(server.base_url, alice.user_id, alice.token))
    )
