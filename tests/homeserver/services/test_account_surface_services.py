"""DeviceService, ProfileService, AccountDataService, OpenIdService and UserDirectoryService
over the real stores, on every backend."""

from __future__ import annotations

import pytest

from homeserver.clock import FakeClock
from homeserver.errors import BadJson, Forbidden, InvalidParam, MatrixError, NotFound, UnknownToken
from homeserver.services.account_data import AccountDataService, Tag
from homeserver.services.devices import Device, DeviceService
from homeserver.services.openid import OpenIdService
from homeserver.services.profile import (
    KeyTooLarge,
    ProfileService,
    ProfileTooLarge,
    check_key,
    is_mxc_uri,
)
from homeserver.services.requester import Requester
from homeserver.services.user_directory import UserDirectoryService
from homeserver.storage import Stores

ALICE = Requester("@alice:hs", "A1")
BOB = Requester("@bob:hs", "B1")


@pytest.fixture
async def users(stores: Stores) -> Stores:
    for r in (ALICE, BOB):
        await stores.users.create_user(r.user_id, password_hash=None, created_ts=1)
    return stores


# --- devices -------------------------------------------------------------------------------------


async def test_device_service(users: Stores) -> None:
    svc = DeviceService(users.devices)
    await users.devices.create_device(ALICE.user_id, "A1")
    await users.devices.create_device(ALICE.user_id, "A2")
    assert await svc.list_devices(ALICE.user_id) == [
        Device("A1", None, None, None),
        Device("A2", None, None, None),
    ]
    await svc.rename_device(ALICE.user_id, "A1", "phone")
    assert (await svc.get_device(ALICE.user_id, "A1")).display_name == "phone"
    with pytest.raises(NotFound):
        await svc.get_device(BOB.user_id, "A1")
    with pytest.raises(NotFound):
        await svc.rename_device(BOB.user_id, "A1", "mine now")
    with pytest.raises(InvalidParam):
        await svc.rename_device(ALICE.user_id, "A1", "x" * 101)
    assert await svc.delete_devices(BOB.user_id, ["A1"]) == []
    assert await svc.delete_devices(ALICE.user_id, []) == []
    assert await svc.delete_devices(ALICE.user_id, ["A2", "nope"]) == ["A2"]
    assert [d.device_id for d in await svc.list_devices(ALICE.user_id)] == ["A1"]


# --- profiles ------------------------------------------------------------------------------------


class RecordingListener:
    def __init__(self) -> None:
        self.changes: list[tuple[str, str, object]] = []

    async def profile_changed(self, user_id: str, field: str, value: object) -> None:
        self.changes.append((user_id, field, value))


def test_keys_and_mxc() -> None:
    for ok in ("displayname", "avatar_url", "m.tz", "org.example.x_y", "com.a-b.c", "m.custom"):
        check_key(ok)
    for bad in ("Displayname", "nodots", "org..x", ".org.x", "org.x.", "1org.x", "org.x/y", ""):
        with pytest.raises(InvalidParam):
            check_key(bad)
    with pytest.raises(KeyTooLarge):
        check_key("org." + "x" * 252)
    assert is_mxc_uri("mxc://example.org:8448/AbC_-9")
    assert is_mxc_uri("mxc://[::1]/media")
    for bad in (
        "mxc://example.org/",
        "mxc://ex ample.org/a",
        "mxc:/example.org/a",
        "http://example.org/a",
        "mxc://example.org/a/b",
        "mxc://example.org/a.png",
    ):
        assert not is_mxc_uri(bad), bad


async def test_profile_service(users: Stores) -> None:
    listener = RecordingListener()
    svc = ProfileService(users.users, users.profiles, "hs", [listener])
    await svc.set_field(ALICE, ALICE.user_id, "displayname", "Alice")
    await svc.set_field(ALICE, ALICE.user_id, "org.example.list", [1, 2])
    await svc.set_field(ALICE, ALICE.user_id, "displayname", "")
    await svc.delete_field(ALICE, ALICE.user_id, "org.example.list")
    await svc.delete_field(ALICE, ALICE.user_id, "org.example.list")  # not set: no announcement
    assert listener.changes == [
        ("@alice:hs", "displayname", "Alice"),
        ("@alice:hs", "org.example.list", [1, 2]),
        ("@alice:hs", "displayname", None),
        ("@alice:hs", "org.example.list", None),
    ]
    assert (await svc.get_profile(ALICE.user_id)).fields == {}

    with pytest.raises(Forbidden):
        await svc.set_field(BOB, ALICE.user_id, "displayname", "pwned")
    with pytest.raises(Forbidden):
        await svc.delete_field(BOB, ALICE.user_id, "displayname")
    with pytest.raises(BadJson):
        await svc.set_field(ALICE, ALICE.user_id, "displayname", {"not": "a string"})
    with pytest.raises(InvalidParam):
        await svc.set_field(ALICE, ALICE.user_id, "avatar_url", "not-mxc")
    with pytest.raises(ProfileTooLarge):
        await svc.set_field(ALICE, ALICE.user_id, "org.example.big", "x" * 65536)
    with pytest.raises(NotFound):
        await svc.get_profile("@nobody:hs")
    with pytest.raises(NotFound):
        await svc.get_profile("@alice:elsewhere")
    with pytest.raises(NotFound):
        await svc.get_field(ALICE.user_id, "displayname")
    with pytest.raises(InvalidParam):
        await svc.get_profile("alice")
    assert len(listener.changes) == 4


async def test_profile_too_large_counts_existing_fields(users: Stores) -> None:
    svc = ProfileService(users.users, users.profiles, "hs")
    for i in range(3):
        await svc.set_field(ALICE, ALICE.user_id, f"org.example.f{i}", "x" * 20_000)
    with pytest.raises(ProfileTooLarge):
        await svc.set_field(ALICE, ALICE.user_id, "org.example.f3", "x" * 10_000)
    # replacing one of them with something smaller is fine
    await svc.set_field(ALICE, ALICE.user_id, "org.example.f0", "small")
    await svc.set_field(ALICE, ALICE.user_id, "org.example.f3", "x" * 10_000)
    assert len((await svc.get_profile(ALICE.user_id)).fields) == 4


# --- account data and tags -----------------------------------------------------------------------


async def test_account_data_service(users: Stores) -> None:
    svc = AccountDataService(users.account_data)
    room = "!r:hs"
    await svc.put(ALICE, ALICE.user_id, "org.x", {"a": 1})
    await svc.put(ALICE, ALICE.user_id, "org.x", {"b": 1}, room)
    assert await svc.get(ALICE, ALICE.user_id, "org.x") == {"a": 1}
    assert await svc.get(ALICE, ALICE.user_id, "org.x", room) == {"b": 1}
    with pytest.raises(Forbidden):
        await svc.get(BOB, ALICE.user_id, "org.x")
    with pytest.raises(NotFound):
        await svc.get(ALICE, ALICE.user_id, "org.y")
    for managed in ("m.fully_read", "m.push_rules"):
        with pytest.raises(MatrixError) as info:
            await svc.put(ALICE, ALICE.user_id, managed, {}, room)
        assert (info.value.status, info.value.errcode) == (405, "M_BAD_JSON")
    with pytest.raises(InvalidParam):
        await svc.put(ALICE, ALICE.user_id, "org.x", {}, "#alias:hs")


async def test_tags_keep_other_content_and_tags(users: Stores) -> None:
    svc = AccountDataService(users.account_data)
    room = "!r:hs"
    # an m.tag written directly, with an extra key a client put there
    await svc.put(ALICE, ALICE.user_id, "m.tag", {"tags": {"u.old": {}}, "x": 1}, room)
    await svc.add_tag(ALICE, ALICE.user_id, room, "m.favourite", Tag(0.5, {"color": "red"}))
    assert await svc.get_tags(ALICE, ALICE.user_id, room) == {
        "u.old": {},
        "m.favourite": {"color": "red", "order": 0.5},
    }
    await svc.remove_tag(ALICE, ALICE.user_id, room, "u.old")
    assert await svc.get(ALICE, ALICE.user_id, "m.tag", room) == {
        "tags": {"m.favourite": {"color": "red", "order": 0.5}},
        "x": 1,
    }
    with pytest.raises(InvalidParam):
        await svc.add_tag(ALICE, ALICE.user_id, room, "u.x", Tag(2.0))
    with pytest.raises(Forbidden):
        await svc.add_tag(BOB, ALICE.user_id, room, "u.x", Tag())
    # malformed stored content reads as no tags
    await svc.put(ALICE, ALICE.user_id, "m.tag", {"tags": "nope"}, room)
    assert await svc.get_tags(ALICE, ALICE.user_id, room) == {}
    await svc.add_tag(ALICE, ALICE.user_id, room, "u.x", Tag())
    assert await svc.get_tags(ALICE, ALICE.user_id, room) == {"u.x": {}}


# --- OpenID and the directory --------------------------------------------------------------------


async def test_openid_service(users: Stores) -> None:
    clock = FakeClock()
    svc = OpenIdService(users.openid, clock, "hs")
    token = await svc.request_token(ALICE, ALICE.user_id)
    assert (token.expires_in_s, token.matrix_server_name) == (3600, "hs")
    assert await svc.user_of_token(token.access_token) == ALICE.user_id
    with pytest.raises(Forbidden):
        await svc.request_token(ALICE, BOB.user_id)
    clock.advance(3599)
    assert await svc.user_of_token(token.access_token) == ALICE.user_id
    clock.advance(1)
    with pytest.raises(UnknownToken):
        await svc.user_of_token(token.access_token)
    assert await svc.delete_expired() == 1


async def test_user_directory_service(users: Stores) -> None:
    svc = UserDirectoryService(users.user_directory, search_all_users=True)
    result = await svc.search(ALICE.user_id, "ALI")
    assert [e.user_id for e in result.results] == ["@alice:hs"] and not result.limited
    assert (await svc.search(ALICE.user_id, "", 10)).results == ()
    result = await svc.search(ALICE.user_id, ":hs", 1)
    assert len(result.results) == 1 and result.limited
    assert len((await svc.search(ALICE.user_id, ":hs", 1000)).results) == 2
    with pytest.raises(InvalidParam):
        await svc.search(ALICE.user_id, "a", -1)
