"""Email address validation by a mailed token, and the addresses bound to accounts.

Spec: client-server-api › ``POST /register/email/requestToken``,
``POST /account/3pid/email/requestToken``, ``POST /account/password/email/requestToken`` (the
homeserver sends the mail itself and gives a ``submit_url``), the ``m.login.email.identity``
auth type, ``m.id.thirdparty`` identifiers with ``medium: email``, 3PID appendix (email).

    requestToken(client_secret, email, send_attempt, purpose)
        → the address case-folded (:func:`canonical_email`, as Synapse does), then by purpose:
          sign-up / adding an address: no account may have it (``M_THREEPID_IN_USE``);
          password reset: an account must have it (``M_THREEPID_NOT_FOUND``). The same
          client_secret and a send_attempt not above the last one → the same sid, no new mail.
          Otherwise (within the per-address and per-IP token buckets) a new random token
          (``secrets``), valid ``token_ttl_s``, mailed with a link
          that validates it; only its hash is stored.
    submit(sid, client_secret, token)  (the submit_url, or the link in the mail)
        → the session is validated.
    m.login.email.identity (UiaService) / POST /account/3pid/add
        → the validated address, bound to one account only (``user_threepids``).

Validation sessions share the ``threepid_sessions`` table with phone numbers (medium
``email``). Tokens are 128-bit random, so unlike the 6-digit SMS codes no attempt limit is
needed.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from enum import Enum
from urllib.parse import urlencode

from homeserver.clock import Clock
from homeserver.config import EmailConfig
from homeserver.errors import Codes, InvalidParam, MatrixError, NotFound
from homeserver.services.email import EmailDeliveryFailed, EmailSender
from homeserver.services.identifiers import canonical_email
from homeserver.services.ratelimit import RateLimiter
from homeserver.storage.db import UniqueViolation
from homeserver.storage.threepids import ThreepidSessionRow, ThreepidStore
from homeserver.storage.user_threepids import BoundThreepidRow, ThreepidTaken, UserThreepidStore

__all__ = [
    "MEDIUM",
    "EmailPurpose",
    "EmailVerificationService",
    "canonical_email",
]

logger = logging.getLogger(__name__)

MEDIUM = "email"
_CLIENT_SECRET_RE = re.compile(r"[0-9a-zA-Z.=_-]{1,255}")


class EmailPurpose(Enum):
    """What a validation is for: who may (not) have the address already."""

    REGISTER = "register"
    ADD = "add"
    PASSWORD_RESET = "password_reset"


def _token_hash(sid: str, token: str) -> str:
    return hashlib.sha256(f"{sid}:{token}".encode()).hexdigest()


class ThreepidInUse(MatrixError):
    """The email address is bound to an account already."""

    def __init__(self, msg: str = "This email address is already in use") -> None:
        super().__init__(400, Codes.THREEPID_IN_USE, msg)


class ThreepidAuthFailed(MatrixError):
    """The token is wrong or expired, or the address was not validated."""

    def __init__(self, msg: str) -> None:
        super().__init__(400, Codes.THREEPID_AUTH_FAILED, msg)


@dataclass(frozen=True, slots=True)
class BoundEmail:
    address: str
    validated_at: int
    added_at: int


class EmailVerificationService:
    """Mails, checks and remembers email validation tokens; binds validated addresses.

    Args:
        store: validation sessions.
        bound: addresses bound to accounts.
        sender: delivers the mails.
        limiter: the shared rate limiter (``email_per_address``, ``email_per_ip``).
        clock: token lifetimes.
        config: the ``email`` section.
        server_name: for the mail's subject and text.
    """

    def __init__(
        self,
        store: ThreepidStore,
        bound: UserThreepidStore,
        sender: EmailSender,
        limiter: RateLimiter,
        clock: Clock,
        config: EmailConfig,
        *,
        server_name: str,
    ) -> None:
        self._store = store
        self._bound = bound
        self._sender = sender
        self._limiter = limiter
        self._clock = clock
        self._cfg = config
        self._server_name = server_name

    @property
    def enabled(self) -> bool:
        return self._cfg.enabled

    async def request_token(
        self,
        *,
        client_secret: str,
        email: str,
        send_attempt: int,
        purpose: EmailPurpose,
        submit_url: str,
        client_ip: str,
    ) -> str:
        """Mail a token to the address unless this is a retry of an earlier request; the sid.

        Args:
            submit_url: where the link in the mail points (``sid``, ``client_secret`` and
                ``token`` are added as query parameters).

        Raises:
            MatrixError: ``M_THREEPID_DENIED`` (not enabled), ``M_INVALID_PARAM`` (client
                secret, address), ``M_THREEPID_IN_USE``, ``M_THREEPID_NOT_FOUND``,
                ``M_LIMIT_EXCEEDED``, ``M_UNKNOWN`` (mail not sent).
        """
        if not self._cfg.enabled:
            raise MatrixError(400, Codes.THREEPID_DENIED, "Email validation is not enabled")
        if not _CLIENT_SECRET_RE.fullmatch(client_secret):
            raise InvalidParam("Invalid client_secret")
        address = canonical_email(email)
        owner = await self._bound.owner(MEDIUM, address)
        if purpose is EmailPurpose.PASSWORD_RESET and owner is None:
            raise MatrixError(400, Codes.THREEPID_NOT_FOUND, "No account has this email address")
        if purpose is not EmailPurpose.PASSWORD_RESET and owner is not None:
            raise ThreepidInUse()
        now = self._clock.time_ms()
        existing = await self._store.find(MEDIUM, address, client_secret)
        if existing is not None and existing.created_ts + self._lifetime_ms <= now:
            existing = None  # an old session: the sweeper removes it; start again
        if existing is not None and send_attempt <= existing.send_attempt:
            return existing.sid
        self._limiter.check("email_per_address", address)
        self._limiter.check("email_per_ip", client_ip)
        sid = existing.sid if existing is not None else secrets.token_urlsafe(18)
        token = secrets.token_urlsafe(16)
        token_expires = now + self._cfg.token_ttl_s * 1000
        if existing is None:
            try:
                await self._store.create(
                    ThreepidSessionRow(
                        sid=sid,
                        medium=MEDIUM,
                        address=address,
                        client_secret=client_secret,
                        send_attempt=send_attempt,
                        code_hash=_token_hash(sid, token),
                        code_expires_ts=token_expires,
                        last_sent_ts=now,
                        failed_attempts=0,
                        validated_ts=None,
                        created_ts=now,
                    )
                )
            except UniqueViolation:
                raced = await self._store.find(MEDIUM, address, client_secret)
                if raced is None:
                    raise
                return raced.sid
        else:
            await self._store.new_code(
                sid,
                send_attempt=send_attempt,
                code_hash=_token_hash(sid, token),
                code_expires_ts=token_expires,
                sent_ts=now,
            )
        link = (
            submit_url
            + ("&" if "?" in submit_url else "?")
            + urlencode({"sid": sid, "client_secret": client_secret, "token": token})
        )
        values = {"link": link, "token": token, "server_name": self._server_name}
        subject = _fill(self._cfg.subject_template, values)
        body = _fill(self._cfg.body_template, values)
        try:
            await self._sender.send(address, subject, body)
        except EmailDeliveryFailed:
            # Nothing was sent: forget this attempt so that the client may retry it at once.
            await self._store.new_code(
                sid,
                send_attempt=existing.send_attempt if existing is not None else -1,
                code_hash=_token_hash(sid, secrets.token_hex(16)),
                code_expires_ts=0,
                sent_ts=0,
            )
            raise
        logger.info("sent a validation email (session %s)", sid)
        return sid

    async def submit_token(self, *, sid: str, client_secret: str, token: str) -> str:
        """Check a token; return the validated address.

        Raises:
            NotFound: no such session for this client secret.
            ThreepidAuthFailed: the token is wrong or expired.
        """
        session = await self._session(sid, client_secret)
        if session.validated_ts is not None:
            return session.address
        if session.code_hash is None or session.code_expires_ts <= self._clock.time_ms():
            raise ThreepidAuthFailed("The token has expired; request a new one")
        if not hmac.compare_digest(_token_hash(sid, token.strip()), session.code_hash):
            raise ThreepidAuthFailed("Wrong token")
        await self._store.mark_validated(sid, now=self._clock.time_ms())
        return session.address

    async def validated_address(self, *, sid: str, client_secret: str) -> str:
        """The address a session validated.

        Raises:
            NotFound: no such session for this client secret.
            ThreepidAuthFailed: not validated (yet).
        """
        session = await self._session(sid, client_secret)
        if session.validated_ts is None:
            raise ThreepidAuthFailed("The email address has not been validated")
        return session.address

    async def _session(self, sid: str, client_secret: str) -> ThreepidSessionRow:
        session = await self._store.get(sid)
        if (
            session is None
            or session.medium != MEDIUM
            or not hmac.compare_digest(session.client_secret, client_secret)
            or session.created_ts + self._lifetime_ms <= self._clock.time_ms()
        ):
            raise NotFound("Unknown validation session")
        return session

    @property
    def _lifetime_ms(self) -> int:
        return self._cfg.session_lifetime_s * 1000

    # --- addresses bound to accounts

    async def owner(self, address: str) -> str | None:
        """The user an address (as given; it is case-folded) is bound to, or None."""
        try:
            address = canonical_email(address)
        except InvalidParam:
            return None
        row = await self._bound.owner(MEDIUM, address)
        return None if row is None else row.user_id

    async def addresses(self, user_id: str) -> list[BoundEmail]:
        return [
            BoundEmail(r.address, r.validated_ts, r.added_ts)
            for r in await self._bound.of_user(user_id)
        ]

    async def bind(self, user_id: str, address: str, *, validated_ts: int | None = None) -> None:
        """Bind a validated address to an account.

        Raises:
            ThreepidInUse: another account has it.
        """
        now = self._clock.time_ms()
        try:
            await self._bound.bind(
                BoundThreepidRow(
                    user_id=user_id,
                    medium=MEDIUM,
                    address=address,
                    validated_ts=validated_ts if validated_ts is not None else now,
                    added_ts=now,
                )
            )
        except ThreepidTaken:
            raise ThreepidInUse() from None

    async def bind_session(self, user_id: str, *, sid: str, client_secret: str) -> None:
        """Bind the address a validation session proved.

        Raises:
            NotFound / ThreepidAuthFailed: unknown or unvalidated session.
            ThreepidInUse: another account has it.
        """
        address = await self.validated_address(sid=sid, client_secret=client_secret)
        await self.bind(user_id, address)

    async def unbind(self, user_id: str, address: str) -> bool:
        """Remove a bound address; return whether it was bound to this account."""
        return await self._bound.unbind(user_id, MEDIUM, canonical_email(address))

    async def unbind_all(self, user_id: str) -> None:
        await self._bound.unbind_all(user_id)


def _fill(template: str, values: dict[str, str]) -> str:
    for name, value in values.items():
        template = template.replace("{" + name + "}", value)
    return template
