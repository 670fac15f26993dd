"""PostgreSQL-specific behaviour: cancellation mid-statement, deadlock retry, unavailability."""

from __future__ import annotations

import socket

import pytest
import trio
from sqlalchemy import text

from homeserver.storage import Conn, Database, DatabaseUnavailable
from tests.conftest import POSTGRES_URL

needs_pg = pytest.mark.skipif(POSTGRES_URL is None, reason="HOMESERVER_TEST_POSTGRES_URL not set")

_SLEEP = text("SELECT pg_sleep(:seconds)")
_PUT = text("INSERT INTO stream_positions (stream, position) VALUES (:s, 0)")
_BUMP = text("UPDATE stream_positions SET position = position + 1 WHERE stream = :s")
_GET = text("SELECT stream, position FROM stream_positions ORDER BY stream")


@pytest.fixture
async def pg_db(database_url: str):
    if not database_url.startswith("postgresql"):
        pytest.skip("PostgreSQL only")
    async with Database.open(database_url, pool_size=4) as db:
        yield db


async def test_cancel_mid_statement_rolls_back(pg_db: Database) -> None:
    async def work(conn: Conn) -> None:
        await conn.execute(_PUT, {"s": "x"})
        await conn.fetch_val(_SLEEP, {"seconds": 30})

    with trio.fail_after(10):
        with trio.move_on_after(0.2) as scope:
            await pg_db.run(work, name="t")
    assert scope.cancelled_caught
    assert pg_db.pool_stats().in_use == 0
    assert await pg_db.read(lambda c: c.fetch_all(_GET), name="t") == []


async def test_deadlocks_are_retried(pg_db: Database) -> None:
    async def setup(conn: Conn) -> None:
        await conn.execute(_PUT, {"s": "a"})
        await conn.execute(_PUT, {"s": "b"})

    await pg_db.run(setup, name="t")
    attempts = {"ab": 0, "ba": 0}

    def crosswise(first: str, second: str):
        async def work(conn: Conn) -> None:
            attempts[first + second] += 1
            await conn.execute(_BUMP, {"s": first})
            await conn.fetch_val(_SLEEP, {"seconds": 0.3})
            await conn.execute(_BUMP, {"s": second})

        return work

    async with trio.open_nursery() as nursery:
        nursery.start_soon(lambda: pg_db.run(crosswise("a", "b"), name="ab"))
        nursery.start_soon(lambda: pg_db.run(crosswise("b", "a"), name="ba"))
    assert await pg_db.read(lambda c: c.fetch_all(_GET), name="t") == [("a", 2), ("b", 2)]
    assert attempts["ab"] + attempts["ba"] == 3  # one deadlock victim ran twice


@needs_pg
async def test_unreachable_server_is_unavailable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens here once closed
    with pytest.raises(DatabaseUnavailable):
        async with Database.open(f"postgresql://u:p@127.0.0.1:{port}/db"):
            pass


@needs_pg
async def test_wrong_password_is_unavailable() -> None:
    assert POSTGRES_URL is not None
    bad = POSTGRES_URL.replace("://", "://nobody:wrong@", 1).split("@", 1)
    url = bad[0] + "@" + POSTGRES_URL.split("@", 1)[-1]
    with pytest.raises(DatabaseUnavailable):
        async with Database.open(url):
            pass


async def test_cancel_before_the_task_starts_is_prompt(pg_db: Database) -> None:
    """Cancelled callers must not wait out the grace period when their task never ran."""
    start = trio.current_time()
    for _ in range(50):
        with trio.CancelScope() as scope:
            scope.cancel()
            await pg_db.run(lambda c: c.fetch_val(_GET), name="t")
    assert trio.current_time() - start < 2
    assert pg_db.pool_stats().in_use == 0
