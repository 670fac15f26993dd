"""Phone number validation sessions: the ``threepid_sessions`` table.

One session per (medium, address, client_secret), as the spec's ``requestToken`` asks: the same
client secret and ``send_attempt`` give back the same ``sid``. Only a hash of the code is kept.
The binding of a validated number to an account is ``users.phone`` (see ``users.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update

from homeserver.storage.db import Conn, Database, Row
from homeserver.storage.schema import threepid_sessions as t

__all__ = ["ThreepidSessionRow", "ThreepidStore"]


@dataclass(frozen=True, slots=True)
class ThreepidSessionRow:
    sid: str
    medium: str
    address: str
    client_secret: str
    send_attempt: int
    code_hash: str | None
    code_expires_ts: int
    last_sent_ts: int
    failed_attempts: int
    validated_ts: int | None
    created_ts: int


_COLS = (
    t.c.sid,
    t.c.medium,
    t.c.address,
    t.c.client_secret,
    t.c.send_attempt,
    t.c.code_hash,
    t.c.code_expires_ts,
    t.c.last_sent_ts,
    t.c.failed_attempts,
    t.c.validated_ts,
    t.c.created_ts,
)
_INSERT = insert(t).values({c.name: bindparam(c.name) for c in _COLS})
_GET = select(*_COLS).where(t.c.sid == bindparam("sid"))
_FIND = select(*_COLS).where(
    t.c.medium == bindparam("medium"),
    t.c.address == bindparam("address"),
    t.c.client_secret == bindparam("client_secret"),
)
_NEW_CODE = (
    update(t)
    .where(t.c.sid == bindparam("sid"))
    .values(
        send_attempt=bindparam("send_attempt"),
        code_hash=bindparam("code_hash"),
        code_expires_ts=bindparam("code_expires_ts"),
        last_sent_ts=bindparam("last_sent_ts"),
        failed_attempts=0,
    )
)
_FAIL = update(t).where(t.c.sid == bindparam("sid")).values(failed_attempts=t.c.failed_attempts + 1)
_BURN = update(t).where(t.c.sid == bindparam("sid")).values(code_hash=None)
_VALIDATE = (
    update(t)
    .where(t.c.sid == bindparam("sid"))
    .values(validated_ts=bindparam("validated_ts"), code_hash=None)
)
_DELETE_OLD = delete(t).where(t.c.created_ts <= bindparam("before"))


def _row(row: Row | None) -> ThreepidSessionRow | None:
    return None if row is None else ThreepidSessionRow(*row)


class ThreepidStore:
    """Validation sessions for phone numbers."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def find(
        self, medium: str, address: str, client_secret: str
    ) -> ThreepidSessionRow | None:
        async def work(conn: Conn) -> ThreepidSessionRow | None:
            return _row(
                await conn.fetch_one(
                    _FIND, {"medium": medium, "address": address, "client_secret": client_secret}
                )
            )

        return await self._db.read(work, name="threepid_find")

    async def get(self, sid: str) -> ThreepidSessionRow | None:
        async def work(conn: Conn) -> ThreepidSessionRow | None:
            return _row(await conn.fetch_one(_GET, {"sid": sid}))

        return await self._db.read(work, name="threepid_get")

    async def create(self, row: ThreepidSessionRow) -> None:
        """Raises: UniqueViolation if a session for (medium, address, client_secret) exists."""

        async def work(conn: Conn) -> None:
            await conn.execute(_INSERT, {c.name: getattr(row, c.name) for c in _COLS})

        await self._db.run(work, name="threepid_create")

    async def new_code(
        self, sid: str, *, send_attempt: int, code_hash: str, code_expires_ts: int, sent_ts: int
    ) -> None:
        """Replace the session's code (and reset its failed attempts)."""

        async def work(conn: Conn) -> None:
            await conn.execute(
                _NEW_CODE,
                {
                    "sid": sid,
                    "send_attempt": send_attempt,
                    "code_hash": code_hash,
                    "code_expires_ts": code_expires_ts,
                    "last_sent_ts": sent_ts,
                },
            )

        await self._db.run(work, name="threepid_new_code")

    async def record_failure(self, sid: str, *, max_attempts: int) -> int:
        """Count a wrong code; at ``max_attempts`` the code is burnt. Return the new count."""

        async def work(conn: Conn) -> int:
            await conn.execute(_FAIL, {"sid": sid})
            row = _row(await conn.fetch_one(_GET, {"sid": sid}))
            count = row.failed_attempts if row else 0
            if count >= max_attempts:
                await conn.execute(_BURN, {"sid": sid})
            return count

        return await self._db.run(work, name="threepid_record_failure")

    async def mark_validated(self, sid: str, *, now: int) -> None:
        async def work(conn: Conn) -> None:
            await conn.execute(_VALIDATE, {"sid": sid, "validated_ts": now})

        await self._db.run(work, name="threepid_mark_validated")

    async def delete_older_than(self, before: int) -> int:
        """Delete sessions created at or before ``before``; return how many."""

        async def work(conn: Conn) -> int:
            return await conn.execute(_DELETE_OLD, {"before": before})

        return await self._db.run(work, name="threepid_delete_old")
