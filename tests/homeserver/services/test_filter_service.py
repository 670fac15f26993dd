"""FilterService: create, get and the /sync ``filter`` parameter, over real stores."""

from __future__ import annotations

import pytest

from homeserver.errors import MatrixError
from homeserver.services.filtering import DEFAULT_SYNC_FILTER
from homeserver.services.filters import FilterService
from homeserver.storage import Stores

ALICE = "@alice:test.local"
BOB = "@bob:test.local"


@pytest.fixture
async def service(stores: Stores) -> FilterService:
    for user_id in (ALICE, BOB):
        await stores.users.create_user(user_id, password_hash=None, created_ts=1)
    return FilterService(stores.filters)


async def _error(coro) -> MatrixError:
    with pytest.raises(MatrixError) as info:
        await coro
    return info.value


async def test_create_get_resolve(service: FilterService) -> None:
    body = {"room": {"timeline": {"limit": 3, "types": ["m.room.message"]}}, "x.unknown": 1}
    filter_id = await service.create(ALICE, body)
    assert filter_id == "0"
    assert await service.get(ALICE, filter_id) == body
    resolved = await service.resolve(ALICE, filter_id)
    assert resolved.timeline_limit == 3
    assert resolved.room.timeline.types == ("m.room.message",)
    assert await service.create(ALICE, dict(reversed(list(body.items())))) == "0"
    assert await service.create(ALICE, {}) == "1"


async def test_invalid_filters_are_not_stored(service: FilterService, stores: Stores) -> None:
    err = await _error(service.create(ALICE, {"room": {"timeline": {"limit": -1}}}))
    assert (err.status, err.errcode) == (400, "M_INVALID_PARAM")
    err = await _error(service.create(ALICE, {"room": []}))
    assert (err.status, err.errcode) == (400, "M_BAD_JSON")
    assert await stores.filters.get_filter(ALICE, 0) is None


@pytest.mark.parametrize("filter_id", ["0", "1", "-1", "abc", "{", "", "99999999999999999999", "٣"])
async def test_get_unknown_or_foreign_is_not_found(service: FilterService, filter_id) -> None:
    await service.create(BOB, {})
    err = await _error(service.get(ALICE, filter_id))
    assert (err.status, err.errcode) == (404, "M_NOT_FOUND")


async def test_resolve(service: FilterService) -> None:
    assert await service.resolve(ALICE, None) is DEFAULT_SYNC_FILTER
    inline = await service.resolve(ALICE, '{"room": {"timeline": {"limit": 2}}}')
    assert inline.timeline_limit == 2
    assert (await service.resolve(ALICE, "{}")) == DEFAULT_SYNC_FILTER


@pytest.mark.parametrize(
    ("param", "status", "errcode"),
    [
        ("0", 400, "M_INVALID_PARAM"),  # Bob's filter 0 is not Alice's
        ("7", 400, "M_INVALID_PARAM"),
        ("nope", 400, "M_INVALID_PARAM"),
        ("", 400, "M_INVALID_PARAM"),
        ("{not json", 400, "M_NOT_JSON"),
        ('{"room": 1}', 400, "M_BAD_JSON"),
        ('{"room": {"timeline": {"limit": -3}}}', 400, "M_INVALID_PARAM"),
        ('{"event_format": "xml"}', 400, "M_INVALID_PARAM"),
    ],
)
async def test_resolve_errors(service: FilterService, param, status, errcode) -> None:
    await service.create(BOB, {})
    err = await _error(service.resolve(ALICE, param))
    assert (err.status, err.errcode) == (status, errcode)
    if param in ("0", "7", "nope"):
        assert err.msg == "No such filter"
