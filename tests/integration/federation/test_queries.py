"""Profile, alias and room-directory queries between two of our servers over TLS."""

from __future__ import annotations

from urllib.parse import quote

from tests.integration.federation.conftest import FederatedServer

V3 = "/_matrix/client/v3"
Q = "/_matrix/federation/v1"


async def test_profile_alias_and_public_rooms_queries(
    two_servers: tuple[FederatedServer, FederatedServer],
) -> None:
    a, b = two_servers
    async with b.client() as c:
        r = await c.post(
            f"{V3}/register",
            json={
                "username": "bob",
                "password": "correct horse",
                "auth": {"type": "m.login.dummy"},
            },
        )
        assert r.status_code == 200, r.text
        bob = r.json()
        c.headers["Authorization"] = f"Bearer {bob['access_token']}"
        r = await c.put(
            f"{V3}/profile/{quote(bob['user_id'])}/displayname", json={"displayname": "Bob"}
        )
        assert r.status_code == 200
        r = await c.post(
            f"{V3}/createRoom",
            json={
                "preset": "public_chat",
                "room_alias_name": "lobby",
                "name": "Lobby",
                "visibility": "public",
            },
        )
        assert r.status_code == 200, r.text
        room_id = r.json()["room_id"]

    # profiles: all fields, one field, unknown users and fields
    r = await a.signed_request(b, "GET", f"{Q}/query/profile?user_id={quote(bob['user_id'])}")
    assert r.status_code == 200, r.text
    assert r.json() == {"displayname": "Bob"}
    target = f"{Q}/query/profile?user_id={quote(bob['user_id'])}&field=displayname"
    assert (await a.signed_request(b, "GET", target)).json() == {"displayname": "Bob"}
    target = f"{Q}/query/profile?user_id={quote(bob['user_id'])}&field=avatar_url"
    r = await a.signed_request(b, "GET", target)
    assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    target = f"{Q}/query/profile?user_id={quote(bob['user_id'])}&field=password"
    assert (await a.signed_request(b, "GET", target)).status_code == 400
    r = await a.signed_request(b, "GET", f"{Q}/query/profile?user_id=%40nobody%3A{b.server_name}")
    assert r.status_code == 404
    r = await a.signed_request(b, "GET", f"{Q}/query/profile")
    assert r.status_code == 400 and r.json()["errcode"] == "M_MISSING_PARAM"

    # aliases: ours only
    alias = f"#lobby:{b.server_name}"
    r = await a.signed_request(b, "GET", f"{Q}/query/directory?room_alias={quote(alias)}")
    assert r.status_code == 200, r.text
    assert r.json() == {"room_id": room_id, "servers": [b.server_name]}
    for other in (f"#nope:{b.server_name}", f"#lobby:{a.server_name}"):
        r = await a.signed_request(b, "GET", f"{Q}/query/directory?room_alias={quote(other)}")
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
    r = await a.signed_request(b, "GET", f"{Q}/query/directory?room_alias=lobby")
    assert r.status_code == 400

    # the published room list, GET and POST with a filter
    r = await a.signed_request(b, "GET", f"{Q}/publicRooms?limit=5")
    assert r.status_code == 200, r.text
    assert [x["room_id"] for x in r.json()["chunk"]] == [room_id]
    assert r.json()["chunk"][0]["name"] == "Lobby"
    body = {"filter": {"generic_search_term": "lob"}, "limit": 5}
    r = await a.signed_request(b, "POST", f"{Q}/publicRooms", body)
    assert [x["room_id"] for x in r.json()["chunk"]] == [room_id]
    body = {"filter": {"generic_search_term": "zzz"}}
    assert (await a.signed_request(b, "POST", f"{Q}/publicRooms", body)).json()["chunk"] == []

    # unsigned or badly signed queries change nothing and answer 401
    async with b.federation_client() as c:
        r = await c.get(f"{Q}/query/profile?user_id={quote(bob['user_id'])}")
        assert r.status_code == 401 and r.json()["errcode"] == "M_UNAUTHORIZED"
        assert (await c.get(f"{Q}/publicRooms")).status_code == 401

    # A's users see B's aliases and directory through A (A asks B over federation)
    async with a.client() as c:
        r = await c.post(
            f"{V3}/register",
            json={
                "username": "amy",
                "password": "correct horse",
                "auth": {"type": "m.login.dummy"},
            },
        )
        c.headers["Authorization"] = f"Bearer {r.json()['access_token']}"
        r = await c.get(f"{V3}/directory/room/{quote(alias)}")
        assert r.status_code == 200, r.text
        assert r.json() == {"room_id": room_id, "servers": [b.server_name]}
        r = await c.get(f"{V3}/directory/room/{quote(f'#nope:{b.server_name}')}")
        assert r.status_code == 404 and r.json()["errcode"] == "M_NOT_FOUND"
        r = await c.get(f"{V3}/publicRooms", params={"server": b.server_name})
        assert r.status_code == 200, r.text
        assert [x["room_id"] for x in r.json()["chunk"]] == [room_id]
        r = await c.post(
            f"{V3}/publicRooms",
            params={"server": b.server_name},
            json={"filter": {"generic_search_term": "lobby"}},
        )
        assert [x["name"] for x in r.json()["chunk"]] == ["Lobby"]
        # a server that does not answer: 502, not our error passed through
        r = await c.get(f"{V3}/publicRooms", params={"server": "127.0.0.1:1"})
        assert r.status_code == 502, r.text
        r = await c.get(f"{V3}/directory/room/{quote('#x:127.0.0.1:1')}")
        assert r.status_code == 502, r.text
