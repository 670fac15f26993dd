"""Capabilities, OpenID (client and federation sides) and the user directory over HTTP."""

from __future__ import annotations

import pytest

from tests.homeserver.api._account_surface import Harness, serve


@pytest.fixture
async def hs(db, stores):
    async with serve(db, stores) as harness:
        yield harness


async def test_capabilities(hs: Harness) -> None:
    alice = await hs.user("alice")
    h = hs.auth(await hs.login(alice))
    r = await hs.client.get("/_matrix/client/v3/capabilities", headers=h)
    assert r.status_code == 200
    caps = r.json()["capabilities"]
    assert caps["m.room_versions"] == {
        "default": "12",
        "available": {str(n): "stable" for n in range(1, 13)},
    }
    assert caps["m.change_password"] == {"enabled": True}
    assert caps["m.set_displayname"] == caps["m.set_avatar_url"] == {"enabled": True}
    assert caps["m.3pid_changes"] == caps["m.get_login_token"] == {"enabled": False}
    assert caps["m.profile_fields"] == {"enabled": True}
    assert (await hs.client.get("/_matrix/client/v3/capabilities")).status_code == 401


async def test_openid_token_roundtrip(hs: Harness) -> None:
    alice = await hs.user("alice")
    bob = await hs.user("bob")
    h = hs.auth(await hs.login(alice))
    c = hs.client
    r = await c.post(f"/_matrix/client/v3/user/{alice}/openid/request_token", headers=h, json={})
    assert r.status_code == 200
    token = r.json()
    assert token["token_type"] == "Bearer"
    assert token["matrix_server_name"] == "test.local"
    assert token["expires_in"] == 3600
    # no body is accepted too
    r = await c.post(f"/_matrix/client/v3/user/{alice}/openid/request_token", headers=h)
    assert r.status_code == 200 and r.json()["access_token"] != token["access_token"]

    info = "/_matrix/federation/v1/openid/userinfo"
    r = await c.get(info, params={"access_token": token["access_token"]})
    assert (r.status_code, r.json()) == (200, {"sub": alice})
    # the OpenID token is not an access token
    r = await c.get("/_matrix/client/v3/capabilities", headers=hs.auth(token["access_token"]))
    assert r.status_code == 401
    for params, errcode in (
        ({"access_token": "wrong"}, "M_UNKNOWN_TOKEN"),
        ({"access_token": ""}, "M_UNKNOWN_TOKEN"),
        ({}, "M_MISSING_TOKEN"),
    ):
        r = await c.get(info, params=params)
        assert (r.status_code, r.json()["errcode"]) == (401, errcode)
    # expired after an hour
    hs.clock.advance(3600)
    r = await c.get(info, params={"access_token": token["access_token"]})
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    # only for yourself
    r = await c.post(f"/_matrix/client/v3/user/{bob}/openid/request_token", headers=h, json={})
    assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
    r = await c.post(
        f"/_matrix/client/v3/user/{alice}/openid/request_token", headers=h, content=b"[]"
    )
    assert (r.status_code, r.json()["errcode"]) == (400, "M_BAD_JSON")


async def test_user_directory(hs: Harness) -> None:
    alice = await hs.user("alice")
    h = hs.auth(await hs.login(alice))
    for i in range(12):
        await hs.user(f"user{i:02d}")
    await hs.user("zed")
    await hs.client.put(
        f"/_matrix/client/v3/profile/{alice}/displayname",
        headers=h,
        json={"displayname": "Zed's Friend"},
    )
    await hs.client.put(
        f"/_matrix/client/v3/profile/{alice}/avatar_url",
        headers=h,
        json={"avatar_url": "mxc://test.local/av"},
    )
    search = "/_matrix/client/v3/user_directory/search"
    r = await hs.client.post(search, headers=h, json={"search_term": "ZED"})
    assert r.json() == {
        "results": [
            {"user_id": alice, "display_name": "Zed's Friend", "avatar_url": "mxc://test.local/av"},
            {"user_id": "@zed:test.local"},
        ],
        "limited": False,
    }
    r = await hs.client.post(search, headers=h, json={"search_term": "user"})
    assert len(r.json()["results"]) == 10 and r.json()["limited"] is True
    r = await hs.client.post(search, headers=h, json={"search_term": "user", "limit": 20})
    assert len(r.json()["results"]) == 12 and r.json()["limited"] is False
    r = await hs.client.post(search, headers=h, json={"search_term": "  "})
    assert r.json() == {"results": [], "limited": False}
    for body, errcode in [
        ({}, "M_MISSING_PARAM"),
        ({"search_term": 5}, "M_BAD_JSON"),
        ({"search_term": "a", "limit": "5"}, "M_BAD_JSON"),
        ({"search_term": "a", "limit": -1}, "M_INVALID_PARAM"),
    ]:
        r = await hs.client.post(search, headers=h, json=body)
        assert (r.status_code, r.json()["errcode"]) == (400, errcode)
    assert (await hs.client.post(search, json={"search_term": "a"})).status_code == 401
