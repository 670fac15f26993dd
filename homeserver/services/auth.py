"""Access tokens: login, refresh, logout, and turning a token into a Requester.

Spec: client-server-api › Login (``POST /login``), Refreshing access tokens (``POST /refresh``),
Soft logout, Logout (``POST /logout``, ``/logout/all``), Using access tokens.

Tokens are ``secrets.token_urlsafe(32)`` with a short prefix saying what they are (``mat_``
access, ``mar_`` refresh); only their SHA-256 is stored. :class:`AuthService` implements the
HTTP layer's :class:`~homeserver.services.requester.Authenticator`:

- one indexed read per request (token hash → user, device, expiry, flags). Measured at ~110 µs
  on SQLite (unit of work included) against ~1,800 µs of server CPU per request for quart-trio
  (``shared/notes/stack-measurements.md``), so there is no in-memory token cache: it would save
  ~6% and need invalidating from every path that revokes tokens, including device deletion in
  ``DeviceStore``. A logged-out or deleted device's tokens are gone from the table in the same
  transaction that deletes the device.
- an expired access token answers ``401 M_UNKNOWN_TOKEN`` with ``soft_logout: true``.
- the first use of a refreshed pair retires the refresh token it replaced (spec: "the old
  refresh token remains valid until the new access token or refresh token is used").
- devices' last-seen time and IP are kept in memory and written in one batch per interval by
  :meth:`AuthService.run_last_seen_flusher` (not a write per request); the same flush moves the
  registration lock's "last active" time of those accounts forward.
- a refresh token family is revoked when one of its retired tokens comes back: retiring a
  refresh token records its hash (``spent_credentials``), and ``/refresh`` with a recorded hash
  deletes the device (and with it every token of the device) before answering
  ``401 M_UNKNOWN_TOKEN``. Whoever holds a copy of a rotated token, attacker or client, is
  logged out, as OAuth 2.0 refresh token rotation recommends (RFC 9700 §4.14.2).
- a login that names the account by its phone number (``m.id.phone``, or ``m.login.msisdn`` with
  a validated SMS code) must pass the registration lock (:mod:`.registration_lock`). An SMS code
  logs in once: its verification session is recorded as spent.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass

import trio

from homeserver.clock import Clock
from homeserver.config import AuthConfig
from homeserver.errors import BadJson, Codes, Forbidden, MatrixError, UnknownToken
from homeserver.services.identifiers import PhoneIdentifier, UserIdentifier, find_user
from homeserver.services.otp import PhoneVerificationService, ThreepidAuthFailed
from homeserver.services.passwords import PasswordHasher
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.registration_lock import RegistrationLockService
from homeserver.services.requester import Requester
from homeserver.storage.devices import DeviceExists, DeviceStore
from homeserver.storage.spent_credentials import SpentCredentialStore
from homeserver.storage.tokens import AccessTokenInfo, IssuedTokens, TokenStore
from homeserver.storage.user_threepids import UserThreepidStore
from homeserver.storage.users import UserStore

__all__ = ["AuthService", "Session", "UserDeactivated", "hash_token"]

logger = logging.getLogger(__name__)

_DEVICE_ALPHABET = string.ascii_uppercase
_MAX_DEVICE_ID = 255
#: ``spent_credentials`` kinds
SPENT_REFRESH = "refresh"
SPENT_MSISDN_LOGIN = "msisdn_login"
#: How long spent credentials are remembered (longer than any verification session lives).
SPENT_RETENTION_MS = 30 * 86400 * 1000


def hash_token(token: str) -> str:
    """The stored form of a token: hex SHA-256."""
    return hashlib.sha256(token.encode()).hexdigest()


class UserDeactivated(MatrixError):
    """403: the account was deactivated."""

    def __init__(self, msg: str = "This account has been deactivated") -> None:
        super().__init__(403, Codes.USER_DEACTIVATED, msg)


@dataclass(frozen=True, slots=True)
class Session:
    """What ``/login``, ``/register`` and ``/refresh`` hand the client."""

    user_id: str
    device_id: str
    access_token: str
    refresh_token: str | None
    expires_in_ms: int | None


def new_device_id() -> str:
    return "".join(secrets.choice(_DEVICE_ALPHABET) for _ in range(10))


#: How long a looked-up access token is trusted without reading it again (bounds how late a
#: revocation made by another process is seen; this process's own revocations apply at once).
TOKEN_CACHE_TTL_MS = 60_000
#: Cached access tokens at most (the cache is emptied when full).
TOKEN_CACHE_SIZE = 100_000


class AuthService:
    """Issues, checks and revokes tokens.

    Args:
        users: accounts.
        tokens: token hashes.
        devices: devices (created at login, deleted at logout).
        hasher: verifies passwords.
        limiter: the shared rate limiter (``login`` per user).
        clock: expiry.
        server_name: to resolve localparts.
        config: the ``auth`` section.
        spent: used-up refresh tokens and SMS login sessions (None: no reuse detection and no
            login by SMS code).
        phones: validated phone numbers, for ``m.login.msisdn`` (None: not offered).
        registration_lock: PINs that phone logins must give (None: no lock).
        email_threepids: addresses bound to accounts, for login with an email identifier
            (None: not offered).
    """

    def __init__(
        self,
        users: UserStore,
        tokens: TokenStore,
        devices: DeviceStore,
        hasher: PasswordHasher,
        limiter: RateLimiter,
        clock: Clock,
        *,
        server_name: str,
        config: AuthConfig,
        spent: SpentCredentialStore | None = None,
        phones: PhoneVerificationService | None = None,
        registration_lock: RegistrationLockService | None = None,
        email_threepids: UserThreepidStore | None = None,
    ) -> None:
        self._users = users
        self._tokens = tokens
        self._devices = devices
        self._hasher = hasher
        self._limiter = limiter
        self._clock = clock
        self._server_name = server_name
        self._cfg = config
        self._spent = spent
        self._phones = phones
        self._lock = registration_lock
        self._email_threepids = email_threepids
        self._seen: dict[tuple[str, str], tuple[int, str]] = {}
        # Access tokens looked up recently: every request authenticates, so this saves a
        # database read per request. Entries go when their device is deleted (logout, device
        # deletion, deactivation and a revoked refresh family all delete the device: see
        # ``devices_deleted``) and after TOKEN_CACHE_TTL_MS at the latest (a change made by
        # another process). Expiry is checked on every use.
        self._token_cache: dict[str, tuple[AccessTokenInfo, int]] = {}
        self._cached_by_device: dict[tuple[str, str], set[str]] = {}

    @property
    def msisdn_login_enabled(self) -> bool:
        """Whether ``m.login.msisdn`` (login with an SMS code) is offered."""
        return self._phones is not None and self._phones.enabled and self._spent is not None

    @property
    def server_name(self) -> str:
        return self._server_name

    # --- Authenticator ---------------------------------------------------------------------

    async def authenticate(self, access_token: str, *, client_ip: str) -> Requester:
        """Resolve an access token.

        Raises:
            UnknownToken: unknown, revoked, or expired (``soft_logout: true``).
        """
        token_hash = hash_token(access_token)
        now = self._clock.time_ms()
        info = self._cached_token(token_hash, now)
        if info is None:
            info = await self._tokens.lookup_access(token_hash)
            if info is not None and info.predecessor_hash is None and not info.deactivated:
                self._cache_token(token_hash, info, now)
        if info is None or info.deactivated:
            raise UnknownToken()
        if info.valid_until_ms is not None and info.valid_until_ms <= now:
            raise UnknownToken("Access token has expired", soft_logout=True)
        if info.predecessor_hash is not None:
            # the first use of a refreshed pair retires the device's earlier tokens
            self._forget_device_tokens(info.user_id, info.device_id)
            if self._spent is not None:
                await self._spent.spend(
                    SPENT_REFRESH,
                    info.predecessor_hash,
                    user_id=info.user_id,
                    device_id=info.device_id,
                    now=now,
                )
            await self._tokens.retire_predecessor(info.predecessor_hash)
        self._seen[(info.user_id, info.device_id)] = (now, client_ip)
        return Requester(
            user_id=info.user_id,
            device_id=info.device_id,
            is_guest=info.is_guest,
            is_admin=info.is_admin,
        )

    def _cached_token(self, token_hash: str, now: int) -> AccessTokenInfo | None:
        entry = self._token_cache.get(token_hash)
        if entry is None:
            return None
        info, cached_at = entry
        if now - cached_at > TOKEN_CACHE_TTL_MS:
            self._forget_token(token_hash, info)
            return None
        return info

    def _cache_token(self, token_hash: str, info: AccessTokenInfo, now: int) -> None:
        if len(self._token_cache) >= TOKEN_CACHE_SIZE:
            self._token_cache.clear()
            self._cached_by_device.clear()
        self._token_cache[token_hash] = (info, now)
        self._cached_by_device.setdefault((info.user_id, info.device_id), set()).add(token_hash)

    def _forget_token(self, token_hash: str, info: AccessTokenInfo) -> None:
        self._token_cache.pop(token_hash, None)
        hashes = self._cached_by_device.get((info.user_id, info.device_id))
        if hashes is not None:
            hashes.discard(token_hash)
            if not hashes:
                del self._cached_by_device[(info.user_id, info.device_id)]

    def devices_deleted(self, user_id: str, device_ids: Sequence[str]) -> None:
        """The devices and every token of theirs are gone: stop accepting cached tokens."""
        for device_id in device_ids:
            self._forget_device_tokens(user_id, device_id)

    def _forget_device_tokens(self, user_id: str, device_id: str) -> None:
        for token_hash in self._cached_by_device.pop((user_id, device_id), set()):
            self._token_cache.pop(token_hash, None)

    # --- issuing ---------------------------------------------------------------------------

    def _issue(self, want_refresh: bool, now: int) -> tuple[IssuedTokens, str, str | None]:
        access = "mat_" + secrets.token_urlsafe(32)
        refresh = "mar_" + secrets.token_urlsafe(32) if want_refresh else None
        if want_refresh:
            lifetime: float | None = self._cfg.refreshable_access_token_lifetime_s
        else:
            lifetime = self._cfg.access_token_lifetime_s
        valid_until = now + int(lifetime * 1000) if lifetime is not None else None
        refresh_life = self._cfg.refresh_token_lifetime_s
        issued = IssuedTokens(
            access_hash=hash_token(access),
            access_valid_until_ms=valid_until,
            refresh_hash=hash_token(refresh) if refresh is not None else None,
            refresh_expires_ts=(
                now + int(refresh_life * 1000)
                if refresh is not None and refresh_life is not None
                else None
            ),
        )
        return issued, access, refresh

    async def create_session(
        self,
        user_id: str,
        *,
        device_id: str | None,
        display_name: str | None,
        want_refresh: bool,
    ) -> Session:
        """Create (or reuse) a device of ``user_id`` and give it a fresh token pair.

        A reused ``device_id`` keeps the device and revokes its earlier tokens.
        """
        if device_id is None:
            device_id = new_device_id()
        try:
            await self._devices.create_device(user_id, device_id, display_name=display_name)
        except DeviceExists:
            pass
        now = self._clock.time_ms()
        issued, access, refresh = self._issue(want_refresh, now)
        await self._tokens.issue(user_id, device_id, tokens=issued, now=now)
        return Session(
            user_id=user_id,
            device_id=device_id,
            access_token=access,
            refresh_token=refresh,
            expires_in_ms=(
                issued.access_valid_until_ms - now
                if issued.access_valid_until_ms is not None
                else None
            ),
        )

    async def login_with_password(
        self,
        identifier: UserIdentifier,
        password: str,
        *,
        device_id: str | None,
        display_name: str | None,
        want_refresh: bool,
        pin: str | None = None,
    ) -> Session:
        """``m.login.password``.

        Args:
            pin: the registration lock PIN (asked when ``identifier`` is a phone number).

        Raises:
            Forbidden: unknown user or wrong password (the same answer for both).
            UserDeactivated: the account was deactivated.
            LimitExceeded: too many attempts for this user.
            RegistrationLocked: a phone login without the account's right PIN (423).
        """
        _check_device_id(device_id)
        user = await find_user(self._users, self._server_name, identifier, self._email_threepids)
        if user is not None:
            self._limiter.check("login", user.user_id)
            if user.deactivated:
                raise UserDeactivated()
        ok = await self._hasher.verify(user.password_hash if user else None, password)
        if user is None or not ok:
            raise Forbidden("Invalid username or password")
        if isinstance(identifier, PhoneIdentifier):
            await self._check_registration_lock(user.user_id, pin)
        return await self._login(user.user_id, device_id, display_name, want_refresh)

    async def login_with_msisdn(
        self,
        *,
        sid: str,
        client_secret: str,
        device_id: str | None,
        display_name: str | None,
        want_refresh: bool,
        pin: str | None = None,
    ) -> Session:
        """``m.login.msisdn`` (extension ``org.example.reglock``): log in with an SMS code.

        The client validated the number with a code (``requestToken`` + ``submit_url``) and now
        presents the session (``threepid_creds``). Each session logs in once.

        Raises:
            MatrixError: 400 ``M_UNKNOWN`` when not offered; 404 ``M_NOT_FOUND`` (unknown
                session), 400 ``M_THREEPID_AUTH_FAILED`` (not validated or used already),
                403 ``M_FORBIDDEN`` (no account has the number), ``M_LIMIT_EXCEEDED``.
            RegistrationLocked: the account's PIN is missing or wrong (423).
        """
        if self._phones is None or self._spent is None or not self._phones.enabled:
            raise MatrixError(400, Codes.UNKNOWN, "Login with an SMS code is not enabled")
        _check_device_id(device_id)
        number = await self._phones.validated_number(sid=sid, client_secret=client_secret)
        if await self._spent.get(SPENT_MSISDN_LOGIN, sid) is not None:
            raise ThreepidAuthFailed("This code was used already; request a new one")
        user = await self._users.get_user_by_phone(number)
        if user is None:
            raise Forbidden("No account has this phone number")
        self._limiter.check("login", user.user_id)
        if user.deactivated:
            raise UserDeactivated()
        await self._check_registration_lock(user.user_id, pin)
        if not await self._spent.spend(
            SPENT_MSISDN_LOGIN, sid, user_id=user.user_id, device_id=None, now=self._now()
        ):
            raise ThreepidAuthFailed("This code was used already; request a new one")
        return await self._login(user.user_id, device_id, display_name, want_refresh)

    def _now(self) -> int:
        return self._clock.time_ms()

    async def _check_registration_lock(self, user_id: str, pin: str | None) -> None:
        if self._lock is None:
            return
        recent = [ts for (uid, _), (ts, _) in self._seen.items() if uid == user_id]
        await self._lock.check_login(user_id, pin, recently_seen_ms=max(recent) if recent else None)

    async def _login(
        self, user_id: str, device_id: str | None, display_name: str | None, want_refresh: bool
    ) -> Session:
        session = await self.create_session(
            user_id, device_id=device_id, display_name=display_name, want_refresh=want_refresh
        )
        if self._lock is not None:
            await self._lock.record_activity({user_id: self._now()})
        return session

    async def refresh(self, refresh_token: str) -> Session:
        """Exchange a refresh token for a new pair.

        Raises:
            UnknownToken: unknown, expired or already replaced and retired (spec: 401).
        """
        now = self._clock.time_ms()
        issued, access, refresh = self._issue(True, now)
        token_hash = hash_token(refresh_token)
        outcome = await self._tokens.refresh(token_hash, tokens=issued, now=now)
        if outcome is None:
            await self._revoke_family_of(token_hash)
            raise UnknownToken("Unknown or already used refresh token")
        return Session(
            user_id=outcome.user_id,
            device_id=outcome.device_id,
            access_token=access,
            refresh_token=refresh,
            expires_in_ms=(
                issued.access_valid_until_ms - now
                if issued.access_valid_until_ms is not None
                else None
            ),
        )

    # --- revoking --------------------------------------------------------------------------

    async def _revoke_family_of(self, refresh_hash: str) -> None:
        """A retired refresh token came back: log its device out (all its tokens)."""
        if self._spent is None:
            return
        spent = await self._spent.get(SPENT_REFRESH, refresh_hash)
        if spent is None or spent.device_id is None:
            return
        logger.warning(
            "a retired refresh token of %s device %s was reused; revoking the device",
            spent.user_id,
            spent.device_id,
        )
        await self._devices.delete_devices(spent.user_id, [spent.device_id])
        self.devices_deleted(spent.user_id, [spent.device_id])
        self._seen.pop((spent.user_id, spent.device_id), None)

    async def prune_spent(self) -> int:
        """Forget spent credentials older than the retention period."""
        if self._spent is None:
            return 0
        return await self._spent.delete_older_than(self._now() - SPENT_RETENTION_MS)

    async def logout(self, requester: Requester) -> None:
        """Delete the requester's device and with it every token of the device."""
        if requester.device_id is not None:
            await self._devices.delete_devices(requester.user_id, [requester.device_id])
            self.devices_deleted(requester.user_id, [requester.device_id])
            self._seen.pop((requester.user_id, requester.device_id), None)

    async def logout_all(self, user_id: str, *, except_device: str | None = None) -> None:
        """Delete every device of ``user_id`` (but ``except_device``) and their tokens."""
        devices = await self._devices.list_devices(user_id)
        gone = [d.device_id for d in devices if d.device_id != except_device]
        if gone:
            await self._devices.delete_devices(user_id, gone)
            self.devices_deleted(user_id, gone)
        for device_id in gone:
            self._seen.pop((user_id, device_id), None)

    # --- last seen -------------------------------------------------------------------------

    async def flush_last_seen(self) -> int:
        """Write the buffered last-seen times; return how many devices were updated."""
        items = list(self._seen.items())
        self._seen = {}
        done = 0
        try:
            for (user_id, device_id), (ts, ip) in items:
                await self._devices.record_last_seen(user_id, device_id, ts=ts, ip=ip)
                done += 1
        finally:
            # keep what was not written (error or cancellation) for the next flush, unless
            # the device was seen again meanwhile
            for key, value in items[done:]:
                self._seen.setdefault(key, value)
        if self._lock is not None and items:
            active: dict[str, int] = {}
            for (user_id, _), (ts, _) in items:
                active[user_id] = max(ts, active.get(user_id, 0))
            await self._lock.record_activity(active)
        return done

    async def run_last_seen_flusher(
        self,
        *,
        interval_s: float = 60.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Flush last-seen times every ``interval_s`` seconds, forever (and once on cancel)."""
        task_status.started()
        try:
            while True:
                await trio.sleep(interval_s)
                try:
                    await self.flush_last_seen()
                    await self.prune_spent()
                except Exception:
                    logger.exception("writing device last-seen times failed")
        finally:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    await self.flush_last_seen()
                except Exception:
                    logger.exception("writing device last-seen times failed")


def _check_device_id(device_id: str | None) -> None:
    if device_id is not None and not 0 < len(device_id) <= _MAX_DEVICE_ID:
        raise BadJson("device_id must be 1-255 characters")
