"""Email addresses bound to accounts: the ``user_threepids`` table.

An address (case-folded by the service) belongs to one account only: (medium, address) is the
primary key, so binding an address another account has raises :class:`ThreepidTaken`. Phone
numbers are not here: they are ``users.phone``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select

from homeserver.storage.db import Conn, Database, UniqueViolation
from homeserver.storage.schema import user_threepids as t

__all__ = ["BoundThreepidRow", "ThreepidTaken", "UserThreepidStore"]


class ThreepidTaken(Exception):
    """Another account has this address."""


@dataclass(frozen=True, slots=True)
class BoundThreepidRow:
    user_id: str
    medium: str
    address: str
    validated_ts: int
    added_ts: int


_COLS = (t.c.user_id, t.c.medium, t.c.address, t.c.validated_ts, t.c.added_ts)
_INSERT = insert(t).values({c.name: bindparam(c.name) for c in _COLS})
_OWNER = select(*_COLS).where(
    t.c.medium == bindparam("medium"), t.c.address == bindparam("address")
)
_OF_USER = select(*_COLS).where(t.c.user_id == bindparam("user_id")).order_by(t.c.added_ts)
_DELETE = delete(t).where(
    t.c.user_id == bindparam("user_id"),
    t.c.medium == bindparam("medium"),
    t.c.address == bindparam("address"),
)
_DELETE_ALL = delete(t).where(t.c.user_id == bindparam("user_id"))


class UserThreepidStore:
    """Bound email addresses."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def owner(self, medium: str, address: str) -> BoundThreepidRow | None:
        """The binding of an address, or None."""

        async def work(conn: Conn) -> BoundThreepidRow | None:
            row = await conn.fetch_one(_OWNER, {"medium": medium, "address": address})
            return None if row is None else BoundThreepidRow(*row)

        return await self._db.read(work, name="user_threepids_owner")

    async def of_user(self, user_id: str) -> list[BoundThreepidRow]:
        """A user's addresses, oldest first."""

        async def work(conn: Conn) -> list[BoundThreepidRow]:
            rows = await conn.fetch_all(_OF_USER, {"user_id": user_id})
            return [BoundThreepidRow(*r) for r in rows]

        return await self._db.read(work, name="user_threepids_of_user")

    async def bind(self, row: BoundThreepidRow) -> None:
        """Bind an address; binding it to its owner again changes nothing.

        Raises:
            ThreepidTaken: another account has it.
        """

        async def work(conn: Conn) -> bool:
            existing = await conn.fetch_one(_OWNER, {"medium": row.medium, "address": row.address})
            if existing is not None:
                return bool(existing[0] == row.user_id)
            await conn.execute(_INSERT, {c.name: getattr(row, c.name) for c in _COLS})
            return True

        try:
            ours = await self._db.run(work, name="user_threepids_bind")
        except UniqueViolation:
            raise ThreepidTaken() from None
        if not ours:
            raise ThreepidTaken()

    async def unbind(self, user_id: str, medium: str, address: str) -> bool:
        """Remove a binding of this user; return whether there was one."""

        async def work(conn: Conn) -> bool:
            changed = await conn.execute(
                _DELETE, {"user_id": user_id, "medium": medium, "address": address}
            )
            return changed > 0

        return await self._db.run(work, name="user_threepids_unbind")

    async def unbind_all(self, user_id: str) -> None:
        """Remove every address of a user (deactivation)."""

        async def work(conn: Conn) -> None:
            await conn.execute(_DELETE_ALL, {"user_id": user_id})

        await self._db.run(work, name="user_threepids_unbind_all")
