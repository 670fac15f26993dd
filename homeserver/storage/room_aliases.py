"""Local room aliases: the ``room_aliases`` table.

Only aliases on our own server name are stored here (the spec lets a server refuse to host
aliases for other domains, and every server does). An alias points to exactly one room; the
primary key makes a second ``PUT`` of the same alias fail with :class:`AliasExists`, whatever
the race. Room upgrades move every alias of the old room in one statement.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update

from homeserver.storage.db import Conn, Database, Row, UniqueViolation
from homeserver.storage.schema import room_aliases

__all__ = ["AliasExists", "AliasRow", "RoomAliasStore"]


class AliasExists(UniqueViolation):
    """Raised by :meth:`RoomAliasStore.create_alias` when the alias is already taken."""


@dataclass(frozen=True, slots=True)
class AliasRow:
    alias: str
    room_id: str
    creator: str
    created_ts: int


_COLUMNS = (
    room_aliases.c.alias,
    room_aliases.c.room_id,
    room_aliases.c.creator,
    room_aliases.c.created_ts,
)
_INSERT = insert(room_aliases).values({c.name: bindparam(c.name) for c in _COLUMNS})
_GET = select(*_COLUMNS).where(room_aliases.c.alias == bindparam("alias"))
_DELETE = delete(room_aliases).where(room_aliases.c.alias == bindparam("alias"))
_FOR_ROOM = (
    select(room_aliases.c.alias)
    .where(room_aliases.c.room_id == bindparam("room_id"))
    .order_by(room_aliases.c.alias)
)
_MOVE = (
    update(room_aliases)
    .where(room_aliases.c.room_id == bindparam("old_room_id"))
    .values(room_id=bindparam("new_room_id"))
)


class RoomAliasStore:
    """Local room aliases. One unit of work per method."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_alias(self, alias: str, room_id: str, creator: str, created_ts: int) -> None:
        """Map ``alias`` to ``room_id``.

        Raises:
            AliasExists: the alias already points to a room.
        """
        params = {"alias": alias, "room_id": room_id, "creator": creator, "created_ts": created_ts}

        async def work(conn: Conn) -> None:
            await conn.execute(_INSERT, params)

        try:
            await self._db.run(work, name="create_alias")
        except UniqueViolation as e:
            raise AliasExists(str(e), constraint=e.constraint) from None

    async def get_alias(self, alias: str) -> AliasRow | None:
        async def work(conn: Conn) -> Row | None:
            return await conn.fetch_one(_GET, {"alias": alias})

        row = await self._db.read(work, name="get_alias")
        return None if row is None else AliasRow(row[0], row[1], row[2], int(row[3]))

    async def delete_alias(self, alias: str) -> bool:
        """Remove ``alias``; False if it did not exist."""

        async def work(conn: Conn) -> int:
            return await conn.execute(_DELETE, {"alias": alias})

        return await self._db.run(work, name="delete_alias") > 0

    async def aliases_for_room(self, room_id: str) -> list[str]:
        """The local aliases pointing to ``room_id``, sorted."""

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(_FOR_ROOM, {"room_id": room_id})

        return [r[0] for r in await self._db.read(work, name="aliases_for_room")]

    async def move_aliases(self, old_room_id: str, new_room_id: str) -> list[str]:
        """Point every alias of ``old_room_id`` to ``new_room_id`` (room upgrades); returns them."""

        async def work(conn: Conn) -> list[str]:
            moved = [r[0] for r in await conn.fetch_all(_FOR_ROOM, {"room_id": old_room_id})]
            if moved:
                await conn.execute(_MOVE, {"old_room_id": old_room_id, "new_room_id": new_room_id})
            return moved

        return await self._db.run(work, name="move_aliases")
