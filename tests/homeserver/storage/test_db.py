"""The unit-of-work API, on every backend (see tests/conftest.py)."""

from __future__ import annotations

import functools

import pytest
import trio
from sqlalchemy import bindparam, func, insert, select, text

from homeserver.storage import (
    Conn,
    Database,
    ForeignKeyViolation,
    IntegrityError,
    StorageError,
    UniqueViolation,
    UnitOfWorkError,
)
from homeserver.storage.schema import devices, users

_ADD_USER = insert(users).values(
    user_id=bindparam("user_id"), created_ts=bindparam("created_ts"), is_admin=bindparam("is_admin")
)
_ADD_DEVICE = insert(devices).values(user_id=bindparam("user_id"), device_id=bindparam("device_id"))
_GET_USER = select(users.c.user_id, users.c.is_admin, users.c.phone).where(
    users.c.user_id == bindparam("user_id")
)
_ALL_USERS = select(users.c.user_id, users.c.is_admin).order_by(users.c.user_id)
_COUNT_USERS = select(func.count()).select_from(users)
_COUNT_DEVICES = select(func.count()).select_from(devices)


def add_user(user_id: str, *, is_admin: bool = False):
    async def work(conn: Conn) -> int:
        return await conn.execute(
            _ADD_USER, {"user_id": user_id, "created_ts": 1, "is_admin": is_admin}
        )

    return work


async def count(db: Database, stmt=_COUNT_USERS) -> int:
    async def work(conn: Conn) -> int:
        return int(await conn.fetch_val(stmt))

    return await db.read(work, name="count")


async def test_commit_and_read_back(db: Database) -> None:
    assert await db.run(add_user("@a:x", is_admin=True), name="t") == 1

    async def work(conn: Conn):
        return await conn.fetch_one(_GET_USER, {"user_id": "@a:x"})

    row = await db.read(work, name="t")
    assert row == ("@a:x", True, None)
    assert type(row[1]) is bool


async def test_fetch_variants(db: Database) -> None:
    async def work(conn: Conn):
        await conn.execute_many(
            _ADD_USER,
            [{"user_id": f"@u{i}:x", "created_ts": i, "is_admin": i % 2 == 0} for i in range(3)],
        )
        return (
            await conn.fetch_all(_ALL_USERS),
            await conn.fetch_one(_GET_USER, {"user_id": "@nobody:x"}),
            await conn.fetch_val(_GET_USER, {"user_id": "@nobody:x"}),
            await conn.fetch_val(_COUNT_USERS),
        )

    rows, none_row, none_val, n = await db.run(work, name="t")
    assert rows == [("@u0:x", True), ("@u1:x", False), ("@u2:x", True)]
    assert none_row is None and none_val is None and n == 3


async def test_rollback_on_exception(db: Database) -> None:
    class Boom(Exception):
        pass

    async def work(conn: Conn) -> None:
        await add_user("@a:x")(conn)
        raise Boom

    with pytest.raises(Boom):
        await db.run(work, name="t")
    assert await count(db) == 0


async def test_unique_violation_names_the_constraint(db: Database) -> None:
    await db.run(add_user("@a:x"), name="t")
    with pytest.raises(UniqueViolation) as info:
        await db.run(add_user("@a:x"), name="t")
    assert info.value.constraint == "pk_users"
    assert isinstance(info.value, IntegrityError)


async def test_foreign_key_violation(db: Database) -> None:
    async def work(conn: Conn) -> None:
        await conn.execute(_ADD_DEVICE, {"user_id": "@ghost:x", "device_id": "D"})

    with pytest.raises(ForeignKeyViolation):
        await db.run(work, name="t")


async def test_not_null_is_an_integrity_error(db: Database) -> None:
    async def work(conn: Conn) -> None:
        await conn.execute(_ADD_USER, {"user_id": None, "created_ts": 1, "is_admin": False})

    with pytest.raises(IntegrityError):
        await db.run(work, name="t")


async def test_swallowed_error_rolls_back(db: Database) -> None:
    await db.run(add_user("@a:x"), name="t")

    async def work(conn: Conn) -> None:
        await add_user("@b:x")(conn)
        try:
            await add_user("@a:x")(conn)
        except UniqueViolation:
            pass

    with pytest.raises(UnitOfWorkError):
        await db.run(work, name="t")
    assert await count(db) == 1


async def test_bad_sql_is_a_storage_error(db: Database) -> None:
    bad = text("SELECT no_such_column FROM users")

    async def work(conn: Conn):
        return await conn.fetch_all(bad)

    with pytest.raises(StorageError) as info:
        await db.read(work, name="t")
    assert type(info.value) is StorageError


async def test_missing_parameter(db: Database) -> None:
    async def work(conn: Conn):
        return await conn.fetch_one(_GET_USER, {})

    with pytest.raises(UnitOfWorkError, match="missing parameter"):
        await db.read(work, name="t")


async def test_awaiting_something_else_is_refused(db: Database) -> None:
    async def work(conn: Conn) -> None:
        await add_user("@a:x")(conn)
        await trio.sleep(0)

    with pytest.raises((UnitOfWorkError, RuntimeError)):
        await db.run(work, name="t")
    assert await count(db) == 0


async def test_concurrent_writers(db: Database) -> None:
    async with trio.open_nursery() as nursery:
        for i in range(50):
            nursery.start_soon(functools.partial(db.run, add_user(f"@u{i}:x"), name="t"))
    assert await count(db) == 50
    assert db.pool_stats().in_use == 0


async def test_concurrent_duplicate_writers_one_wins(db: Database) -> None:
    results: list[str] = []

    async def one() -> None:
        try:
            await db.run(add_user("@same:x"), name="t")
            results.append("ok")
        except UniqueViolation:
            results.append("dup")

    async with trio.open_nursery() as nursery:
        for _ in range(10):
            nursery.start_soon(one)
    assert sorted(results) == ["dup"] * 9 + ["ok"]


async def test_cancelled_callers_leave_no_half_units(db: Database) -> None:
    async def user_and_device(i: int) -> None:
        async def work(conn: Conn) -> None:
            await add_user(f"@u{i}:x")(conn)
            await conn.execute(_ADD_DEVICE, {"user_id": f"@u{i}:x", "device_id": "D"})

        await db.run(work, name="t")

    async def writer(start: int) -> None:
        for i in range(start, start + 10_000, 1):
            await user_and_device(i)

    with trio.move_on_after(0.3):
        async with trio.open_nursery() as nursery:
            for w in range(10):
                nursery.start_soon(writer, w * 10_000)
    users_n, devices_n = await count(db), await count(db, _COUNT_DEVICES)
    assert users_n == devices_n > 0
    assert db.pool_stats().in_use == 0
    await user_and_device(-1)
    assert await count(db) == users_n + 1


async def test_ping_and_stats(db: Database) -> None:
    await db.ping()
    stats = db.pool_stats()
    assert stats.in_use == 0 and stats.size >= 1 and stats.max_size >= stats.size
    assert db.dialect_name in ("sqlite", "postgresql")


async def test_slow_read(db: Database) -> None:
    await db.run(add_user("@a:x"), name="t")
    assert await db.read(lambda conn: conn.fetch_val(_COUNT_USERS), name="t", slow=True) == 1


async def test_unsupported_url() -> None:
    with pytest.raises(ValueError):
        async with Database.open("mysql://x/y"):
            pass
