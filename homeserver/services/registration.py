"""Account registration and registration tokens.

Spec: client-server-api › Account registration (``POST /register``, ``GET /register/available``),
Token-authenticated registration (``m.login.registration_token``, ``/validity``).

The policy comes from ``registration.policy``:

    closed  no flows: ``/register`` answers 403 M_FORBIDDEN; accounts come from the CLI.
    open    [m.login.dummy]                          (+ [m.login.msisdn] when otp is enabled,
                                                        [m.login.email.identity] when email is)
    token   [m.login.registration_token, m.login.dummy]
                                                     (+ [..._token, m.login.msisdn])

The token flows end in ``m.login.dummy`` as Synapse's do: matrix-nio's ``register_with_token()``
completes the token stage and then sends ``m.login.dummy`` in the same session.

A request is checked before UIA (username free and valid, password long enough) so the client
learns about a taken name before it spends an SMS; the account is created after UIA, with the
phone number the ``m.login.msisdn`` stage validated, and the registration token use is counted.

The UIA session of ``/register`` is bound to the endpoint only, and remembers the parameters of
its requests (the password as its hash): clients send them first and then only ``auth``, as
Synapse allows. A session that registered an account answers a replay with the same account,
logged in again (registration is idempotent). A guest upgrades to a full account by registering
its own localpart with ``guest_access_token`` (spec: Guest Access); the guest's devices and tokens
end there, the answer carries the new ones. A new account's display name is its localpart, as on
Synapse.
"""

from __future__ import annotations

import re
import secrets
import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from homeserver.clock import Clock
from homeserver.config import RegistrationConfig, RegistrationPolicy
from homeserver.errors import Codes, Forbidden, InvalidParam, MatrixError, MissingParam, NotFound
from homeserver.services.auth import AuthService, Session
from homeserver.services.email_threepids import EmailVerificationService
from homeserver.services.otp import ThreepidInUse
from homeserver.services.passwords import PasswordHasher
from homeserver.services.profile import MAX_PROFILE_BYTES
from homeserver.services.uia import (
    DUMMY,
    EMAIL_IDENTITY,
    MSISDN,
    REGISTRATION_TOKEN,
    UiaRequired,
    UiaResult,
    UiaService,
)
from homeserver.storage.profile import NoSuchUserError, ProfileStore
from homeserver.storage.registration_tokens import (
    RegistrationTokenExists,
    RegistrationTokenRow,
    RegistrationTokenStore,
)
from homeserver.storage.users import PhoneInUse, UserIdTaken, UserStore

__all__ = [
    "RegisterRequest",
    "Registered",
    "RegistrationService",
    "RegistrationToken",
    "TokenLimits",
    "check_password_strength",
]

#: A registration token as the admin API shows it.
RegistrationToken = RegistrationTokenRow

# The user ID grammar (appendices › User Identifiers): lower-case letters, digits, ._=-/+
_LOCALPART_RE = re.compile(r"[a-z0-9._=\-/+]+")
_TOKEN_RE = re.compile(r"[A-Za-z0-9._~-]{1,64}")
_TOKEN_ALPHABET = string.ascii_letters + string.digits + "._~-"


class UserInUse(MatrixError):
    def __init__(self, msg: str = "User ID already taken.") -> None:
        super().__init__(400, Codes.USER_IN_USE, msg)


class InvalidUsername(MatrixError):
    def __init__(self, msg: str) -> None:
        super().__init__(400, Codes.INVALID_USERNAME, msg)


class WeakPassword(MatrixError):
    def __init__(self, msg: str) -> None:
        super().__init__(400, Codes.WEAK_PASSWORD, msg)


def check_password_strength(password: str, min_length: int) -> None:
    """Raises: WeakPassword when shorter than ``min_length``."""
    if len(password) < min_length:
        raise WeakPassword(f"Password must be at least {min_length} characters")


@dataclass(frozen=True, slots=True)
class RegisterRequest:
    """A parsed ``POST /register`` body (None: not given)."""

    kind: Literal["user", "guest"]
    username: str | None
    password: str | None
    device_id: str | None
    initial_device_display_name: str | None
    inhibit_login: bool | None
    refresh_token: bool | None
    guest_access_token: str | None = None


#: The parameters a ``/register`` UIA session remembers (besides ``password_hash`` and
#: ``guest_user_id``).
_REMEMBERED = (
    "username",
    "device_id",
    "initial_device_display_name",
    "inhibit_login",
    "refresh_token",
)


@dataclass(frozen=True, slots=True)
class Registered:
    user_id: str
    #: None with ``inhibit_login``
    session: Session | None


@dataclass(frozen=True, slots=True)
class TokenLimits:
    uses_allowed: int | None
    expiry_time: int | None


class RegistrationService:
    """Creates accounts through ``/register`` and the CLI, and manages registration tokens."""

    def __init__(
        self,
        users: UserStore,
        registration_tokens: RegistrationTokenStore,
        auth: AuthService,
        uia: UiaService,
        hasher: PasswordHasher,
        clock: Clock,
        *,
        server_name: str,
        config: RegistrationConfig,
        password_min_length: int,
        phone_signup: bool,
        profiles: ProfileStore | None = None,
        emails: EmailVerificationService | None = None,
    ) -> None:
        self._users = users
        self._profiles = profiles
        self._tokens = registration_tokens
        self._auth = auth
        self._uia = uia
        self._hasher = hasher
        self._clock = clock
        self._server_name = server_name
        self._cfg = config
        self._min_password = password_min_length
        self._phone_signup = phone_signup
        self._emails = emails

    @property
    def policy(self) -> RegistrationPolicy:
        return self._cfg.policy

    def flows(self) -> list[list[str]]:
        """The UIA flows ``/register`` offers under the configured policy."""
        last = [[DUMMY], *([[MSISDN]] if self._phone_signup else [])]
        if self._emails is not None and self._emails.enabled:
            last.append([EMAIL_IDENTITY])
        if self._cfg.policy == RegistrationPolicy.OPEN:
            return last
        if self._cfg.policy == RegistrationPolicy.TOKEN:
            return [[REGISTRATION_TOKEN, *flow] for flow in last]
        return []

    def user_id_for(self, username: str) -> str:
        """The user ID a requested username gives (lower-cased, validated).

        Raises:
            InvalidUsername: not allowed by the user ID grammar, or too long.
        """
        localpart = username.lower()
        if localpart.startswith("@"):
            localpart, sep, server = localpart[1:].partition(":")
            if not sep or server != self._server_name.lower():
                raise InvalidUsername("The user ID must be on this server")
        if not localpart or not _LOCALPART_RE.fullmatch(localpart):
            raise InvalidUsername("Usernames may only contain a-z, 0-9, and . _ = - / +")
        if localpart.startswith("_"):
            raise InvalidUsername("Usernames may not start with '_'")
        user_id = f"@{localpart}:{self._server_name}"
        if len(user_id) > 255:
            raise InvalidUsername("The user ID is too long")
        return user_id

    async def check_available(self, username: str) -> str:
        """The user ID for ``username`` if it is free.

        Raises:
            InvalidUsername, UserInUse.
        """
        user_id = self.user_id_for(username)
        if await self._users.get_user(user_id) is not None:
            raise UserInUse()
        return user_id

    async def register_guest(self, req: RegisterRequest) -> Registered:
        """Create a guest account (no UIA, no password) and log it in."""
        if not self._cfg.allow_guests:
            raise Forbidden("Guest access is disabled")
        user_id = await self._create_with_random_id(is_guest=True, password_hash=None)
        await self._set_default_displayname(user_id)
        session = await self._auth.create_session(
            user_id,
            device_id=req.device_id,
            display_name=req.initial_device_display_name,
            want_refresh=bool(req.refresh_token),
        )
        return Registered(user_id, session)

    async def register_interactive(
        self, req: RegisterRequest, body: Mapping[str, Any], *, request_key: str, client_ip: str
    ) -> Registered:
        """``POST /register`` for a full account: UIA, then create (or upgrade) and log in.

        Args:
            req: this request's parameters (the session's remembered ones fill the gaps).
            body: the request body (its ``auth`` drives UIA).
            request_key: binds the UIA session to ``/register``.
            client_ip: for the guest access token's check.

        Raises:
            UiaRequired: more authentication is needed.
            UserInUse, InvalidUsername, WeakPassword, ThreepidInUse, Forbidden, MissingParam.
        """
        if self._cfg.policy == RegistrationPolicy.CLOSED:
            raise Forbidden("Registration is disabled")
        given: dict[str, Any] = {
            name: getattr(req, name) for name in _REMEMBERED if getattr(req, name) is not None
        }
        if req.password is not None:
            check_password_strength(req.password, self._min_password)
        if req.guest_access_token is not None:
            given["guest_user_id"] = await self._guest_to_upgrade(
                req.guest_access_token, req.username, client_ip=client_ip
            )
        session = await self._uia.open_session(
            requester=None,
            body=body,
            request_key=request_key,
            description="register a new account",
            params=given,
        )
        params = session.params
        registered_user = session.outcome.get("user_id")
        if isinstance(registered_user, str):
            return await self._log_in(registered_user, params)
        username = params.get("username")
        guest_user_id = params.get("guest_user_id")
        if guest_user_id is None and username is not None:
            await self.check_available(username)
        try:
            proof = await self._uia.check(
                requester=None,
                body=body,
                request_key=request_key,
                flows=self.flows(),
                description="register a new account",
                session=session,
            )
        except UiaRequired:
            # the client need not send the password again: the session keeps its hash (hashed
            # once per session, as Synapse: argon2 is what an unauthenticated request costs)
            if req.password is not None and "password_hash" not in params:
                password = await self._hasher.hash(req.password)
                await self._uia.remember(session, {"password_hash": password})
            raise
        if req.password is not None:
            password_hash: str | None = await self._hasher.hash(req.password)
        else:
            password_hash = params.get("password_hash")
        if guest_user_id is not None:
            user_id = guest_user_id
            if not await self._users.upgrade_guest(user_id, password_hash):
                raise UserInUse()
            # the guest's tokens end with the guest account (as on Synapse, where a guest
            # token of an upgraded account is refused): the client goes on with the new one
            await self._auth.logout_all(user_id)
        else:
            if proof.email is not None and self._emails is not None:
                if await self._emails.owner(proof.email) is not None:
                    raise ThreepidInUse("This email address is already in use")
            user_id = await self._create(username, password_hash, proof)
            if proof.email is not None and self._emails is not None:
                await self._emails.bind(user_id, proof.email)
        if proof.registration_token is not None:
            await self._tokens.consume(proof.registration_token)
        await self._uia.settle(session, {"user_id": user_id})
        return await self._log_in(user_id, params)

    async def _guest_to_upgrade(self, token: str, username: str | None, *, client_ip: str) -> str:
        """The guest account ``token`` belongs to, if ``username`` names it.

        Raises:
            MissingParam: no ``username``.
            UnknownToken: ``token`` is not an access token.
            Forbidden: the token is not a guest's, or ``username`` is another account.
        """
        if username is None:
            raise MissingParam("A guest upgrading its account must give its username")
        requester = await self._auth.authenticate(token, client_ip=client_ip)
        if not requester.is_guest or requester.user_id != self.user_id_for(username):
            raise Forbidden(
                "Cannot register a taken user ID without that guest account's access token"
            )
        return requester.user_id

    async def _create(
        self, username: str | None, password_hash: str | None, proof: UiaResult
    ) -> str:
        if username is None:
            user_id = await self._create_with_random_id(
                is_guest=False, password_hash=password_hash, phone=proof.phone
            )
        else:
            user_id = self.user_id_for(username)
            try:
                await self._users.create_user(
                    user_id,
                    password_hash=password_hash,
                    created_ts=self._clock.time_ms(),
                    phone=proof.phone,
                )
            except UserIdTaken:
                raise UserInUse() from None
            except PhoneInUse:
                raise ThreepidInUse() from None
        await self._set_default_displayname(user_id)
        return user_id

    async def _log_in(self, user_id: str, params: Mapping[str, Any]) -> Registered:
        if params.get("inhibit_login"):
            return Registered(user_id, None)
        session = await self._auth.create_session(
            user_id,
            device_id=params.get("device_id"),
            display_name=params.get("initial_device_display_name"),
            want_refresh=bool(params.get("refresh_token")),
        )
        return Registered(user_id, session)

    async def _set_default_displayname(self, user_id: str) -> None:
        """A new account's display name is its localpart (as on Synapse)."""
        if self._profiles is None:
            return
        localpart = user_id[1:].partition(":")[0]
        try:
            await self._profiles.set_field(
                user_id, "displayname", localpart, max_profile_bytes=MAX_PROFILE_BYTES
            )
        except NoSuchUserError:  # pragma: no cover - the account was just created
            pass

    async def _create_with_random_id(
        self, *, is_guest: bool, password_hash: str | None, phone: str | None = None
    ) -> str:
        for _ in range(10):
            user_id = f"@{secrets.randbelow(10**12):012d}:{self._server_name}"
            try:
                await self._users.create_user(
                    user_id,
                    password_hash=password_hash,
                    created_ts=self._clock.time_ms(),
                    is_guest=is_guest,
                    phone=phone,
                )
            except UserIdTaken:
                continue
            except PhoneInUse:
                raise ThreepidInUse() from None
            return user_id
        raise MatrixError(500, Codes.UNKNOWN, "Could not allocate a user ID")

    async def create_user_as_operator(
        self, username: str, password: str, *, admin: bool = False
    ) -> str:
        """Create an account from the command line (any policy).

        Raises:
            InvalidUsername, UserInUse, WeakPassword.
        """
        user_id = self.user_id_for(username)
        check_password_strength(password, self._min_password)
        password_hash = await self._hasher.hash(password)
        try:
            await self._users.create_user(
                user_id,
                password_hash=password_hash,
                created_ts=self._clock.time_ms(),
                is_admin=admin,
            )
        except UserIdTaken:
            raise UserInUse() from None
        await self._set_default_displayname(user_id)
        return user_id

    # --- registration tokens ---------------------------------------------------------------

    async def token_is_valid(self, token: str) -> bool:
        """``GET /register/m.login.registration_token/validity``.

        Raises:
            Forbidden: this server does not use registration tokens.
        """
        if self._cfg.policy != RegistrationPolicy.TOKEN:
            raise Forbidden("Registration tokens are not used on this server")
        row = await self._tokens.get(token)
        return row is not None and row.is_valid(self._clock.time_ms())

    async def create_token(
        self, token: str | None, *, length: int, limits: TokenLimits
    ) -> RegistrationTokenRow:
        """Create a token (random of ``length`` characters when ``token`` is None).

        Raises:
            InvalidParam: bad token, length, uses_allowed or expiry_time.
        """
        self._check_limits(limits)
        if token is not None:
            if not _TOKEN_RE.fullmatch(token):
                raise InvalidParam("token must be 1-64 characters of A-Z a-z 0-9 . _ ~ -")
            try:
                return await self._create_token(token, limits)
            except RegistrationTokenExists:
                raise InvalidParam(f"Token already exists: {token}") from None
        if not 1 <= length <= 64:
            raise InvalidParam("length must be between 1 and 64")
        for _ in range(5):
            candidate = "".join(secrets.choice(_TOKEN_ALPHABET) for _ in range(length))
            try:
                return await self._create_token(candidate, limits)
            except RegistrationTokenExists:
                continue
        raise InvalidParam("Could not generate an unused token; use a longer length")

    async def _create_token(self, token: str, limits: TokenLimits) -> RegistrationTokenRow:
        return await self._tokens.create(
            token,
            uses_allowed=limits.uses_allowed,
            expiry_time=limits.expiry_time,
            created_ts=self._clock.time_ms(),
        )

    def _check_limits(self, limits: TokenLimits) -> None:
        if limits.uses_allowed is not None and limits.uses_allowed < 0:
            raise InvalidParam("uses_allowed must be a non-negative integer or null")
        if limits.expiry_time is not None and limits.expiry_time < self._clock.time_ms():
            raise InvalidParam("expiry_time must not be in the past")

    async def list_tokens(self, *, valid: bool | None = None) -> list[RegistrationTokenRow]:
        rows = await self._tokens.list()
        if valid is None:
            return rows
        now = self._clock.time_ms()
        return [r for r in rows if r.is_valid(now) == valid]

    async def get_token(self, token: str) -> RegistrationTokenRow:
        row = await self._tokens.get(token)
        if row is None:
            raise NotFound(f"No such registration token: {token}")
        return row

    async def update_token(self, token: str, limits: TokenLimits) -> RegistrationTokenRow:
        self._check_limits(limits)
        row = await self._tokens.update(
            token, uses_allowed=limits.uses_allowed, expiry_time=limits.expiry_time
        )
        if row is None:
            raise NotFound(f"No such registration token: {token}")
        return row

    async def delete_token(self, token: str) -> None:
        if not await self._tokens.delete(token):
            raise NotFound(f"No such registration token: {token}")
