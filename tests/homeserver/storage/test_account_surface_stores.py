"""Devices, profiles, account data, OpenID tokens and the user directory, on every backend."""

from __future__ import annotations

import pytest
import trio
from sqlalchemy import bindparam, insert, select

from homeserver.storage import Conn, Database, Stores
from homeserver.storage.account_data import GLOBAL
from homeserver.storage.devices import DeviceExists, DeviceRow
from homeserver.storage.profile import NoSuchUserError, ProfileTooLargeError, profile_size
from homeserver.storage.schema import access_tokens, refresh_tokens
from homeserver.storage.user_directory import DirectoryEntry, like_pattern
from homeserver.streams import StreamName

_ADD_REFRESH = insert(refresh_tokens).values(
    token_hash=bindparam("h"), user_id=bindparam("u"), device_id=bindparam("d"), created_ts=1
)
_ADD_ACCESS = insert(access_tokens).values(
    token_hash=bindparam("h"),
    user_id=bindparam("u"),
    device_id=bindparam("d"),
    created_ts=1,
    refresh_token_hash=bindparam("r"),
)
_ACCESS = select(access_tokens.c.token_hash).order_by(access_tokens.c.token_hash)
_REFRESH = select(refresh_tokens.c.token_hash).order_by(refresh_tokens.c.token_hash)


async def _user(stores: Stores, user_id: str, **kw) -> None:
    await stores.users.create_user(user_id, password_hash=None, created_ts=1, **kw)


async def _tokens(db: Database, user_id: str, device_id: str, name: str) -> None:
    async def work(conn: Conn) -> None:
        await conn.execute(_ADD_REFRESH, {"h": f"r-{name}", "u": user_id, "d": device_id})
        await conn.execute(
            _ADD_ACCESS, {"h": f"a-{name}", "u": user_id, "d": device_id, "r": f"r-{name}"}
        )

    await db.run(work, name="t")


async def _all(db: Database, stmt) -> list[str]:
    async def work(conn: Conn) -> list[str]:
        return [r[0] for r in await conn.fetch_all(stmt)]

    return await db.read(work, name="t")


# --- devices -------------------------------------------------------------------------------------


async def test_devices_crud(stores: Stores) -> None:
    await _user(stores, "@a:x")
    await _user(stores, "@b:x")
    await stores.devices.create_device("@a:x", "D2")
    await stores.devices.create_device("@a:x", "D1", display_name="phone")
    await stores.devices.create_device("@b:x", "D1")
    with pytest.raises(DeviceExists):
        await stores.devices.create_device("@a:x", "D1")

    assert [d.device_id for d in await stores.devices.list_devices("@a:x")] == ["D1", "D2"]
    assert await stores.devices.get_device("@a:x", "D1") == DeviceRow(
        "@a:x", "D1", "phone", None, None
    )
    assert await stores.devices.get_device("@a:x", "nope") is None

    pos = await stores.devices.set_display_name("@a:x", "D2", "laptop")
    assert pos is not None
    assert await stores.devices.set_display_name("@a:x", "nope", "x") is None
    assert await stores.devices.record_last_seen("@a:x", "D2", ts=42, ip="10.0.0.1")
    assert not await stores.devices.record_last_seen("@a:x", "nope", ts=42, ip="10.0.0.1")
    assert await stores.devices.get_device("@a:x", "D2") == DeviceRow(
        "@a:x", "D2", "laptop", 42, "10.0.0.1"
    )
    # the other user's device of the same ID is untouched
    assert (await stores.devices.get_device("@b:x", "D1")).display_name is None


async def test_delete_devices_revokes_tokens_and_bumps_stream(stores: Stores, db: Database) -> None:
    await _user(stores, "@a:x")
    await _user(stores, "@b:x")
    for user, dev in [("@a:x", "D1"), ("@a:x", "D2"), ("@a:x", "D3"), ("@b:x", "D1")]:
        await stores.devices.create_device(user, dev)
        await _tokens(db, user, dev, f"{user}{dev}")
    before = await stores.streams.current_position(StreamName.DEVICE_LISTS)

    deleted, pos = await stores.devices.delete_devices("@a:x", ["D1", "D3", "D1", "missing"])
    assert deleted == ["D1", "D3"]
    assert pos == before + 2 == await stores.streams.current_position(StreamName.DEVICE_LISTS)
    assert [d.device_id for d in await stores.devices.list_devices("@a:x")] == ["D2"]
    assert await _all(db, _ACCESS) == ["a-@a:xD2", "a-@b:xD1"]
    assert await _all(db, _REFRESH) == ["r-@a:xD2", "r-@b:xD1"]
    changes = await stores.devices.device_list_changes("@a:x", before)
    assert changes == [(before + 1, "D1"), (before + 2, "D3")]
    assert await stores.devices.device_list_changes("@b:x", before) == []

    # deleting again is a no-op that takes no stream position
    assert await stores.devices.delete_devices("@a:x", ["D1"]) == ([], None)
    assert await stores.streams.current_position(StreamName.DEVICE_LISTS) == pos


# --- profiles ------------------------------------------------------------------------------------


async def test_profile_fields(stores: Stores) -> None:
    await _user(stores, "@a:x")
    assert await stores.profiles.get_profile("@a:x") == {}
    assert await stores.profiles.get_field("@a:x", "displayname") == (False, None)
    await stores.profiles.set_field("@a:x", "displayname", "Alice", max_profile_bytes=1000)
    await stores.profiles.set_field("@a:x", "org.x.n", None, max_profile_bytes=1000)
    await stores.profiles.set_field("@a:x", "org.x.obj", {"k": [1, 2]}, max_profile_bytes=1000)
    await stores.profiles.set_field("@a:x", "displayname", "Alicia", max_profile_bytes=1000)
    assert await stores.profiles.get_profile("@a:x") == {
        "displayname": "Alicia",
        "org.x.n": None,
        "org.x.obj": {"k": [1, 2]},
    }
    assert await stores.profiles.get_field("@a:x", "org.x.n") == (True, None)
    assert await stores.profiles.delete_field("@a:x", "org.x.n")
    assert not await stores.profiles.delete_field("@a:x", "org.x.n")
    with pytest.raises(NoSuchUserError):
        await stores.profiles.set_field("@nobody:x", "displayname", "x", max_profile_bytes=1000)


async def test_profile_size_limit(stores: Stores) -> None:
    await _user(stores, "@a:x")
    await stores.profiles.set_field("@a:x", "displayname", "A", max_profile_bytes=100)
    # {"displayname":"A","org.x.big":"xxx..."} must stay within 100 bytes
    with pytest.raises(ProfileTooLargeError):
        await stores.profiles.set_field("@a:x", "org.x.big", "x" * 80, max_profile_bytes=100)
    assert await stores.profiles.get_profile("@a:x") == {"displayname": "A"}
    # replacing a field counts the new value, not both
    await stores.profiles.set_field("@a:x", "displayname", "B" * 80, max_profile_bytes=100)


def test_profile_size_matches_json() -> None:
    import orjson

    fields = {"displayname": '"Al\\"ice"', "org.x.y": "[1,2]", "é.x": '"ü"'}
    expected = len(orjson.dumps({k: orjson.loads(v) for k, v in fields.items()}))
    assert profile_size(fields) == expected
    assert profile_size({}) == 2


async def test_concurrent_profile_writes_respect_the_limit(stores: Stores) -> None:
    await _user(stores, "@a:x")
    results: list[str] = []

    async def write(i: int) -> None:
        try:
            await stores.profiles.set_field("@a:x", f"org.x.f{i}", "x" * 40, max_profile_bytes=200)
            results.append("ok")
        except ProfileTooLargeError:
            results.append("too large")

    async with trio.open_nursery() as nursery:
        for i in range(8):
            nursery.start_soon(write, i)
    profile = await stores.profiles.get_profile("@a:x")
    assert results.count("ok") == len(profile) == 3


# --- account data --------------------------------------------------------------------------------


async def test_account_data(stores: Stores) -> None:
    await _user(stores, "@a:x")
    start = await stores.streams.current_position(StreamName.ACCOUNT_DATA)
    assert await stores.account_data.get("@a:x", GLOBAL, "org.x") is None
    p1 = await stores.account_data.put("@a:x", GLOBAL, "org.x", {"a": 1})
    p2 = await stores.account_data.put("@a:x", "!r:x", "org.x", {"b": 2})
    p3 = await stores.account_data.put("@a:x", GLOBAL, "org.x", {"a": 3})
    assert (p1, p2, p3) == (start + 1, start + 2, start + 3)
    assert await stores.account_data.get("@a:x", GLOBAL, "org.x") == {"a": 3}
    assert await stores.account_data.get("@a:x", "!r:x", "org.x") == {"b": 2}
    changed = await stores.account_data.changed_since("@a:x", p1)
    assert [(c.room_id, c.content, c.stream_id) for c in changed] == [
        ("!r:x", {"b": 2}, p2),
        (GLOBAL, {"a": 3}, p3),
    ]


async def test_account_data_modify(stores: Stores) -> None:
    await _user(stores, "@a:x")
    seen: list[object] = []

    def add(tag: str):
        def change(current):
            seen.append(current)
            tags = dict((current or {}).get("tags", {}))
            tags[tag] = {}
            return {"tags": tags}

        return change

    pos = await stores.account_data.modify("@a:x", "!r:x", "m.tag", add("u.a"))
    assert pos is not None
    assert await stores.account_data.modify("@a:x", "!r:x", "m.tag", lambda c: None) is None
    # the no-op gave its position back
    assert await stores.streams.current_position(StreamName.ACCOUNT_DATA) == pos

    async with trio.open_nursery() as nursery:
        for i in range(6):
            nursery.start_soon(stores.account_data.modify, "@a:x", "!r:x", "m.tag", add(f"t{i}"))
    tags = (await stores.account_data.get("@a:x", "!r:x", "m.tag"))["tags"]
    assert set(tags) == {"u.a", *(f"t{i}" for i in range(6))}
    assert seen[0] is None


# --- OpenID --------------------------------------------------------------------------------------


async def test_openid_tokens(stores: Stores) -> None:
    await _user(stores, "@a:x")
    await stores.openid.add_token("h1", "@a:x", valid_until_ms=1000)
    await stores.openid.add_token("h2", "@a:x", valid_until_ms=5000)
    assert await stores.openid.user_of_token("h1", now_ms=999) == "@a:x"
    assert await stores.openid.user_of_token("h1", now_ms=1000) is None
    assert await stores.openid.user_of_token("nope", now_ms=0) is None
    assert await stores.openid.delete_expired(now_ms=1000) == 1
    assert await stores.openid.user_of_token("h2", now_ms=1000) == "@a:x"


# --- user directory ------------------------------------------------------------------------------


def test_like_pattern_escapes() -> None:
    assert like_pattern("A_b%c\\") == "%a\\_b\\%c\\\\%"
    assert like_pattern("STRASSE") == "%strasse%"


async def test_user_directory(stores: Stores) -> None:
    await _user(stores, "@alice:x")
    await _user(stores, "@bob:x")
    await _user(stores, "@carol:x")
    await _user(stores, "@guest1:x", is_guest=True)
    await _user(stores, "@gone:x")
    await _user(stores, "@under_score:x")
    await stores.users.deactivate_user("@gone:x")
    big = 10_000
    await stores.profiles.set_field("@bob:x", "displayname", "Bob ÄLICE", max_profile_bytes=big)
    await stores.profiles.set_field("@bob:x", "avatar_url", "mxc://x/b", max_profile_bytes=big)
    await stores.profiles.set_field("@carol:x", "displayname", "Carol", max_profile_bytes=big)
    await stores.profiles.set_field("@gone:x", "displayname", "Alice2", max_profile_bytes=big)
    await stores.profiles.set_field("@guest1:x", "displayname", "alice", max_profile_bytes=big)

    results, limited = await stores.user_directory.search("ali", limit=10)
    assert results == [DirectoryEntry("@alice:x", None, None)] and not limited
    results, _ = await stores.user_directory.search("äLi", limit=10)
    assert results == [DirectoryEntry("@bob:x", "Bob ÄLICE", "mxc://x/b")]
    results, limited = await stores.user_directory.search(":x", limit=2)
    assert [r.user_id for r in results] == ["@alice:x", "@bob:x"] and limited
    # LIKE wildcards in the term match only themselves
    results, _ = await stores.user_directory.search("_", limit=10)
    assert [r.user_id for r in results] == ["@under_score:x"]
    results, _ = await stores.user_directory.search("%", limit=10)
    assert results == []
