"""Access tokens and refresh tokens.

Only SHA-256 hashes of tokens are stored (a stolen database gives no usable token).

- :meth:`TokenStore.issue` replaces a device's tokens (login, registration).
- :meth:`TokenStore.refresh` issues a new pair for a refresh token; the old refresh token stays
  usable until the new pair is used (spec: Refreshing access tokens), and
  :meth:`TokenStore.lookup_access` reports that first use so the caller can
  :meth:`TokenStore.retire_predecessor`.

Devices themselves belong to the devices store (``devices.py``): logging out deletes the device
there, which revokes its tokens in the same transaction.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import access_tokens, refresh_tokens, users

__all__ = ["AccessTokenInfo", "IssuedTokens", "RefreshOutcome", "TokenStore"]


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    """Hashes and lifetimes of a token pair to store."""

    access_hash: str
    access_valid_until_ms: int | None
    refresh_hash: str | None
    refresh_expires_ts: int | None


@dataclass(frozen=True, slots=True)
class AccessTokenInfo:
    user_id: str
    device_id: str
    valid_until_ms: int | None
    is_guest: bool
    is_admin: bool
    deactivated: bool
    refresh_hash: str | None
    #: a refresh token that was exchanged for this token's and is not yet retired
    predecessor_hash: str | None


@dataclass(frozen=True, slots=True)
class RefreshOutcome:
    user_id: str
    device_id: str


_prev = refresh_tokens.alias("prev")
_LOOKUP = (
    select(
        access_tokens.c.user_id,
        access_tokens.c.device_id,
        access_tokens.c.valid_until_ms,
        users.c.is_guest,
        users.c.is_admin,
        users.c.deactivated,
        access_tokens.c.refresh_token_hash,
        select(_prev.c.token_hash)
        .where(_prev.c.next_token_hash == access_tokens.c.refresh_token_hash)
        .limit(1)
        .scalar_subquery(),
    )
    .join(users, users.c.user_id == access_tokens.c.user_id)
    .where(access_tokens.c.token_hash == bindparam("token_hash"))
)
_DELETE_DEVICE_ACCESS = delete(access_tokens).where(
    access_tokens.c.user_id == bindparam("user_id"),
    access_tokens.c.device_id == bindparam("device_id"),
)
_DELETE_DEVICE_REFRESH = delete(refresh_tokens).where(
    refresh_tokens.c.user_id == bindparam("user_id"),
    refresh_tokens.c.device_id == bindparam("device_id"),
)
_INSERT_ACCESS = insert(access_tokens).values(
    token_hash=bindparam("token_hash"),
    user_id=bindparam("user_id"),
    device_id=bindparam("device_id"),
    created_ts=bindparam("created_ts"),
    valid_until_ms=bindparam("valid_until_ms"),
    refresh_token_hash=bindparam("refresh_token_hash"),
)
_INSERT_REFRESH = insert(refresh_tokens).values(
    token_hash=bindparam("token_hash"),
    user_id=bindparam("user_id"),
    device_id=bindparam("device_id"),
    created_ts=bindparam("created_ts"),
    expires_ts=bindparam("expires_ts"),
    next_token_hash=None,
)
_GET_REFRESH = select(
    refresh_tokens.c.user_id,
    refresh_tokens.c.device_id,
    refresh_tokens.c.expires_ts,
    refresh_tokens.c.next_token_hash,
).where(refresh_tokens.c.token_hash == bindparam("token_hash"))
_DELETE_ACCESS_OF_REFRESH = delete(access_tokens).where(
    access_tokens.c.refresh_token_hash == bindparam("token_hash")
)
_DELETE_REFRESH = delete(refresh_tokens).where(
    refresh_tokens.c.token_hash == bindparam("token_hash")
)
_SET_NEXT = (
    update(refresh_tokens)
    .where(refresh_tokens.c.token_hash == bindparam("token_hash"))
    .values(next_token_hash=bindparam("next_token_hash"))
)


async def _insert_pair(
    conn: Conn, user_id: str, device_id: str, tokens: IssuedTokens, now: int
) -> None:
    if tokens.refresh_hash is not None:
        await conn.execute(
            _INSERT_REFRESH,
            {
                "token_hash": tokens.refresh_hash,
                "user_id": user_id,
                "device_id": device_id,
                "created_ts": now,
                "expires_ts": tokens.refresh_expires_ts,
            },
        )
    await conn.execute(
        _INSERT_ACCESS,
        {
            "token_hash": tokens.access_hash,
            "user_id": user_id,
            "device_id": device_id,
            "created_ts": now,
            "valid_until_ms": tokens.access_valid_until_ms,
            "refresh_token_hash": tokens.refresh_hash,
        },
    )


class TokenStore:
    """Tokens and the devices they are bound to."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def issue(self, user_id: str, device_id: str, *, tokens: IssuedTokens, now: int) -> None:
        """Store a token pair for an existing device, revoking the device's previous tokens
        (spec: a client that sets ``device_id`` invalidates the tokens previously assigned
        to it)."""

        async def work(conn: Conn) -> None:
            params = {"user_id": user_id, "device_id": device_id}
            await conn.execute(_DELETE_DEVICE_ACCESS, params)
            await conn.execute(_DELETE_DEVICE_REFRESH, params)
            await _insert_pair(conn, user_id, device_id, tokens, now)

        await self._db.run(work, name="token_issue")

    async def lookup_access(self, token_hash: str) -> AccessTokenInfo | None:
        """The owner of an access token, or ``None``."""

        async def work(conn: Conn) -> AccessTokenInfo | None:
            row = await conn.fetch_one(_LOOKUP, {"token_hash": token_hash})
            if row is None:
                return None
            return AccessTokenInfo(
                row[0], row[1], row[2], bool(row[3]), bool(row[4]), bool(row[5]), row[6], row[7]
            )

        return await self._db.read(work, name="token_lookup")

    async def retire_predecessor(self, predecessor_hash: str) -> None:
        """Delete a refresh token (and the access tokens issued with it) once its successor
        was used."""

        async def work(conn: Conn) -> None:
            await conn.execute(_DELETE_ACCESS_OF_REFRESH, {"token_hash": predecessor_hash})
            await conn.execute(_DELETE_REFRESH, {"token_hash": predecessor_hash})

        await self._db.run(work, name="token_retire_predecessor")

    async def refresh(
        self, refresh_hash: str, *, tokens: IssuedTokens, now: int
    ) -> RefreshOutcome | None:
        """Exchange a refresh token for ``tokens``.

        The old refresh token stays valid until the new pair is used; if it is exchanged again
        before that, the unused pair from the previous exchange is revoked.

        Returns:
            the device the tokens belong to, or ``None`` if the refresh token is unknown,
            expired, or already retired.
        """

        async def work(conn: Conn) -> RefreshOutcome | None:
            row = await conn.fetch_one(_GET_REFRESH, {"token_hash": refresh_hash})
            if row is None:
                return None
            user_id, device_id, expires_ts, next_hash = row
            if expires_ts is not None and expires_ts <= now:
                await conn.execute(_DELETE_ACCESS_OF_REFRESH, {"token_hash": refresh_hash})
                await conn.execute(_DELETE_REFRESH, {"token_hash": refresh_hash})
                return None
            if next_hash is not None:
                await conn.execute(_DELETE_ACCESS_OF_REFRESH, {"token_hash": next_hash})
                await conn.execute(_DELETE_REFRESH, {"token_hash": next_hash})
            await _insert_pair(conn, user_id, device_id, tokens, now)
            await conn.execute(
                _SET_NEXT, {"token_hash": refresh_hash, "next_token_hash": tokens.refresh_hash}
            )
            return RefreshOutcome(user_id, device_id)

        return await self._db.run(work, name="token_refresh")
