"""Shared-secret registration: the admin API tools use to create accounts.

Synapse's ``/_synapse/admin/v1/register`` (docs/admin_api/register_api.md), so that
``register_new_matrix_user`` and deployment scripts written for Synapse work unchanged:

1. ``GET`` gives a nonce: random, single-use, valid 60 s, kept in memory (at most
   ``_MAX_NONCES``; the oldest go first).
2. ``POST`` carries the nonce, the username, the password, ``admin`` and ``mac``: the hex
   HMAC-SHA1 under ``registration_shared_secret`` of
   ``nonce \\0 username \\0 password \\0 "admin"|"notadmin"`` (``\\0 user_type`` appended
   when one is given). The nonce is used up by the attempt, right or
   wrong; the MAC is compared in constant time.

The account is created under any registration policy, as by ``homeserver register-user``, and
logged in on a new device.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass

from homeserver.clock import Clock
from homeserver.errors import Codes, Forbidden, InvalidParam, MatrixError
from homeserver.services.auth import AuthService, Session
from homeserver.services.registration import RegistrationService
from homeserver.storage.profile import ProfileStore

__all__ = ["SharedSecretRegistration", "SharedSecretRequest", "registration_mac"]

_NONCE_TTL_MS = 60_000
_MAX_NONCES = 10_000
_MAX_FIELD = 512


def registration_mac(
    secret: str, nonce: str, username: str, password: str, admin: bool, user_type: str | None
) -> str:
    """The hex HMAC-SHA1 that Synapse's shared-secret registration expects."""
    mac = hmac.new(secret.encode(), digestmod=hashlib.sha1)
    mac.update(nonce.encode())
    mac.update(b"\x00")
    mac.update(username.encode())
    mac.update(b"\x00")
    mac.update(password.encode())
    mac.update(b"\x00")
    mac.update(b"admin" if admin else b"notadmin")
    if user_type:
        mac.update(b"\x00")
        mac.update(user_type.encode())
    return mac.hexdigest()


@dataclass(frozen=True, slots=True)
class SharedSecretRequest:
    """A parsed ``POST /_synapse/admin/v1/register`` body."""

    nonce: str
    username: str
    password: str
    admin: bool
    user_type: str | None
    displayname: str | None
    mac: str


class NotEnabled(MatrixError):
    """400: no ``registration_shared_secret`` is configured."""

    def __init__(self) -> None:
        super().__init__(400, Codes.UNKNOWN, "Shared secret registration is not enabled")


class SharedSecretRegistration:
    """Nonces and MAC checks of shared-secret registration.

    Args:
        registration: creates the account.
        auth: logs it in.
        profiles: for the display name.
        clock: nonce expiry.
        secret: ``registration_shared_secret`` (None: the API is off).
    """

    def __init__(
        self,
        registration: RegistrationService,
        auth: AuthService,
        profiles: ProfileStore,
        clock: Clock,
        *,
        secret: str | None,
    ) -> None:
        self._reg = registration
        self._auth = auth
        self._profiles = profiles
        self._clock = clock
        self._secret = secret
        self._nonces: OrderedDict[str, int] = OrderedDict()

    def new_nonce(self) -> str:
        """A fresh single-use nonce.

        Raises:
            NotEnabled: no shared secret is configured.
        """
        if self._secret is None:
            raise NotEnabled()
        now = self._clock.time_ms()
        while self._nonces:
            oldest, created = next(iter(self._nonces.items()))
            if created + _NONCE_TTL_MS > now and len(self._nonces) < _MAX_NONCES:
                break
            del self._nonces[oldest]
        nonce = secrets.token_hex(32)
        self._nonces[nonce] = now
        return nonce

    async def register(self, req: SharedSecretRequest) -> Session:
        """Check the nonce and MAC, create the account and log it in.

        Raises:
            NotEnabled: no shared secret is configured.
            InvalidParam: unknown, used or expired nonce; bad username, password or user_type.
            Forbidden: the MAC is wrong.
            MatrixError: ``M_USER_IN_USE``, ``M_INVALID_USERNAME``, ``M_WEAK_PASSWORD``.
        """
        if self._secret is None:
            raise NotEnabled()
        created = self._nonces.pop(req.nonce, None)
        if created is None or created + _NONCE_TTL_MS <= self._clock.time_ms():
            raise InvalidParam("unrecognised nonce")
        for name, value in (("username", req.username), ("password", req.password)):
            if len(value) > _MAX_FIELD or "\x00" in value:
                raise InvalidParam(f"Invalid {name}")
        if req.user_type is not None:
            raise InvalidParam("user_type is not supported by this server")
        want = registration_mac(
            self._secret, req.nonce, req.username, req.password, req.admin, req.user_type
        )
        if not hmac.compare_digest(want.encode(), req.mac.encode()):
            raise Forbidden("HMAC incorrect")
        user_id = await self._reg.create_user_as_operator(
            req.username, req.password, admin=req.admin
        )
        if req.displayname:
            await self._profiles.set_field(
                user_id, "displayname", req.displayname[:256], max_profile_bytes=64 * 1024
            )
        return await self._auth.create_session(
            user_id, device_id=None, display_name=None, want_refresh=False
        )
