"""The filter store on every backend: numbering per user, dedup, concurrent uploads."""

from __future__ import annotations

import pytest
import trio

from homeserver.storage import ForeignKeyViolation, Stores
from homeserver.storage.filters import filter_json

ALICE = "@alice:test.local"
BOB = "@bob:test.local"


async def _users(stores: Stores, *user_ids: str) -> None:
    for user_id in user_ids:
        await stores.users.create_user(user_id, password_hash=None, created_ts=1)


async def test_ids_count_from_zero_per_user(stores: Stores) -> None:
    await _users(stores, ALICE, BOB)
    assert await stores.filters.add_filter(ALICE, {"room": {"timeline": {"limit": 1}}}) == 0
    assert await stores.filters.add_filter(ALICE, {"room": {"timeline": {"limit": 2}}}) == 1
    assert await stores.filters.add_filter(BOB, {"room": {"timeline": {"limit": 2}}}) == 0
    assert await stores.filters.get_filter(ALICE, 1) == {"room": {"timeline": {"limit": 2}}}
    assert await stores.filters.get_filter(BOB, 0) == {"room": {"timeline": {"limit": 2}}}
    assert await stores.filters.get_filter(BOB, 1) is None
    assert await stores.filters.get_filter(ALICE, 2) is None


async def test_same_filter_gets_the_same_id_whatever_the_key_order(stores: Stores) -> None:
    await _users(stores, ALICE)
    a = {"presence": {"not_types": ["*"]}, "room": {"state": {"lazy_load_members": True}}}
    b = {"room": {"state": {"lazy_load_members": True}}, "presence": {"not_types": ["*"]}}
    assert await stores.filters.add_filter(ALICE, a) == 0
    assert await stores.filters.add_filter(ALICE, b) == 0
    assert await stores.filters.add_filter(ALICE, {}) == 1
    assert await stores.filters.add_filter(ALICE, a) == 0


async def test_stored_as_given(stores: Stores) -> None:
    await _users(stores, ALICE)
    definition = {
        "event_fields": ["content.m\\.relates_to"],
        "org.example.unknown": {"nested": [1, 2.5, None, True, "é"]},
        "room": {"timeline": {"limit": 9007199254740991}},
    }
    filter_id = await stores.filters.add_filter(ALICE, definition)
    assert await stores.filters.get_filter(ALICE, filter_id) == definition
    assert filter_json({"b": 1, "a": {"d": 1, "c": 2}}) == '{"a":{"c":2,"d":1},"b":1}'


async def test_concurrent_uploads_get_distinct_ids(stores: Stores) -> None:
    await _users(stores, ALICE)
    ids: list[int] = []

    async def upload(n: int) -> None:
        ids.append(await stores.filters.add_filter(ALICE, {"room": {"timeline": {"limit": n}}}))

    async with trio.open_nursery() as nursery:
        for n in range(8):
            nursery.start_soon(upload, n)
    assert sorted(ids) == list(range(8))


async def test_unknown_user_is_refused(stores: Stores) -> None:
    with pytest.raises(ForeignKeyViolation):
        await stores.filters.add_filter("@ghost:test.local", {})
