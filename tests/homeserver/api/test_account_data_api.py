"""Account data and room tags over HTTP."""

from __future__ import annotations

import pytest

from homeserver.streams import StreamName
from tests.homeserver.api._account_surface import Harness, serve

ROOM = "!abc:test.local"
V12_ROOM = "!" + "A" * 43


@pytest.fixture
async def hs(db, stores):
    async with serve(db, stores) as harness:
        yield harness


def ad(user: str, data_type: str, room: str | None = None) -> str:
    if room is None:
        return f"/_matrix/client/v3/user/{user}/account_data/{data_type}"
    return f"/_matrix/client/v3/user/{user}/rooms/{room}/account_data/{data_type}"


async def test_global_and_room_account_data(hs: Harness) -> None:
    alice = await hs.user("alice")
    c, h = hs.client, hs.auth(await hs.login(alice))
    start = await hs.stores.streams.current_position(StreamName.ACCOUNT_DATA)

    r = await c.get(ad(alice, "org.example.cfg"), headers=h)
    assert (r.status_code, r.json()["errcode"]) == (404, "M_NOT_FOUND")
    assert (await c.put(ad(alice, "org.example.cfg"), headers=h, json={"a": 1})).json() == {}
    assert (await c.put(ad(alice, "org.example.cfg", ROOM), headers=h, json={"r": 1})).json() == {}
    assert (await c.put(ad(alice, "org.example.cfg", V12_ROOM), headers=h, json={})).json() == {}
    assert (await c.put(ad(alice, "org.example.cfg"), headers=h, json={"a": 2})).json() == {}
    assert (await c.get(ad(alice, "org.example.cfg"), headers=h)).json() == {"a": 2}
    assert (await c.get(ad(alice, "org.example.cfg", ROOM), headers=h)).json() == {"r": 1}
    # room data does not fall back to global data, nor the other way
    r = await c.get(ad(alice, "org.example.other", ROOM), headers=h)
    assert r.status_code == 404
    assert await hs.stores.streams.current_position(StreamName.ACCOUNT_DATA) == start + 4


async def test_account_data_errors(hs: Harness) -> None:
    alice = await hs.user("alice")
    bob = await hs.user("bob")
    c, h = hs.client, hs.auth(await hs.login(alice))
    bob_h = hs.auth(await hs.login(bob))
    await c.put(ad(bob, "org.x"), headers=bob_h, json={"secret": True})
    start = await hs.stores.streams.current_position(StreamName.ACCOUNT_DATA)
    cases = [
        ("GET", ad(bob, "org.x"), None, 403, "M_FORBIDDEN"),
        ("PUT", ad(bob, "org.x"), {"a": 1}, 403, "M_FORBIDDEN"),
        ("GET", ad(bob, "org.x", ROOM), None, 403, "M_FORBIDDEN"),
        ("PUT", ad(bob, "org.x", ROOM), {"a": 1}, 403, "M_FORBIDDEN"),
        ("PUT", ad(alice, "m.fully_read"), {"event_id": "$x"}, 405, "M_BAD_JSON"),
        ("PUT", ad(alice, "m.fully_read", ROOM), {"event_id": "$x"}, 405, "M_BAD_JSON"),
        ("PUT", ad(alice, "m.push_rules"), {}, 405, "M_BAD_JSON"),
        ("PUT", ad(alice, "org.x", "@notaroom:test.local"), {}, 400, "M_INVALID_PARAM"),
        ("GET", ad(alice, "org.x", "!nocolon"), None, 400, "M_INVALID_PARAM"),
    ]
    for method, path, body, status, errcode in cases:
        r = await c.request(method, path, headers=h, json=body)
        assert (r.status_code, r.json().get("errcode")) == (status, errcode), (method, path, r.text)
    for content in (b"[1]", b"nope", b'"s"'):
        r = await c.put(ad(alice, "org.x"), headers=h, content=content)
        assert r.status_code == 400 and r.json()["errcode"] in ("M_BAD_JSON", "M_NOT_JSON")
    # nothing was written
    assert await hs.stores.streams.current_position(StreamName.ACCOUNT_DATA) == start
    assert (await c.get(ad(bob, "org.x"), headers=bob_h)).json() == {"secret": True}


async def test_tags(hs: Harness) -> None:
    alice = await hs.user("alice")
    bob = await hs.user("bob")
    c, h = hs.client, hs.auth(await hs.login(alice))
    tags = f"/_matrix/client/v3/user/{alice}/rooms/{ROOM}/tags"

    assert (await c.get(tags, headers=h)).json() == {"tags": {}}
    assert (await c.put(f"{tags}/m.favourite", headers=h, json={"order": 0.25})).json() == {}
    assert (await c.put(f"{tags}/u.work", headers=h, json={})).json() == {}
    assert (await c.put(f"{tags}/u.zero", headers=h, json={"order": 0})).status_code == 200
    assert (await c.get(tags, headers=h)).json() == {
        "tags": {"m.favourite": {"order": 0.25}, "u.work": {}, "u.zero": {"order": 0.0}}
    }
    # tags are the room's m.tag account data
    r = await c.get(ad(alice, "m.tag", ROOM), headers=h)
    assert r.json()["tags"]["m.favourite"] == {"order": 0.25}
    assert (await c.delete(f"{tags}/u.work", headers=h)).json() == {}
    assert (await c.delete(f"{tags}/u.never", headers=h)).status_code == 200
    assert set((await c.get(tags, headers=h)).json()["tags"]) == {"m.favourite", "u.zero"}

    bad = [
        ("PUT", f"{tags}/u.x", {"order": 1.5}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{tags}/u.x", {"order": -0.1}, 400, "M_INVALID_PARAM"),
        ("PUT", f"{tags}/u.x", {"order": "first"}, 400, "M_BAD_JSON"),
        ("PUT", f"{tags}/u.x", {"order": True}, 400, "M_BAD_JSON"),
        ("PUT", f"{tags}/" + "t" * 256, {}, 400, "M_INVALID_PARAM"),
        ("GET", f"/_matrix/client/v3/user/{bob}/rooms/{ROOM}/tags", None, 403, "M_FORBIDDEN"),
        ("PUT", f"/_matrix/client/v3/user/{bob}/rooms/{ROOM}/tags/u.x", {}, 403, "M_FORBIDDEN"),
        (
            "DELETE",
            f"/_matrix/client/v3/user/{bob}/rooms/{ROOM}/tags/u.x",
            None,
            403,
            "M_FORBIDDEN",
        ),
        ("GET", f"/_matrix/client/v3/user/{alice}/rooms/bad/tags", None, 400, "M_INVALID_PARAM"),
    ]
    for method, path, body, status, errcode in bad:
        r = await c.request(method, path, headers=h, json=body)
        assert (r.status_code, r.json().get("errcode")) == (status, errcode), (method, path, r.text)
    assert set((await c.get(tags, headers=h)).json()["tags"]) == {"m.favourite", "u.zero"}
