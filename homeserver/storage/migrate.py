"""Run the Alembic migrations, and check that a database is at head.

:func:`migrate` runs ``alembic upgrade head`` programmatically in a worker thread. Two processes
starting together must not both migrate; ``migrations/env.py`` takes the lock, so the command line
(``alembic -x db_url=... upgrade head``) is covered too:

- PostgreSQL: a session ``pg_advisory_lock`` on the migration connection, held around the upgrade.
- SQLite: an exclusive ``fcntl.flock`` on ``<db path>.migrate.lock``.

The second one waits, then finds the database at head and does nothing. The migrations live next
to ``alembic.ini`` at the root of the source tree (they are not part of the installed package).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import trio
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text

from homeserver.storage.db import Conn, Database, StorageError

__all__ = [
    "SchemaOutOfDate",
    "alembic_config",
    "check_schema",
    "current_revision",
    "head_revision",
    "migrate",
    "upgrade_to_head",
]

_ROOT = Path(__file__).resolve().parents[2]

# Alembic keeps the running migration in module globals (``alembic.context``), so two upgrades
# in one process must not overlap; across processes env.py's database lock serialises them.
_IN_PROCESS = threading.Lock()


class SchemaOutOfDate(StorageError):
    """Raised by :func:`check_schema` when the database is not at the newest migration."""


def alembic_config(url: str, *, ini: Path | None = None) -> Config:
    """An Alembic config for the database at ``url`` (a homeserver database URL)."""
    ini_path = ini if ini is not None else _ROOT / "alembic.ini"
    cfg = Config(str(ini_path))
    cfg.set_main_option("script_location", str(ini_path.parent / "migrations"))
    cfg.attributes["db_url"] = url
    return cfg


def upgrade_to_head(url: str, *, ini: Path | None = None) -> list[str]:
    """Upgrade the database at ``url`` to head, blocking; return the revisions this call applied.

    Safe to call from several processes at once: one migrates, the others wait and apply none.
    """
    cfg = alembic_config(url, ini=ini)
    applied: list[str] = []

    def on_version_apply(*, step: Any, **_: Any) -> None:
        applied.append(str(step.up_revision_id))

    cfg.attributes["on_version_apply"] = on_version_apply
    with _IN_PROCESS:
        command.upgrade(cfg, "head")
    return applied


async def migrate(url: str, *, ini: Path | None = None) -> list[str]:
    """Upgrade the database at ``url`` to head in a worker thread; return the revisions applied."""
    return await trio.to_thread.run_sync(lambda: upgrade_to_head(url, ini=ini))


def head_revision(*, ini: Path | None = None) -> str:
    """The newest migration's revision ID."""
    script = ScriptDirectory.from_config(alembic_config("", ini=ini))
    head = script.get_current_head()
    if head is None:
        raise RuntimeError("no migrations found")
    return head


_VERSION = text("SELECT version_num FROM alembic_version")


async def current_revision(db: Database) -> str | None:
    """The revision the database is at, or ``None`` if it was never migrated."""

    async def work(conn: Conn) -> str | None:
        value = await conn.fetch_val(_VERSION)
        return None if value is None else str(value)

    try:
        return await db.read(work, name="current_revision")
    except StorageError:
        return None  # no alembic_version table


async def check_schema(db: Database, *, ini: Path | None = None) -> None:
    """Check that the database is at the newest migration.

    Raises:
        SchemaOutOfDate: it is not (run ``homeserver migrate`` or :func:`migrate`).
    """
    head = head_revision(ini=ini)
    current = await current_revision(db)
    if current != head:
        raise SchemaOutOfDate(f"database schema is at {current or 'nothing'}, code needs {head}")
