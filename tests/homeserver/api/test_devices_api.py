"""Device management over HTTP: list, get, rename, delete with user-interactive auth."""

from __future__ import annotations

import pytest

from homeserver.streams import StreamName
from tests.homeserver.api._account_surface import PASSWORD, Harness, serve


@pytest.fixture
async def hs(db, stores):
    async with serve(db, stores) as harness:
        yield harness


async def test_list_get_rename(hs: Harness) -> None:
    alice = await hs.user("alice")
    token = await hs.login(alice, "PHONE")
    await hs.login(alice, "LAPTOP")
    await hs.stores.devices.record_last_seen(alice, "LAPTOP", ts=1234, ip="10.1.2.3")
    c, h = hs.client, hs.auth(token)

    r = await c.get("/_matrix/client/v3/devices", headers=h)
    assert r.status_code == 200
    assert r.json() == {
        "devices": [
            {
                "device_id": "LAPTOP",
                "display_name": None,
                "last_seen_ip": "10.1.2.3",
                "last_seen_ts": 1234,
            },
            {
                "device_id": "PHONE",
                "display_name": None,
                "last_seen_ip": None,
                "last_seen_ts": None,
            },
        ]
    }
    before = await hs.stores.streams.current_position(StreamName.DEVICE_LISTS)
    r = await c.put("/_matrix/client/v3/devices/LAPTOP", headers=h, json={"display_name": "Mac"})
    assert (r.status_code, r.json()) == (200, {})
    assert await hs.stores.streams.current_position(StreamName.DEVICE_LISTS) == before + 1
    r = await c.get("/_matrix/client/v3/devices/LAPTOP", headers=h)
    assert r.json()["display_name"] == "Mac"
    # no display_name: unchanged
    r = await c.put("/_matrix/client/v3/devices/LAPTOP", headers=h, json={})
    assert r.status_code == 200
    assert (await c.get("/_matrix/client/v3/devices/LAPTOP", headers=h)).json()[
        "display_name"
    ] == "Mac"


async def test_bad_device_requests(hs: Harness) -> None:
    alice = await hs.user("alice")
    bob = await hs.user("bob")
    token = await hs.login(alice, "A1")
    await hs.login(bob, "B1")
    c, h = hs.client, hs.auth(token)

    cases = [
        (c.get("/_matrix/client/v3/devices/B1", headers=h), 404, "M_NOT_FOUND"),
        (
            c.put("/_matrix/client/v3/devices/B1", headers=h, json={"display_name": "x"}),
            404,
            "M_NOT_FOUND",
        ),
        (c.put("/_matrix/client/v3/devices/NEW", headers=h, json={}), 404, "M_NOT_FOUND"),
        (
            c.put("/_matrix/client/v3/devices/A1", headers=h, json={"display_name": 5}),
            400,
            "M_BAD_JSON",
        ),
        (
            c.put("/_matrix/client/v3/devices/A1", headers=h, json={"display_name": "x" * 101}),
            400,
            "M_INVALID_PARAM",
        ),
        (c.put("/_matrix/client/v3/devices/A1", headers=h, content=b"nope"), 400, "M_NOT_JSON"),
        (c.post("/_matrix/client/v3/delete_devices", headers=h, json={}), 400, "M_MISSING_PARAM"),
        (
            c.post("/_matrix/client/v3/delete_devices", headers=h, json={"devices": [1]}),
            400,
            "M_BAD_JSON",
        ),
        (c.get("/_matrix/client/v3/devices"), 401, "M_MISSING_TOKEN"),
        (c.get("/_matrix/client/v3/devices", headers=hs.auth("bogus")), 401, "M_UNKNOWN_TOKEN"),
    ]
    for request, status, errcode in cases:
        r = await request
        assert (r.status_code, r.json().get("errcode")) == (status, errcode), r.text
    # bob's device is untouched
    bob_device = await hs.stores.devices.get_device(bob, "B1")
    assert bob_device is not None and bob_device.display_name is None


async def test_delete_device_with_uia(hs: Harness) -> None:
    alice = await hs.user("alice")
    token = await hs.login(alice, "MAIN")
    old = await hs.login(alice, "OLD")
    c, h = hs.client, hs.auth(token)
    assert (await c.get("/_matrix/client/v3/devices", headers=hs.auth(old))).status_code == 200
    before = await hs.stores.streams.current_position(StreamName.DEVICE_LISTS)

    # no body: the UIA challenge
    r = await c.delete("/_matrix/client/v3/devices/OLD", headers=h)
    assert r.status_code == 401
    body = r.json()
    assert body["flows"] == [{"stages": ["m.login.password"]}]
    session = body["session"]
    # wrong password: 401 again, with errcode, and the device is still there
    wrong = {
        "auth": {
            "type": "m.login.password",
            "session": session,
            "password": "nope",
            "identifier": {"type": "m.id.user", "user": "alice"},
        }
    }
    r = await c.request("DELETE", "/_matrix/client/v3/devices/OLD", headers=h, json=wrong)
    assert r.status_code == 401 and r.json()["errcode"] == "M_FORBIDDEN"
    assert await hs.stores.devices.get_device(alice, "OLD") is not None

    good = {
        "auth": {
            "type": "m.login.password",
            "session": session,
            "password": PASSWORD,
            "identifier": {"type": "m.id.user", "user": alice},
        }
    }
    r = await c.request("DELETE", "/_matrix/client/v3/devices/OLD", headers=h, json=good)
    assert (r.status_code, r.json()) == (200, {})
    assert await hs.stores.devices.get_device(alice, "OLD") is None
    # its token is revoked; ours still works
    r = await c.get("/_matrix/client/v3/devices", headers=hs.auth(old))
    assert (r.status_code, r.json()["errcode"]) == (401, "M_UNKNOWN_TOKEN")
    assert [
        d["device_id"]
        for d in (await c.get("/_matrix/client/v3/devices", headers=h)).json()["devices"]
    ] == ["MAIN"]
    assert await hs.stores.streams.current_position(StreamName.DEVICE_LISTS) == before + 1
    # the session was used up: replaying it does not delete anything else
    r = await c.request("DELETE", "/_matrix/client/v3/devices/OLD", headers=h, json=good)
    assert r.status_code == 400


async def test_session_bound_to_devices(hs: Harness) -> None:
    alice = await hs.user("alice")
    token = await hs.login(alice, "MAIN")
    for d in ("D1", "D2", "D3"):
        await hs.login(alice, d)
    c, h = hs.client, hs.auth(token)
    r = await c.post("/_matrix/client/v3/delete_devices", headers=h, json={"devices": ["D1"]})
    assert r.status_code == 401
    session = r.json()["session"]
    auth = {
        "type": "m.login.password",
        "session": session,
        "password": PASSWORD,
        "identifier": {"type": "m.id.user", "user": "alice"},
    }
    # the same session for a different set of devices is refused
    r = await c.post(
        "/_matrix/client/v3/delete_devices", headers=h, json={"devices": ["D1", "D2"], "auth": auth}
    )
    assert r.status_code == 403
    r = await c.post(
        "/_matrix/client/v3/delete_devices",
        headers=h,
        json={"devices": ["D1", "D3", "GONE"], "auth": {**auth, "session": None}},
    )
    assert r.status_code == 200, r.text
    remaining = [d.device_id for d in await hs.stores.devices.list_devices(alice)]
    assert remaining == ["D2", "MAIN"]


async def test_other_user_cannot_delete_with_own_password(hs: Harness) -> None:
    alice = await hs.user("alice")
    await hs.user("mallory", password="mallory's password")
    await hs.login(alice, "A1")
    m_token = await hs.login("@mallory:test.local", "M1")
    body = {
        "devices": ["A1"],
        "auth": {
            "type": "m.login.password",
            "password": PASSWORD,
            "identifier": {"type": "m.id.user", "user": "alice"},
        },
    }
    r = await hs.client.post(
        "/_matrix/client/v3/delete_devices", headers=hs.auth(m_token), json=body
    )
    # alice's right password does not authenticate mallory: 403 outright, as Synapse
    assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
    # deleting only ever touches the requester's own devices anyway
    assert await hs.stores.devices.get_device(alice, "A1") is not None


async def test_whois(hs: Harness) -> None:
    alice = await hs.user("alice")
    bob = await hs.user("bob")
    token = await hs.login(alice, "PHONE")
    await hs.login(alice, "LAPTOP")
    await hs.stores.devices.record_last_seen(alice, "LAPTOP", ts=1234, ip="10.1.2.3")
    b_token = await hs.login(bob, "B1")
    url = f"/_matrix/client/v3/admin/whois/{alice}"
    expected = {
        "user_id": alice,
        "devices": {
            "LAPTOP": {"sessions": [{"connections": [{"ip": "10.1.2.3", "last_seen": 1234}]}]},
            "PHONE": {"sessions": [{"connections": []}]},
        },
    }
    # the user themself may look (a server admin too: tests/integration/test_accounts_api.py)
    r = await hs.client.get(url, headers=hs.auth(token))
    assert (r.status_code, r.json()) == (200, expected)
    # anyone else may not
    r = await hs.client.get(url, headers=hs.auth(b_token))
    assert (r.status_code, r.json()["errcode"]) == (403, "M_FORBIDDEN")
    r = await hs.client.get(url)
    assert (r.status_code, r.json()["errcode"]) == (401, "M_MISSING_TOKEN")
