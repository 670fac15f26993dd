"""Per-user account data, global and per room: the ``account_data`` table.

Each row is one ``(user, room, type)`` with its JSON content and the ``ACCOUNT_DATA`` stream
position of its last write; global account data has ``room_id = ''`` (a primary key column cannot
be NULL on PostgreSQL). Every write takes the next stream position in its own transaction, last,
as :mod:`homeserver.storage.stream_ids` asks, so ``/sync`` can fetch "account data written after
position N" with the ``(user_id, stream_id)`` index.

:meth:`AccountDataStore.modify` is read-modify-write in one transaction (room tags live inside
the ``m.tag`` content); its ``change`` function may run more than once on conflicts, so it must be
pure.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import BigInteger, and_, bindparam, select, text

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import account_data
from homeserver.storage.stream_ids import next_position
from homeserver.streams import StreamName

__all__ = ["GLOBAL", "AccountDataRow", "AccountDataStore"]

#: The ``room_id`` of global account data.
GLOBAL = ""

JsonObject = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class AccountDataRow:
    """One account data entry; ``room_id`` is :data:`GLOBAL` for global data."""

    user_id: str
    room_id: str
    data_type: str
    content: JsonObject
    stream_id: int


_IS_ENTRY = and_(
    account_data.c.user_id == bindparam("user_id"),
    account_data.c.room_id == bindparam("room_id"),
    account_data.c.data_type == bindparam("data_type"),
)
_GET = select(account_data.c.content_json).where(_IS_ENTRY)
# The same SQL runs on both databases (SQLite >= 3.24 has UPSERT with ``excluded``).
_UPSERT = text(
    "INSERT INTO account_data (user_id, room_id, data_type, content_json, stream_id) "
    "VALUES (:user_id, :room_id, :data_type, :content_json, :stream_id) "
    "ON CONFLICT (user_id, room_id, data_type) DO UPDATE SET "
    "content_json = excluded.content_json, stream_id = excluded.stream_id"
).bindparams(
    bindparam("user_id"),
    bindparam("room_id"),
    bindparam("data_type"),
    bindparam("content_json"),
    bindparam("stream_id", type_=BigInteger),
)
_SINCE = (
    select(
        account_data.c.room_id,
        account_data.c.data_type,
        account_data.c.content_json,
        account_data.c.stream_id,
    )
    .where(
        and_(
            account_data.c.user_id == bindparam("user_id"),
            account_data.c.stream_id > bindparam("since"),
        )
    )
    .order_by(account_data.c.stream_id)
)


async def _write(
    conn: Conn, user_id: str, room_id: str, data_type: str, content_json: str, position: int
) -> int:
    await conn.execute(
        _UPSERT,
        {
            "user_id": user_id,
            "room_id": room_id,
            "data_type": data_type,
            "content_json": content_json,
            "stream_id": position,
        },
    )
    return position


class _NoChange(Exception):
    """Internal: ``change`` returned None; roll back so the stream position is given back."""


class AccountDataStore:
    """Read and write account data."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user_id: str, room_id: str, data_type: str) -> JsonObject | None:
        """The content, or ``None`` if never set."""

        async def work(conn: Conn) -> str | None:
            value: str | None = await conn.fetch_val(
                _GET, {"user_id": user_id, "room_id": room_id, "data_type": data_type}
            )
            return value

        content_json = await self._db.read(work, name="get_account_data")
        return None if content_json is None else orjson.loads(content_json)

    async def put(self, user_id: str, room_id: str, data_type: str, content: JsonObject) -> int:
        """Set the content (replacing any); return the ACCOUNT_DATA stream position."""
        content_json = orjson.dumps(content).decode()

        async def work(conn: Conn) -> int:
            position = await next_position(conn, StreamName.ACCOUNT_DATA)
            return await _write(conn, user_id, room_id, data_type, content_json, position)

        return await self._db.run(work, name="put_account_data")

    async def modify(
        self,
        user_id: str,
        room_id: str,
        data_type: str,
        change: Callable[[JsonObject | None], JsonObject | None],
    ) -> int | None:
        """Replace the content with ``change(current)`` in one transaction.

        Args:
            change: pure; gets the current content (``None`` if unset) and returns the new
                content, or ``None`` to leave it as it is (no stream position is taken).

        Returns:
            The ACCOUNT_DATA stream position of the write, or ``None`` if nothing changed.
        """
        params = {"user_id": user_id, "room_id": room_id, "data_type": data_type}

        async def work(conn: Conn) -> int | None:
            # Allocate first: the stream row's lock serialises this read-modify-write against
            # every other account data writer (on PostgreSQL READ COMMITTED, the read below then
            # sees what they committed). Without it two tag changes could both read the old
            # m.tag and the second would drop the first's tag. A no-op rolls the position back.
            position = await next_position(conn, StreamName.ACCOUNT_DATA)
            current_json: str | None = await conn.fetch_val(_GET, params)
            current = None if current_json is None else orjson.loads(current_json)
            new = change(current)
            if new is None:
                raise _NoChange()
            content_json = orjson.dumps(new).decode()
            return await _write(conn, user_id, room_id, data_type, content_json, position)

        try:
            return await self._db.run(work, name="modify_account_data")
        except _NoChange:
            return None

    async def changed_since(self, user_id: str, since: int) -> list[AccountDataRow]:
        """The user's entries written after stream position ``since``, oldest first."""

        async def work(conn: Conn) -> list[AccountDataRow]:
            rows = await conn.fetch_all(_SINCE, {"user_id": user_id, "since": since})
            return [
                AccountDataRow(user_id, str(r), str(t), orjson.loads(c), int(s))
                for r, t, c, s in rows
            ]

        return await self._db.read(work, name="account_data_since")
