"""UserStore, on every backend."""

from __future__ import annotations

import pytest

from homeserver.storage import PhoneInUse, Stores, UniqueViolation, UserIdTaken, UserRow


async def test_create_and_get(stores: Stores) -> None:
    created = await stores.users.create_user(
        "@alice:x", password_hash="h", created_ts=123, phone="+15550001"
    )
    assert created == UserRow("@alice:x", "h", 123, False, False, False, "+15550001", 123)
    assert await stores.users.get_user("@alice:x") == created
    assert await stores.users.get_user_by_phone("+15550001") == created
    assert await stores.users.get_user("@bob:x") is None
    assert await stores.users.get_user_by_phone("+1") is None


async def test_duplicates(stores: Stores) -> None:
    await stores.users.create_user("@alice:x", password_hash=None, created_ts=1, phone="+1")
    with pytest.raises(UserIdTaken):
        await stores.users.create_user("@alice:x", password_hash=None, created_ts=2)
    with pytest.raises(PhoneInUse) as info:
        await stores.users.create_user("@bob:x", password_hash=None, created_ts=2, phone="+1")
    assert isinstance(info.value, UniqueViolation)
    # two accounts without a phone number are fine
    await stores.users.create_user("@c:x", password_hash=None, created_ts=1)
    await stores.users.create_user("@d:x", password_hash=None, created_ts=1)


async def test_changes(stores: Stores) -> None:
    await stores.users.create_user("@a:x", password_hash="old", created_ts=1, phone="+1")
    assert await stores.users.set_password_hash("@a:x", "new")
    assert not await stores.users.set_password_hash("@nobody:x", "new")
    assert await stores.users.set_admin("@a:x", True)
    user = await stores.users.get_user("@a:x")
    assert user is not None and user.password_hash == "new" and user.is_admin is True
    assert await stores.users.deactivate_user("@a:x")
    user = await stores.users.get_user("@a:x")
    assert user == UserRow("@a:x", None, 1, True, False, True, None)
    # the number is free again
    await stores.users.create_user("@b:x", password_hash=None, created_ts=1, phone="+1")


async def test_count(stores: Stores) -> None:
    await stores.users.create_user("@a:x", password_hash=None, created_ts=1)
    await stores.users.create_user("@g:x", password_hash=None, created_ts=1, is_guest=True)
    assert await stores.users.count_users() == 1
    assert await stores.users.count_users(guests=True) == 1


async def test_upgrade_guest(stores: Stores) -> None:
    await stores.users.create_user("@g:x", password_hash=None, created_ts=1, is_guest=True)
    await stores.users.create_user("@full:x", password_hash="old", created_ts=1)
    assert await stores.users.upgrade_guest("@g:x", "h") is True
    row = await stores.users.get_user("@g:x")
    assert (row.is_guest, row.password_hash) == (False, "h")
    # only guests: a full account, an upgraded one and an unknown one are left alone
    assert await stores.users.upgrade_guest("@full:x", "new") is False
    assert (await stores.users.get_user("@full:x")).password_hash == "old"
    assert await stores.users.upgrade_guest("@g:x", "again") is False
    assert (await stores.users.get_user("@g:x")).password_hash == "h"
    assert await stores.users.upgrade_guest("@nobody:x", "h") is False


async def test_uia_session_data(stores: Stores) -> None:
    await stores.uia.create_session(
        "s", request_key="k", user_id=None, description="", created_ts=1, expires_ts=100
    )
    await stores.uia.complete_stage("s", "m.login.dummy", "{}", now=2)
    await stores.uia.set_data("s", '{"params":{"a":1}}', now=3)
    await stores.uia.set_data("s", '{"params":{"a":2}}', now=4)
    row = await stores.uia.get_session("s")
    assert row.stages == (("m.login.dummy", "{}"),) and row.data == '{"params":{"a":2}}'
    await stores.uia.settle("s", '{"outcome":{}}', now=5)
    row = await stores.uia.get_session("s")
    assert row.stages == () and row.data == '{"outcome":{}}'
    assert await stores.uia.delete_expired(100, collect_stage="m.login.dummy") == []
    assert await stores.uia.get_session("s") is None
