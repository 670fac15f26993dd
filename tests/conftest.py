"""Database fixtures shared by every test package.

- ``database_url``: a fresh database migrated to head, as a URL (also for subprocess servers).
  Parametrized over the backends: SQLite always, PostgreSQL too when
  ``HOMESERVER_TEST_POSTGRES_URL`` is set (``.ci/postgres.sh`` starts one and prints the line).
- ``db``: an open :class:`~homeserver.storage.Database` on ``database_url``.
- ``stores``: :func:`~homeserver.storage.open_stores` over ``db``.
- ``empty_database_url``: a fresh database with no tables (migration tests).
- ``sqlite_db``: SQLite only, for tests of SQLite behaviour.

Migrating costs ~0.1-1 s, so it happens once per session into a template (a file copied per
test on SQLite; ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL). Each test's PostgreSQL database
is ``test_<random>`` and is dropped afterwards.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from hypothesis import settings

from homeserver.storage import Database, Stores, open_stores
from homeserver.storage.migrate import upgrade_to_head

# Property tests run beside other suites on a 2-core machine (and SyTest in CI): a per-example
# deadline measures the machine's load, not the code, so none is set.
settings.register_profile("homeserver", deadline=None)
settings.load_profile("homeserver")

POSTGRES_URL = os.environ.get("HOMESERVER_TEST_POSTGRES_URL")
BACKENDS = ["sqlite", *(["postgresql"] if POSTGRES_URL else [])]


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


def _pg_admin(*statements: str) -> None:
    import asyncpg

    async def go() -> None:
        assert POSTGRES_URL is not None
        conn = await asyncpg.connect(POSTGRES_URL)
        try:
            for statement in statements:
                for attempt in range(5):
                    try:
                        await conn.execute(statement)
                        break
                    except asyncpg.InsufficientPrivilegeError:
                        # DROP ... WITH (FORCE) met an autovacuum worker it may not stop (a
                        # server set up before .ci/postgres.sh granted pg_signal_backend):
                        # the worker finishes soon, try again
                        if attempt == 4:
                            raise
                        await asyncio.sleep(0.5 * (attempt + 1))
        finally:
            await conn.close()

    asyncio.run(go())


class _Templates:
    """Migrated template databases, made on first use and removed at the end of the session."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._sqlite: Path | None = None
        self._pg: str | None = None

    def sqlite(self) -> Path:
        if self._sqlite is None:
            path = self._directory / "template.db"
            upgrade_to_head(f"sqlite:///{path}")
            self._sqlite = path
        return self._sqlite

    def postgres(self) -> str:
        if self._pg is None:
            assert POSTGRES_URL is not None
            name = f"test_template_{secrets.token_hex(4)}"
            _pg_admin(f'CREATE DATABASE "{name}"')
            upgrade_to_head(_with_database(POSTGRES_URL, name))
            self._pg = name
        return self._pg

    def close(self) -> None:
        if self._pg is not None:
            _pg_admin(f'DROP DATABASE IF EXISTS "{self._pg}" WITH (FORCE)')


@pytest.fixture(scope="session")
def _db_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_Templates]:
    templates = _Templates(tmp_path_factory.mktemp("db-templates"))
    yield templates
    templates.close()


def _fresh_url(backend: str, tmp_path: Path, template: str | Path | None) -> Iterator[str]:
    if backend == "sqlite":
        path = tmp_path / "homeserver.db"
        if template is not None:
            shutil.copyfile(template, path)
        yield f"sqlite:///{path}"
        return
    assert POSTGRES_URL is not None
    name = f"test_{secrets.token_hex(6)}"
    _pg_admin(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    try:
        yield _with_database(POSTGRES_URL, name)
    finally:
        _pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=BACKENDS)
def database_url(
    request: pytest.FixtureRequest, tmp_path: Path, _db_templates: _Templates
) -> Iterator[str]:
    """A fresh database migrated to head, on each backend."""
    backend = request.param
    template = _db_templates.sqlite() if backend == "sqlite" else _db_templates.postgres()
    yield from _fresh_url(backend, tmp_path, template)


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with no tables, on each backend."""
    yield from _fresh_url(request.param, tmp_path, None)


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    async with Database.open(database_url, pool_size=5) as database:
        yield database


@pytest.fixture
async def stores(db: Database) -> Stores:
    return open_stores(db)


@pytest.fixture
async def sqlite_db(tmp_path: Path, _db_templates: _Templates) -> AsyncIterator[Database]:
    path = tmp_path / "homeserver.db"
    shutil.copyfile(_db_templates.sqlite(), path)
    async with Database.open(f"sqlite:///{path}") as database:
        yield database
