"""SQLite-specific behaviour: WAL, the busy path, slow reads in a thread."""

from __future__ import annotations

import sqlite3

import pytest
import trio
from sqlalchemy import bindparam, insert, text

from homeserver.storage import (
    Conn,
    Database,
    DatabaseUnavailable,
    StorageError,
    TransactionConflict,
)
from homeserver.storage.db import sqlite_path
from homeserver.storage.schema import users

_ADD = insert(users).values(user_id=bindparam("user_id"), created_ts=bindparam("ts"))
_JOURNAL = text("PRAGMA journal_mode")
_SYNCHRONOUS = text("PRAGMA synchronous")
_FOREIGN_KEYS = text("PRAGMA foreign_keys")


def _path(db: Database) -> str:
    return db._path  # type: ignore[attr-defined]


async def add(db: Database, user_id: str) -> None:
    async def work(conn: Conn) -> None:
        await conn.execute(_ADD, {"user_id": user_id, "ts": 1})

    await db.run(work, name="add")


async def test_wal_and_pragmas(sqlite_db: Database) -> None:
    async def work(conn: Conn):
        return (
            await conn.fetch_val(_JOURNAL),
            await conn.fetch_val(_SYNCHRONOUS),
            await conn.fetch_val(_FOREIGN_KEYS),
        )

    assert await sqlite_db.read(work, name="t") == ("wal", 1, 1)  # 1 = NORMAL


async def test_waits_for_another_process_lock(sqlite_db: Database) -> None:
    other = sqlite3.connect(_path(sqlite_db), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    finished = trio.Event()

    async def writer() -> None:
        await add(sqlite_db, "@a:x")
        finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        await trio.sleep(0.05)
        assert not finished.is_set()
        # the event loop is not blocked meanwhile: reads still work
        assert await sqlite_db.read(lambda c: c.fetch_val(text("SELECT 1")), name="t") == 1
        other.execute("ROLLBACK")
    assert finished.is_set()
    other.close()


async def test_busy_retries_are_bounded(sqlite_db: Database, autojump_clock) -> None:
    other = sqlite3.connect(_path(sqlite_db), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(TransactionConflict):
            await add(sqlite_db, "@a:x")
    finally:
        other.execute("ROLLBACK")
        other.close()
    await add(sqlite_db, "@a:x")


async def test_cancel_while_waiting_for_the_lock(sqlite_db: Database) -> None:
    other = sqlite3.connect(_path(sqlite_db), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    with trio.move_on_after(0.05) as scope:
        await add(sqlite_db, "@a:x")
    assert scope.cancelled_caught
    other.execute("ROLLBACK")
    other.close()
    await add(sqlite_db, "@b:x")

    async def users_(conn: Conn):
        return await conn.fetch_all(text("SELECT user_id FROM users"))

    assert await sqlite_db.read(users_, name="t") == [("@b:x",)]


async def test_slow_read_runs_in_a_thread_on_a_read_only_connection(sqlite_db: Database) -> None:
    await add(sqlite_db, "@a:x")

    async def work(conn: Conn):
        return await conn.fetch_all(text("SELECT user_id FROM users"))

    assert await sqlite_db.read(work, name="t", slow=True) == [("@a:x",)]

    async def write(conn: Conn) -> None:
        await conn.execute(_ADD, {"user_id": "@b:x", "ts": 1})

    # query_only: "attempt to write a readonly database"
    with pytest.raises(StorageError):
        await sqlite_db.read(write, name="t", slow=True)


async def test_checkpoints_happen(sqlite_db: Database, autojump_clock) -> None:
    for i in range(20):
        await add(sqlite_db, f"@u{i}:x")
    await trio.sleep(5)  # the checkpointer runs every second when something was written


async def test_missing_directory_is_unavailable(tmp_path) -> None:
    with pytest.raises(DatabaseUnavailable):
        async with Database.open(f"sqlite:///{tmp_path}/no/such/dir/x.db"):
            pass


def test_sqlite_urls() -> None:
    assert sqlite_path("sqlite:///data/x.db") == "data/x.db"
    assert sqlite_path("sqlite:////abs/x.db") == "/abs/x.db"
    for bad in ("sqlite://", "sqlite:///", "sqlite:///:memory:"):
        with pytest.raises(ValueError):
            sqlite_path(bad)
