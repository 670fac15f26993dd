"""Alembic environment: where the database is, how to connect, and the migration lock.

The URL comes from (first found): ``config.attributes["db_url"]`` (set by
``homeserver.storage.migrate``), ``-x db_url=...``, ``$HOMESERVER_DATABASE_URL``, or
``-x config=homeserver.yaml`` read with ``homeserver.config.load_config``.

- SQLite runs through SQLAlchemy's sync pysqlite engine, ``render_as_batch=True`` (SQLite's
  ALTER TABLE is limited), under an exclusive ``fcntl.flock`` on ``<db path>.migrate.lock``.
- PostgreSQL runs through the async engine with ``postgresql+asyncpg`` inside ``asyncio.run``
  (so no psycopg is needed), under a session ``pg_advisory_lock`` held around the upgrade.

A second migrator waits for the lock, then finds the database at head and applies nothing.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from logging.config import fileConfig
from typing import Any

from alembic import context
from sqlalchemy import create_engine, pool, text
from sqlalchemy.engine import Connection

from homeserver.storage.schema import metadata

config = context.config
target_metadata = metadata

# Any fixed 64-bit number, the same in every process that migrates this database.
_PG_MIGRATION_LOCK = 0x686F6D657365727

if config.config_file_name is not None and "db_url" not in config.attributes:
    # Only from the command line: inside the server, logging is the server's business.
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _url_from_config_file(path: str) -> str | None:
    try:
        from homeserver.config import load_config
    except ImportError:
        return None
    loaded = load_config(path)
    # prefer the URL with a relative SQLite path resolved against the config file's directory
    url = getattr(loaded, "database_url", None)
    if not isinstance(url, str):
        url = getattr(getattr(loaded, "database", None), "url", None)
    return url if isinstance(url, str) else None


def _database_url() -> str:
    x_args = context.get_x_argument(as_dictionary=True)
    url = (
        config.attributes.get("db_url")
        or x_args.get("db_url")
        or os.environ.get("HOMESERVER_DATABASE_URL")
    )
    if not url and "config" in x_args:
        url = _url_from_config_file(x_args["config"])
    if not url:
        raise SystemExit(
            "no database URL: pass -x db_url=..., set HOMESERVER_DATABASE_URL, "
            "or pass -x config=homeserver.yaml"
        )
    return str(url)


def _is_sqlite(url: str) -> bool:
    return url.startswith("sqlite:")


def _asyncpg_url(url: str) -> str:
    for prefix in ("postgresql+asyncpg://", "postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    raise SystemExit(f"unsupported database URL: {url.split(':', 1)[0]}")


def _configure_and_run(connection: Connection, *, render_as_batch: bool) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=render_as_batch,
        compare_type=True,
        on_version_apply=config.attributes.get("on_version_apply"),
    )
    with context.begin_transaction():
        context.run_migrations()


@contextmanager
def _flock(path: str) -> Iterator[None]:
    with open(path, "a+b") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _run_sqlite(url: str) -> None:
    db_path = url[len("sqlite:///") :].split("?", 1)[0]
    with _flock(db_path + ".migrate.lock"):
        engine = create_engine(url, poolclass=pool.NullPool)
        try:
            with engine.connect() as connection:
                _configure_and_run(connection, render_as_batch=True)
        finally:
            engine.dispose()


def _run_postgres_locked(connection: Connection) -> None:
    connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _PG_MIGRATION_LOCK})
    connection.commit()
    try:
        _configure_and_run(connection, render_as_batch=False)
    finally:
        if connection.in_transaction():
            connection.rollback()
        connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _PG_MIGRATION_LOCK})
        connection.commit()


async def _run_postgres(url: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(_asyncpg_url(url), poolclass=pool.NullPool)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_postgres_locked)
    finally:
        await engine.dispose()


def run_migrations_offline() -> None:
    url = _database_url()
    opts: dict[str, Any] = {"paramstyle": "named"}
    context.configure(
        url=url if _is_sqlite(url) else _asyncpg_url(url),
        target_metadata=target_metadata,
        literal_binds=True,
        dialect_opts=opts,
        render_as_batch=_is_sqlite(url),
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    url = _database_url()
    if _is_sqlite(url):
        _run_sqlite(url)
    else:
        asyncio.run(_run_postgres(url))


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
