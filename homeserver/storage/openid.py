"""OpenID tokens: the ``openid_tokens`` table.

A token is handed to another service, which exchanges it for the user's ID through
``GET /_matrix/federation/v1/openid/userinfo``. Only a SHA-256 hash of the token is stored, as
for access tokens; a token is valid until ``valid_until_ms``.
"""

from __future__ import annotations

from sqlalchemy import and_, bindparam, delete, insert, select

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import openid_tokens

__all__ = ["OpenIdTokenStore"]

_INSERT = insert(openid_tokens).values(
    token_hash=bindparam("token_hash"),
    user_id=bindparam("user_id"),
    valid_until_ms=bindparam("valid_until_ms"),
)
_LOOKUP = select(openid_tokens.c.user_id).where(
    and_(
        openid_tokens.c.token_hash == bindparam("token_hash"),
        openid_tokens.c.valid_until_ms > bindparam("now_ms"),
    )
)
_DELETE_EXPIRED = delete(openid_tokens).where(openid_tokens.c.valid_until_ms <= bindparam("now_ms"))


class OpenIdTokenStore:
    """Store and look up OpenID tokens by hash."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def add_token(self, token_hash: str, user_id: str, *, valid_until_ms: int) -> None:
        """Store a new token's hash."""

        async def work(conn: Conn) -> None:
            await conn.execute(
                _INSERT,
                {"token_hash": token_hash, "user_id": user_id, "valid_until_ms": valid_until_ms},
            )

        await self._db.run(work, name="add_openid_token")

    async def user_of_token(self, token_hash: str, *, now_ms: int) -> str | None:
        """The user who owns the token, or ``None`` if it is unknown or expired at ``now_ms``."""

        async def work(conn: Conn) -> str | None:
            user_id: str | None = await conn.fetch_val(
                _LOOKUP, {"token_hash": token_hash, "now_ms": now_ms}
            )
            return user_id

        return await self._db.read(work, name="openid_token_user")

    async def delete_expired(self, *, now_ms: int) -> int:
        """Remove tokens expired at ``now_ms``; return how many."""

        async def work(conn: Conn) -> int:
            return await conn.execute(_DELETE_EXPIRED, {"now_ms": now_ms})

        return await self._db.run(work, name="delete_expired_openid_tokens")
