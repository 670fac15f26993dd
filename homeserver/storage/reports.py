"""Content reports (events, rooms, users) kept for the server's operators."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, insert, select

from homeserver.storage.db import Conn, Database, Row
from homeserver.storage.schema import content_reports

__all__ = ["ContentReport", "ReportStore"]


@dataclass(frozen=True, slots=True)
class ContentReport:
    """One report. ``kind`` is ``event``, ``room`` or ``user``."""

    kind: str
    reporter: str
    room_id: str | None
    event_id: str | None
    target_user_id: str | None
    reason: str | None
    score: int | None
    received_ts: int


_COLUMNS = [c.name for c in content_reports.columns if c.name != "id"]
_INSERT = insert(content_reports).values({name: bindparam(name) for name in _COLUMNS})
_NEWEST = (
    select(*[content_reports.c[name] for name in _COLUMNS])
    .order_by(content_reports.c.id.desc())
    .limit(bindparam("limit"))
)


class ReportStore:
    """Writes and lists content reports.

    Args:
        db: the database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, report: ContentReport) -> None:
        """Store one report."""
        params = {name: getattr(report, name) for name in _COLUMNS}

        async def work(conn: Conn) -> None:
            await conn.execute(_INSERT, params)

        await self._db.run(work, name="add_content_report")

    async def newest(self, limit: int) -> list[ContentReport]:
        """The newest ``limit`` reports, newest first."""

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_NEWEST, {"limit": limit})

        rows = await self._db.read(work, name="newest_content_reports")
        return [ContentReport(*row) for row in rows]
