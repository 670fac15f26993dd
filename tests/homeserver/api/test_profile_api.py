"""Profiles over HTTP: display name, avatar, extended fields, limits and permissions."""

from __future__ import annotations

import pytest

from tests.homeserver.api._account_surface import Harness, serve

P = "/_matrix/client/v3/profile"


@pytest.fixture
async def hs(db, stores):
    async with serve(db, stores) as harness:
        yield harness


async def test_set_and_get(hs: Harness) -> None:
    alice = await hs.user("alice")
    c, h = hs.client, hs.auth(await hs.login(alice))
    assert (await c.get(f"{P}/{alice}")).json() == {}
    r = await c.get(f"{P}/{alice}/displayname")
    assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")

    for key, value in [
        ("displayname", "Alice 🐇"),
        ("avatar_url", "mxc://test.local/abc_DEF-1"),
        ("m.tz", "Europe/Berlin"),
        ("org.example.obj", {"nested": [1, None, True]}),
        ("org.example.null", None),
    ]:
        r = await c.put(f"{P}/{alice}/{key}", headers=h, json={key: value})
        assert (r.status_code, r.json()) == (200, {}), r.text
        # reading needs no token
        assert (await c.get(f"{P}/{alice}/{key}")).json() == {key: value}
    assert (await c.get(f"{P}/{alice}")).json() == {
        "displayname": "Alice 🐇",
        "avatar_url": "mxc://test.local/abc_DEF-1",
        "m.tz": "Europe/Berlin",
        "org.example.obj": {"nested": [1, None, True]},
        "org.example.null": None,
    }
    # empty display name / avatar: removed
    await c.put(f"{P}/{alice}/displayname", headers=h, json={"displayname": ""})
    await c.put(f"{P}/{alice}/avatar_url", headers=h, json={"avatar_url": None})
    r = await c.delete(f"{P}/{alice}/org.example.obj", headers=h)
    assert r.status_code == 200
    r = await c.delete(f"{P}/{alice}/org.example.obj", headers=h)
    assert r.status_code == 200
    assert (await c.get(f"{P}/{alice}")).json() == {
        "m.tz": "Europe/Berlin",
        "org.example.null": None,
    }


async def test_bad_requests_leave_profile_intact(hs: Harness) -> None:
    alice = await hs.user("alice")
    bob = await hs.user("bob")
    c, h = hs.client, hs.auth(await hs.login(alice))
    await c.put(f"{P}/{alice}/displayname", headers=h, json={"displayname": "Alice"})
    await c.put(f"{P}/{alice}/avatar_url", headers=h, json={"avatar_url": "mxc://test.local/a"})

    big = "x" * (64 * 1024)
    cases = [
        ("PUT", f"{P}/{bob}/displayname", {"displayname": "Mallory"}, 403, "M_FORBIDDEN"),
        ("DELETE", f"{P}/{bob}/displayname", None, 403, "M_FORBIDDEN"),
        ("PUT", f"{P}/{alice}/displayname", {"displayname": 5}, 400, "M_BAD_JSON"),
        ("PUT", f"{P}/{alice}/displayname", {"other": "x"}, 400, "M_MISSING_PARAM"),
        ("PUT", f"{P}/{alice}/displayname", {"displayname": "x" * 257}, 400, "M_INVALID_PARAM"),
        (
            "PUT",
            f"{P}/{alice}/avatar_url",
            {"avatar_url": "https://e.com/a.png"},
            400,
            "M_INVALID_PARAM",
        ),
        (
            "PUT",
            f"{P}/{alice}/avatar_url",
            {"avatar_url": "mxc://bad host/a"},
            400,
            "M_INVALID_PARAM",
        ),
        (
            "PUT",
            f"{P}/{alice}/avatar_url",
            {"avatar_url": "mxc://test.local/"},
            400,
            "M_INVALID_PARAM",
        ),
        ("PUT", f"{P}/{alice}/avatar_url", {"avatar_url": 7}, 400, "M_BAD_JSON"),
        ("PUT", f"{P}/{alice}/m.tz", {"m.tz": 1}, 400, "M_BAD_JSON"),
        ("PUT", f"{P}/{alice}/Not.Valid", {"Not.Valid": 1}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{P}/{alice}/nodots", {"nodots": 1}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{P}/{alice}/org." + "a" * 260, {"org." + "a" * 260: 1}, 400, "M_KEY_TOO_LARGE"),
        (
            "PUT",
            f"{P}/{alice}/org.example.big",
            {"org.example.big": big},
            400,
            "M_PROFILE_TOO_LARGE",
        ),
        ("PUT", f"{P}/@ghost:test.local/displayname", {"displayname": "x"}, 403, "M_FORBIDDEN"),
        ("GET", f"{P}/@ghost:test.local", None, 404, "M_NOT_FOUND"),
        ("GET", f"{P}/@ghost:test.local/displayname", None, 404, "M_NOT_FOUND"),
        ("GET", f"{P}/@someone:remote.example", None, 404, "M_NOT_FOUND"),
        ("GET", f"{P}/not-a-user-id", None, 400, "M_INVALID_PARAM"),
        ("GET", f"{P}/{alice}/Bad-Key", None, 400, "M_INVALID_PARAM"),
    ]
    for method, path, body, status, errcode in cases:
        r = await c.request(method, path, headers=h, json=body)
        assert (r.status_code, r.json().get("errcode")) == (status, errcode), (method, path, r.text)
    r = await c.put(f"{P}/{alice}/displayname", json={"displayname": "x"})
    assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")
    assert (await c.get(f"{P}/{alice}")).json() == {
        "displayname": "Alice",
        "avatar_url": "mxc://test.local/a",
    }
    assert (await c.get(f"{P}/{bob}")).json() == {}


async def test_deactivated_user_has_no_profile(hs: Harness) -> None:
    alice = await hs.user("alice")
    await hs.stores.users.deactivate_user(alice)
    r = await hs.client.get(f"{P}/{alice}")
    assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
