"""Benchmark the storage bridge against alternatives, on SQLite and PostgreSQL.

The unit of work: INSERT one ~400-byte row, then SELECT it by primary key, in one transaction.
N concurrent Trio tasks (default 20) run units back to back for a bounded time per variant.
Printed: units/s, queries/s (2 statements per unit), p50 and p99 latency per unit, and the
client CPU per unit (this process, all threads): what the bridge costs even when the database's
commit fsync is the bottleneck. Each variant first runs a short unmeasured warm-up.

SQLite variants:
  inline (chosen)   Database.run: the unit runs on the Trio thread, WAL, background checkpoints
  to_thread         the same SQL through sqlite3 in trio.to_thread, one connection, a trio.Lock
PostgreSQL variants (only with --pg-url or $HOMESERVER_TEST_POSTGRES_URL):
  side loop, 1 crossing/unit (chosen)   Database.run: the whole unit is one asyncio task
  side loop, 1 crossing/statement       acquire, BEGIN, INSERT, SELECT, COMMIT, release each cross
  side loop, to_thread wait             one crossing per unit, awaited by blocking a Trio worker
                                        thread on the concurrent future instead of a callback

Run:  .ci/postgres.sh   # prints the export line
      .venv/bin/python bench/bench_db.py --duration 4 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import secrets
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import trio
from sqlalchemy import bindparam, text

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from homeserver.storage.db import Conn, Database

BODY = "x" * 400
CREATE = text("CREATE TABLE bench_rows (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
INSERT = text("INSERT INTO bench_rows (id, body) VALUES (:id, :body)").bindparams(
    bindparam("id"), bindparam("body")
)
SELECT = text("SELECT id, body FROM bench_rows WHERE id = :id")

Unit = Callable[[int], Awaitable[None]]
_IDS = itertools.count(1)  # row IDs, unique across variants sharing a table


async def _drive(unit: Unit, tasks: int, duration: float) -> tuple[list[float], float, float]:
    latencies: list[float] = []
    deadline = trio.current_time() + duration

    async def worker() -> None:
        while trio.current_time() < deadline:
            started = time.perf_counter()
            await unit(next(_IDS))
            latencies.append(time.perf_counter() - started)

    started, cpu = time.perf_counter(), time.process_time()
    async with trio.open_nursery() as nursery:
        for _ in range(tasks):
            nursery.start_soon(worker)
    return latencies, time.perf_counter() - started, time.process_time() - cpu


async def measure(unit: Unit, *, tasks: int, duration: float) -> dict[str, float]:
    await _drive(unit, tasks, min(0.5, duration / 4))  # warm-up: pool connections, statements
    latencies, elapsed, cpu = await _drive(unit, tasks, duration)
    latencies.sort()
    units = len(latencies) / elapsed
    return {
        "cpu us/unit": cpu / len(latencies) * 1e6,
        "units/s": units,
        "queries/s": 2 * units,
        "p50 ms": statistics.median(latencies) * 1000,
        "p99 ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
    }


def database_unit(db: Database) -> Unit:
    async def unit(i: int) -> None:
        async def work(conn: Conn) -> None:
            await conn.execute(INSERT, {"id": i, "body": BODY})
            row = await conn.fetch_one(SELECT, {"id": i})
            assert row is not None

        await db.run(work, name="bench")

    return unit


async def create_table(db: Database) -> None:
    async def work(conn: Conn) -> None:
        await conn.execute(CREATE)

    await db.run(work, name="create")


# --- SQLite ---------------------------------------------------------------------------------------


async def sqlite_variants(directory: Path, tasks: int, duration: float) -> list[tuple[str, dict]]:
    results = []
    path = directory / f"bench-{secrets.token_hex(4)}.db"
    async with Database.open(f"sqlite:///{path}") as db:
        await create_table(db)
        results.append(
            (
                "SQLite inline (chosen)",
                await measure(database_unit(db), tasks=tasks, duration=duration),
            )
        )

    path = directory / f"bench-{secrets.token_hex(4)}.db"
    raw = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    raw.execute("PRAGMA journal_mode=WAL")
    raw.execute("PRAGMA synchronous=NORMAL")
    raw.execute("CREATE TABLE bench_rows (id BIGINT PRIMARY KEY, body TEXT NOT NULL)")
    lock = trio.Lock()

    def sync_unit(i: int) -> None:
        raw.execute("BEGIN IMMEDIATE")
        raw.execute("INSERT INTO bench_rows (id, body) VALUES (?, ?)", (i, BODY))
        assert raw.execute("SELECT id, body FROM bench_rows WHERE id = ?", (i,)).fetchone()
        raw.execute("COMMIT")

    async def thread_unit(i: int) -> None:
        async with lock:
            await trio.to_thread.run_sync(sync_unit, i)

    results.append(
        ("SQLite trio.to_thread", await measure(thread_unit, tasks=tasks, duration=duration))
    )
    raw.close()
    return results


# --- PostgreSQL -----------------------------------------------------------------------------------


def _pg_admin(url: str, statement: str) -> None:
    import asyncpg

    async def go() -> None:
        conn = await asyncpg.connect(url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(go())


async def postgres_variants(url: str, tasks: int, duration: float) -> list[tuple[str, dict]]:
    name = f"bench_{secrets.token_hex(4)}"
    await trio.to_thread.run_sync(_pg_admin, url, f'CREATE DATABASE "{name}"')
    bench_url = urlunsplit(urlsplit(url)._replace(path="/" + name))
    results = []
    try:
        async with Database.open(bench_url, pool_size=tasks) as db:
            await create_table(db)
            results.append(
                (
                    "PG side loop, 1 crossing/unit (chosen)",
                    await measure(database_unit(db), tasks=tasks, duration=duration),
                )
            )
            pg: Any = db
            pool = pg._pool
            insert_sql = "INSERT INTO bench_rows (id, body) VALUES ($1, $2)"
            select_sql = "SELECT id, body FROM bench_rows WHERE id = $1"

            async def per_statement(i: int) -> None:
                conn = await pg._cross(pool.acquire())
                try:
                    await pg._cross(conn.execute("BEGIN"))
                    await pg._cross(conn.execute(insert_sql, i, BODY))
                    assert await pg._cross(conn.fetchrow(select_sql, i)) is not None
                    await pg._cross(conn.execute("COMMIT"))
                finally:
                    await pg._cross(pool.release(conn))

            results.append(
                (
                    "PG side loop, 1 crossing/statement",
                    await measure(per_statement, tasks=tasks, duration=duration),
                )
            )

            async def unit_coro(i: int) -> None:
                async with pool.acquire() as conn, conn.transaction():
                    await conn.execute(insert_sql, i, BODY)
                    assert await conn.fetchrow(select_sql, i) is not None

            async def to_thread_wait(i: int) -> None:
                future = asyncio.run_coroutine_threadsafe(unit_coro(i), pg._loop)
                await trio.to_thread.run_sync(future.result)

            results.append(
                (
                    "PG side loop, to_thread wait",
                    await measure(to_thread_wait, tasks=tasks, duration=duration),
                )
            )
    finally:
        await trio.to_thread.run_sync(
            _pg_admin, url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
        )
    return results


async def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per variant and round")
    parser.add_argument("--rounds", type=int, default=1, help="best round is shown")
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--pg-url", default=os.environ.get("HOMESERVER_TEST_POSTGRES_URL"))
    args = parser.parse_args()

    best: dict[str, dict] = {}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as directory:
            rows = await sqlite_variants(Path(directory), args.tasks, args.duration)
        if args.pg_url:
            rows += await postgres_variants(args.pg_url, args.tasks, args.duration)
        for label, result in rows:
            if label not in best or result["units/s"] > best[label]["units/s"]:
                best[label] = result

    print(f"{args.tasks} tasks, {args.duration:g} s per variant, best of {args.rounds} round(s)")
    print("| variant | units/s | queries/s | p50 ms | p99 ms | client CPU µs/unit |")
    print("|---|---:|---:|---:|---:|---:|")
    for label, r in best.items():
        print(
            f"| {label} | {r['units/s']:,.0f} | {r['queries/s']:,.0f} "
            f"| {r['p50 ms']:.2f} | {r['p99 ms']:.2f} | {r['cpu us/unit']:,.0f} |"
        )
    if not args.pg_url:
        print("(PostgreSQL skipped: pass --pg-url or set HOMESERVER_TEST_POSTGRES_URL)")


if __name__ == "__main__":
    trio.run(main)
