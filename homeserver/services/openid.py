"""OpenID tokens: proving a user's identity to a third party.

Spec: client-server-api/modules/openid.md (``POST /user/{userId}/openid/request_token``) and
server-server-api › OpenID (``GET /_matrix/federation/v1/openid/userinfo``).

A token is 32 random bytes (URL-safe base64), valid for one hour, and only good for the
federation ``userinfo`` exchange: it is stored as a SHA-256 hash in its own table, apart from
access tokens, so it can never authenticate a client request.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from homeserver.clock import Clock
from homeserver.errors import Forbidden, UnknownToken
from homeserver.services.requester import Requester
from homeserver.storage.openid import OpenIdTokenStore

__all__ = ["OPENID_TOKEN_LIFETIME_MS", "OpenIdService", "OpenIdToken"]

#: How long an OpenID token is valid.
OPENID_TOKEN_LIFETIME_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class OpenIdToken:
    """What ``request_token`` answers (``token_type`` is always ``Bearer``)."""

    access_token: str
    expires_in_s: int
    matrix_server_name: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class OpenIdService:
    """Issue and check OpenID tokens.

    Args:
        store: where token hashes live.
        clock: for expiry.
        server_name: this server's name (``matrix_server_name``).
    """

    def __init__(self, store: OpenIdTokenStore, clock: Clock, server_name: str) -> None:
        self._store = store
        self._clock = clock
        self._server_name = server_name

    async def request_token(self, requester: Requester, user_id: str) -> OpenIdToken:
        """Issue a token for the requester.

        Raises:
            Forbidden: ``user_id`` is not the requester.
        """
        if requester.user_id != user_id:
            raise Forbidden("Cannot request an OpenID token for another user")
        token = secrets.token_urlsafe(32)
        now = self._clock.time_ms()
        await self._store.add_token(
            _hash(token), user_id, valid_until_ms=now + OPENID_TOKEN_LIFETIME_MS
        )
        return OpenIdToken(token, OPENID_TOKEN_LIFETIME_MS // 1000, self._server_name)

    async def user_of_token(self, token: str) -> str:
        """The user ID the token was issued to.

        Raises:
            UnknownToken: the token is unknown or expired.
        """
        user_id = await self._store.user_of_token(_hash(token), now_ms=self._clock.time_ms())
        if user_id is None:
            raise UnknownToken("Access token unknown or expired")
        return user_id

    async def delete_expired(self) -> int:
        """Remove expired tokens (housekeeping); return how many."""
        return await self._store.delete_expired(now_ms=self._clock.time_ms())
