"""Single-use credentials that were used up: the ``spent_credentials`` table.

Two kinds today:

- ``refresh``: the hash of a refresh token that was rotated and retired. Presenting it again
  means the token family leaked; the auth service then revokes the device's session.
- ``msisdn_login``: the ``sid`` of a phone verification session that a login consumed, so one
  SMS code logs in once.

Rows are pruned after a retention period (:meth:`SpentCredentialStore.delete_older_than`).
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select

from homeserver.storage.db import Conn, Database, UniqueViolation
from homeserver.storage.schema import spent_credentials as t

__all__ = ["SpentCredential", "SpentCredentialStore"]


@dataclass(frozen=True, slots=True)
class SpentCredential:
    kind: str
    credential: str
    user_id: str
    device_id: str | None
    spent_ts: int


_COLS = (t.c.kind, t.c.credential, t.c.user_id, t.c.device_id, t.c.spent_ts)
_INSERT = insert(t).values({c.name: bindparam(c.name) for c in _COLS})
_GET = select(*_COLS).where(
    t.c.kind == bindparam("kind"), t.c.credential == bindparam("credential")
)
_DELETE_OLD = delete(t).where(t.c.spent_ts < bindparam("before"))


class SpentCredentialStore:
    """Remember and look up used-up credentials."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def spend(
        self, kind: str, credential: str, *, user_id: str, device_id: str | None, now: int
    ) -> bool:
        """Mark a credential used; return False if it was used already."""
        params = {
            "kind": kind,
            "credential": credential,
            "user_id": user_id,
            "device_id": device_id,
            "spent_ts": now,
        }

        async def work(conn: Conn) -> None:
            await conn.execute(_INSERT, params)

        try:
            await self._db.run(work, name="spend_credential")
        except UniqueViolation:
            return False
        return True

    async def get(self, kind: str, credential: str) -> SpentCredential | None:
        """The record of a used-up credential, or None."""

        async def work(conn: Conn) -> SpentCredential | None:
            row = await conn.fetch_one(_GET, {"kind": kind, "credential": credential})
            return None if row is None else SpentCredential(*row)

        return await self._db.read(work, name="get_spent_credential")

    async def delete_older_than(self, before: int) -> int:
        """Forget credentials spent before ``before``; return how many."""

        async def work(conn: Conn) -> int:
            return await conn.execute(_DELETE_OLD, {"before": before})

        return await self._db.run(work, name="prune_spent_credentials")
