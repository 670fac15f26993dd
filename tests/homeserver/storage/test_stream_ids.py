"""Stream positions: monotonic, gap-free, and committed in order, on every backend."""

from __future__ import annotations

import pytest
import trio
from sqlalchemy import bindparam, func, insert, select

from homeserver.storage import Conn, Database, Stores
from homeserver.storage.schema import users
from homeserver.storage.stream_ids import (
    current_position,
    current_positions,
    next_position,
    next_positions,
)
from homeserver.streams import StreamName, StreamToken

# The tests record each allocated position as a user's created_ts: a row written with it.
_ADD = insert(users).values(user_id=bindparam("user_id"), created_ts=bindparam("pos"))
_UP_TO = select(func.count()).select_from(users).where(users.c.created_ts <= bindparam("pos"))
_ALL = select(users.c.created_ts).order_by(users.c.created_ts)


async def test_starts_at_zero_and_counts_up(db: Database) -> None:
    async def work(conn: Conn):
        before = await current_position(conn, StreamName.EVENTS)
        a = await next_position(conn, StreamName.EVENTS)
        b = await next_position(conn, StreamName.EVENTS)
        block = await next_positions(conn, StreamName.EVENTS, 3)
        other = await next_position(conn, StreamName.TYPING)
        return before, a, b, block, other

    assert await db.run(work, name="t") == (0, 1, 2, range(3, 6), 1)

    async def read(conn: Conn):
        return await current_positions(conn)

    positions = await db.read(read, name="t")
    assert positions[StreamName.EVENTS] == 5 and positions[StreamName.TYPING] == 1
    assert positions[StreamName.PRESENCE] == 0


async def test_rollback_gives_the_position_back(db: Database) -> None:
    async def work(conn: Conn) -> None:
        await next_position(conn, StreamName.EVENTS)
        raise ValueError

    with pytest.raises(ValueError):
        await db.run(work, name="t")

    async def again(conn: Conn) -> int:
        return await next_position(conn, StreamName.EVENTS)

    assert await db.run(again, name="t") == 1


async def test_concurrent_allocation_is_gap_free_and_ordered(db: Database) -> None:
    """Writers allocate first, then write; some roll back. A reader that sees position P must see
    every row at or below P (no N+1 committed before N), and the committed positions are 1..N."""
    violations: list[tuple[int, int]] = []
    done = trio.Event()

    async def writer(w: int) -> None:
        for i in range(15):

            async def work(conn: Conn) -> None:
                pos = await next_position(conn, StreamName.EVENTS)
                await conn.execute(_ADD, {"user_id": f"@w{w}_{i}:x", "pos": pos})
                if i % 5 == 4:
                    raise ValueError  # rolled back: its position must be reused, not skipped

            try:
                await db.run(work, name="write")
            except ValueError:
                pass

    async def reader() -> None:
        while not done.is_set():

            async def position(conn: Conn) -> int:
                return await current_position(conn, StreamName.EVENTS)

            async def rows_up_to(conn: Conn) -> int:
                return int(await conn.fetch_val(_UP_TO, {"pos": p}))

            p = await db.read(position, name="pos")
            seen = await db.read(rows_up_to, name="rows")
            if seen != p:
                violations.append((p, seen))
            await trio.sleep(0)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        async with trio.open_nursery() as writers:
            for w in range(20):
                writers.start_soon(writer, w)
        done.set()

    async def all_positions(conn: Conn):
        return [r[0] for r in await conn.fetch_all(_ALL)]

    committed = await db.read(all_positions, name="t")
    assert committed == list(range(1, 20 * 12 + 1))
    assert violations == []


async def test_store_reads_a_token(stores: Stores) -> None:
    assert await stores.streams.current_token() == StreamToken()
    assert await stores.streams.advance(StreamName.RECEIPTS) == 1
    assert await stores.streams.advance(StreamName.RECEIPTS) == 2
    token = await stores.streams.current_token()
    assert token.get(StreamName.RECEIPTS) == 2
    assert await stores.streams.current_position(StreamName.RECEIPTS) == 2


async def test_next_positions_rejects_zero(db: Database) -> None:
    async def work(conn: Conn):
        return await next_positions(conn, StreamName.EVENTS, 0)

    with pytest.raises(ValueError):
        await db.run(work, name="t")
