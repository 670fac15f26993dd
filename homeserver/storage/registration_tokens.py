"""Registration tokens (``m.login.registration_token``): the ``registration_tokens`` table."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import and_, bindparam, delete, insert, or_, select, update

from homeserver.storage.db import Conn, Database, Row, UniqueViolation
from homeserver.storage.schema import registration_tokens as t

__all__ = ["RegistrationTokenExists", "RegistrationTokenRow", "RegistrationTokenStore"]


class RegistrationTokenExists(UniqueViolation):
    """Raised by :meth:`RegistrationTokenStore.create` when the token exists."""


@dataclass(frozen=True, slots=True)
class RegistrationTokenRow:
    token: str
    uses_allowed: int | None
    pending: int
    completed: int
    expiry_time: int | None
    created_ts: int

    def is_valid(self, now_ms: int) -> bool:
        """Whether the token may still be used to register."""
        if self.expiry_time is not None and self.expiry_time <= now_ms:
            return False
        return self.uses_allowed is None or self.completed + self.pending < self.uses_allowed


_COLS = (t.c.token, t.c.uses_allowed, t.c.pending, t.c.completed, t.c.expiry_time, t.c.created_ts)
_INSERT = insert(t).values(
    token=bindparam("token"),
    uses_allowed=bindparam("uses_allowed"),
    pending=0,
    completed=0,
    expiry_time=bindparam("expiry_time"),
    created_ts=bindparam("created_ts"),
)
_GET = select(*_COLS).where(t.c.token == bindparam("token"))
_LIST = select(*_COLS).order_by(t.c.created_ts, t.c.token)
_DELETE = delete(t).where(t.c.token == bindparam("token"))
_UPDATE = (
    update(t)
    .where(t.c.token == bindparam("token"))
    .values(uses_allowed=bindparam("uses_allowed"), expiry_time=bindparam("expiry_time"))
)
_ADD_PENDING = (
    update(t)
    .where(
        t.c.token == bindparam("token"),
        or_(t.c.expiry_time.is_(None), t.c.expiry_time > bindparam("now")),
        or_(
            t.c.uses_allowed.is_(None),
            t.c.completed + t.c.pending < t.c.uses_allowed,
        ),
    )
    .values(pending=t.c.pending + 1)
)
_CONSUME = (
    update(t)
    .where(and_(t.c.token == bindparam("token"), t.c.pending > 0))
    .values(pending=t.c.pending - 1, completed=t.c.completed + 1)
)
_RELEASE = (
    update(t)
    .where(and_(t.c.token == bindparam("token"), t.c.pending > 0))
    .values(pending=t.c.pending - 1)
)


def _row(row: Row | None) -> RegistrationTokenRow | None:
    return None if row is None else RegistrationTokenRow(*row)


class RegistrationTokenStore:
    """Create, list, use and delete registration tokens.

    A token is *pending* for each UIA session that completed the stage with it and has not
    registered yet, and *completed* once per account created with it; ``uses_allowed`` bounds
    the sum, so two sessions cannot both take the last use.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create(
        self, token: str, *, uses_allowed: int | None, expiry_time: int | None, created_ts: int
    ) -> RegistrationTokenRow:
        """Raises: RegistrationTokenExists."""

        async def work(conn: Conn) -> None:
            await conn.execute(
                _INSERT,
                {
                    "token": token,
                    "uses_allowed": uses_allowed,
                    "expiry_time": expiry_time,
                    "created_ts": created_ts,
                },
            )

        try:
            await self._db.run(work, name="registration_token_create")
        except UniqueViolation as e:
            raise RegistrationTokenExists(str(e), constraint=e.constraint) from e
        return RegistrationTokenRow(token, uses_allowed, 0, 0, expiry_time, created_ts)

    async def get(self, token: str) -> RegistrationTokenRow | None:
        async def work(conn: Conn) -> RegistrationTokenRow | None:
            return _row(await conn.fetch_one(_GET, {"token": token}))

        return await self._db.read(work, name="registration_token_get")

    async def list(self) -> list[RegistrationTokenRow]:
        async def work(conn: Conn) -> list[RegistrationTokenRow]:
            return [RegistrationTokenRow(*r) for r in await conn.fetch_all(_LIST)]

        return await self._db.read(work, name="registration_token_list")

    async def update(
        self, token: str, *, uses_allowed: int | None, expiry_time: int | None
    ) -> RegistrationTokenRow | None:
        """Replace the limits; return the new row or ``None`` if the token does not exist."""

        async def work(conn: Conn) -> RegistrationTokenRow | None:
            await conn.execute(
                _UPDATE,
                {"token": token, "uses_allowed": uses_allowed, "expiry_time": expiry_time},
            )
            return _row(await conn.fetch_one(_GET, {"token": token}))

        return await self._db.run(work, name="registration_token_update")

    async def delete(self, token: str) -> bool:
        async def work(conn: Conn) -> int:
            return await conn.execute(_DELETE, {"token": token})

        return await self._db.run(work, name="registration_token_delete") > 0

    async def reserve(self, token: str, *, now: int) -> bool:
        """Take one pending use if the token is valid at ``now``; return whether it was."""

        async def work(conn: Conn) -> int:
            return await conn.execute(_ADD_PENDING, {"token": token, "now": now})

        return await self._db.run(work, name="registration_token_reserve") > 0

    async def consume(self, token: str) -> None:
        """Turn one pending use into a completed one (an account was created with it)."""

        async def work(conn: Conn) -> None:
            await conn.execute(_CONSUME, {"token": token})

        await self._db.run(work, name="registration_token_consume")

    async def release(self, token: str) -> None:
        """Give back a pending use (its UIA session expired without registering)."""

        async def work(conn: Conn) -> None:
            await conn.execute(_RELEASE, {"token": token})

        await self._db.run(work, name="registration_token_release")
