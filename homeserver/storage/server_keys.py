"""Other servers' signing keys: the ``server_keys`` table.

One row per ``(server, key ID)``, written when a key response from the origin (or relayed by a
notary) has been verified by the key ring (``services/server_keys.py``). The row keeps the whole
signed response the key came in (``key_json``), so that we can answer as a notary with the
origin's own signature, and that response's ``valid_until_ts`` as received (the spec's 7-day cap
is applied where the key is used, from ``fetched_ts``).

Replacement rule: a row is only overwritten by a response whose ``valid_until_ts`` is at least
the stored one. A server that stops listing a key cannot make us forget it, and a replayed older
response cannot shorten a key's known validity (server-server API › Querying keys through
another server: a notary must not drop a still-valid key because of a spurious answer).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import BigInteger, bindparam, select, text

from homeserver.storage.db import Conn, Database, Row
from homeserver.storage.schema import server_keys

__all__ = ["ServerKeyRow", "ServerKeyStore"]


@dataclass(frozen=True, slots=True)
class ServerKeyRow:
    """One key of another server, with the signed response it came in."""

    server_name: str
    key_id: str
    #: unpadded base64 of the public key
    verify_key: str
    #: the response's ``valid_until_ts``, uncapped
    valid_until_ts: int
    #: set when the key was in ``old_verify_keys``
    expired_ts: int | None
    fetched_ts: int
    #: the origin itself, or the notary that relayed the response
    fetched_from: str
    #: the signed key response (canonical JSON text)
    key_json: str


# Same SQL for both databases (SQLite >= 3.24 has UPSERT with a WHERE on the update).
_UPSERT = text(
    "INSERT INTO server_keys (server_name, key_id, verify_key, valid_until_ts, expired_ts, "
    "fetched_ts, fetched_from, key_json) VALUES (:server_name, :key_id, :verify_key, "
    ":valid_until_ts, :expired_ts, :fetched_ts, :fetched_from, :key_json) "
    "ON CONFLICT (server_name, key_id) DO UPDATE SET verify_key = excluded.verify_key, "
    "valid_until_ts = excluded.valid_until_ts, expired_ts = excluded.expired_ts, "
    "fetched_ts = excluded.fetched_ts, fetched_from = excluded.fetched_from, "
    "key_json = excluded.key_json "
    "WHERE excluded.valid_until_ts >= server_keys.valid_until_ts"
).bindparams(
    bindparam("valid_until_ts", type_=BigInteger),
    bindparam("expired_ts", type_=BigInteger),
    bindparam("fetched_ts", type_=BigInteger),
)

_COLUMNS = (
    server_keys.c.server_name,
    server_keys.c.key_id,
    server_keys.c.verify_key,
    server_keys.c.valid_until_ts,
    server_keys.c.expired_ts,
    server_keys.c.fetched_ts,
    server_keys.c.fetched_from,
    server_keys.c.key_json,
)
_OF_SERVER = (
    select(*_COLUMNS)
    .where(server_keys.c.server_name == bindparam("server_name"))
    .order_by(server_keys.c.key_id)
)


def _row(r: Row) -> ServerKeyRow:
    return ServerKeyRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])


class ServerKeyStore:
    """Cached keys of other servers."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def store_keys(self, rows: Sequence[ServerKeyRow]) -> None:
        """Insert or replace keys, each only if at least as valid as the stored one."""
        if not rows:
            return
        params = [
            {
                "server_name": r.server_name,
                "key_id": r.key_id,
                "verify_key": r.verify_key,
                "valid_until_ts": r.valid_until_ts,
                "expired_ts": r.expired_ts,
                "fetched_ts": r.fetched_ts,
                "fetched_from": r.fetched_from,
                "key_json": r.key_json,
            }
            for r in rows
        ]

        async def work(conn: Conn) -> None:
            for p in params:
                await conn.execute(_UPSERT, p)

        await self._db.run(work, name="store_server_keys")

    async def keys_of(self, server_name: str) -> list[ServerKeyRow]:
        """Every cached key of ``server_name``, by key ID."""

        async def work(conn: Conn) -> list[ServerKeyRow]:
            return [_row(r) for r in await conn.fetch_all(_OF_SERVER, {"server_name": server_name})]

        return await self._db.read(work, name="server_keys_of")
