"""Migrations: head equals schema.py, and concurrent migrators migrate once. Every backend."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, pool
from sqlalchemy.engine import Connection

from homeserver.storage import Database, SchemaOutOfDate, check_schema, migrate
from homeserver.storage.migrate import current_revision, head_revision, upgrade_to_head
from homeserver.storage.schema import metadata

ROOT = Path(__file__).resolve().parents[3]


def _not_fts(name: str | None, type_: str, _parent: object) -> bool:
    """The full-text search indexes the search migration makes outside schema.py are not
    compared: SQLite's FTS5 table with its shadow tables, PostgreSQL's GIN expression index."""
    if type_ == "table" and name is not None and name.startswith("event_search_fts"):
        return False
    return not (type_ == "index" and name == "ix_event_search_tsvector")


def _diff(connection: Connection) -> list:
    context = MigrationContext.configure(connection, opts={"include_name": _not_fts})
    return compare_metadata(context, metadata)


def schema_diff(url: str) -> list:
    if url.startswith("sqlite"):
        engine = create_engine(url, poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                return _diff(connection)
        finally:
            engine.dispose()

    from sqlalchemy.ext.asyncio import create_async_engine

    async def go() -> list:
        engine = create_async_engine(
            url.replace("postgresql://", "postgresql+asyncpg://", 1), poolclass=pool.NullPool
        )
        try:
            async with engine.connect() as connection:
                return await connection.run_sync(_diff)
        finally:
            await engine.dispose()

    return asyncio.run(go())


async def test_head_matches_schema(empty_database_url: str) -> None:
    applied = await migrate(empty_database_url)
    assert applied[0] == "0001" and applied[-1] == head_revision()
    assert await trio.to_thread.run_sync(schema_diff, empty_database_url) == []
    assert await migrate(empty_database_url) == []


async def test_check_schema(empty_database_url: str) -> None:
    async with Database.open(empty_database_url) as db:
        assert await current_revision(db) is None
        with pytest.raises(SchemaOutOfDate):
            await check_schema(db)
    await migrate(empty_database_url)
    async with Database.open(empty_database_url) as db:
        assert await current_revision(db) == head_revision()
        await check_schema(db)


def test_concurrent_migrations_migrate_once(empty_database_url: str) -> None:
    results: list[list[str]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(3)

    def one() -> None:
        barrier.wait()
        try:
            results.append(upgrade_to_head(empty_database_url))
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results)[:2] == [[], []]
    assert sorted(results)[2][-1] == head_revision()


@pytest.mark.slow
def test_concurrent_migrations_in_processes(empty_database_url: str) -> None:
    code = (
        "import sys; from homeserver.storage.migrate import upgrade_to_head; "
        "print(','.join(upgrade_to_head(sys.argv[1])))"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, empty_database_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for _ in range(2)
    ]
    outputs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outputs.append(out.strip())
    assert sorted(outputs)[0] == ""
    assert sorted(outputs)[1].split(",")[-1] == head_revision()


@pytest.mark.slow
def test_alembic_command_line(empty_database_url: str) -> None:
    env = dict(os.environ, HOMESERVER_DATABASE_URL=empty_database_url)
    alembic = Path(sys.executable).parent / "alembic"
    run = subprocess.run(
        [str(alembic), "upgrade", "head"], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    run = subprocess.run(
        [str(alembic), "-x", f"db_url={empty_database_url}", "current"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    assert f"{head_revision()} (head)" in run.stdout
