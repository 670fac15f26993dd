"""Phone number verification by SMS code (the messenger way of signing up).

Spec: client-server-api › ``POST /register/msisdn/requestToken``,
``POST /account/3pid/msisdn/requestToken`` (the homeserver sends the code itself and gives a
``submit_url``), the ``m.login.msisdn`` auth type, 3PID appendix (msisdn).

    requestToken(client_secret, country, phone_number, send_attempt)
        → normalise to E.164 (phonenumbers), check the region allow/block lists and that no
          account has the number, then per spec: the same client_secret and a send_attempt not
          above the last one → the same sid, no new SMS. Otherwise a new 6-digit code
          (``secrets``), no sooner than ``resend_interval_s`` after the last one
          (``M_LIMIT_EXCEEDED`` + ``retry_after_ms``), within the per-number and per-IP token
          buckets; the code goes out through the :class:`~homeserver.services.sms.SmsSender`,
          and only its hash is stored.
    submit(sid, client_secret, code)
        → valid for ``code_ttl_s``; at most ``max_attempts`` wrong codes, then the code is burnt.
    m.login.msisdn (UiaService) / POST /account/3pid/add
        → the validated number, bound to one account only (``users.phone`` is unique).

Codes have only 10⁶ values, so the hash is no protection against someone who can read the
database; it keeps codes out of backups and logs. What protects a number is the short lifetime,
the attempt limit and the rate limits.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
from dataclasses import dataclass

import trio

from homeserver.clock import Clock
from homeserver.config import OtpConfig
from homeserver.errors import Codes, LimitExceeded, MatrixError, NotFound
from homeserver.services.identifiers import normalize_phone, region_of
from homeserver.services.ratelimit import RateLimiter
from homeserver.services.sms import SmsDeliveryFailed, SmsSender
from homeserver.storage.db import UniqueViolation
from homeserver.storage.threepids import ThreepidSessionRow, ThreepidStore
from homeserver.storage.users import UserStore

__all__ = ["PhoneVerificationService", "ThreepidAuthFailed", "ThreepidDenied", "ThreepidInUse"]

logger = logging.getLogger(__name__)

MEDIUM = "msisdn"
_CLIENT_SECRET_RE = re.compile(r"[0-9a-zA-Z.=_-]{1,255}")


class ThreepidInUse(MatrixError):
    """The phone number is bound to an account already."""

    def __init__(self, msg: str = "This phone number is already in use") -> None:
        super().__init__(400, Codes.THREEPID_IN_USE, msg)


class ThreepidDenied(MatrixError):
    """Numbers of this region are not accepted here."""

    def __init__(self, msg: str = "Phone numbers from this region are not accepted") -> None:
        super().__init__(403, Codes.THREEPID_DENIED, msg)


class ThreepidAuthFailed(MatrixError):
    """The code is wrong, expired or burnt, or the number was not validated."""

    def __init__(self, msg: str) -> None:
        super().__init__(400, Codes.THREEPID_AUTH_FAILED, msg)


@dataclass(frozen=True, slots=True)
class RequestTokenAnswer:
    sid: str
    #: the number in E.164 form
    phone: str


def _code_hash(sid: str, code: str) -> str:
    return hashlib.sha256(f"{sid}:{code}".encode()).hexdigest()


class PhoneVerificationService:
    """Sends, checks and remembers SMS verification codes.

    Args:
        store: validation sessions.
        users: to refuse numbers that are bound already.
        sender: delivers the codes.
        limiter: the shared rate limiter (``sms_per_number``, ``sms_per_ip``).
        clock: code lifetimes and resend intervals.
        config: the ``otp`` section.
    """

    def __init__(
        self,
        store: ThreepidStore,
        users: UserStore,
        sender: SmsSender,
        limiter: RateLimiter,
        clock: Clock,
        config: OtpConfig,
    ) -> None:
        self._store = store
        self._users = users
        self._sender = sender
        self._limiter = limiter
        self._clock = clock
        self._cfg = config

    @property
    def enabled(self) -> bool:
        return self._cfg.enabled

    def check_number(self, country: str | None, phone_number: str) -> str:
        """The E.164 form of a number the region lists accept.

        Raises:
            InvalidPhoneNumber: not a valid number.
            ThreepidDenied: its region is not allowed or is blocked.
        """
        e164 = normalize_phone(country, phone_number)
        region = region_of(e164)
        allowed = self._cfg.allowed_countries
        if allowed and region not in allowed:
            raise ThreepidDenied()
        if region is not None and region in self._cfg.blocked_countries:
            raise ThreepidDenied()
        return e164

    async def request_token(
        self,
        *,
        client_secret: str,
        country: str | None,
        phone_number: str,
        send_attempt: int,
        client_ip: str,
        for_login: bool = False,
    ) -> RequestTokenAnswer:
        """Send a code to the number unless this is a retry of an earlier request.

        Args:
            for_login: the code is for logging in (``m.login.msisdn``): the number must belong
                to an account; otherwise (sign-up, adding a number) it must not.

        Raises:
            MatrixError: ``M_INVALID_PARAM`` (client secret, number), ``M_THREEPID_DENIED``,
                ``M_THREEPID_IN_USE``, ``M_THREEPID_NOT_FOUND`` (login, no such account),
                ``M_LIMIT_EXCEEDED``, ``M_UNKNOWN`` (SMS not sent).
        """
        if not self._cfg.enabled:
            raise MatrixError(400, Codes.THREEPID_DENIED, "Phone verification is not enabled")
        if not _CLIENT_SECRET_RE.fullmatch(client_secret):
            raise MatrixError(400, Codes.INVALID_PARAM, "Invalid client_secret")
        e164 = self.check_number(country, phone_number)
        bound = await self._users.get_user_by_phone(e164)
        if for_login and bound is None:
            raise MatrixError(400, Codes.THREEPID_NOT_FOUND, "No account has this phone number")
        if not for_login and bound is not None:
            raise ThreepidInUse()
        now = self._clock.time_ms()
        existing = await self._store.find(MEDIUM, e164, client_secret)
        if existing is not None and existing.created_ts + self._lifetime_ms <= now:
            existing = None  # an old session: the sweeper will remove it; start again
        if existing is not None and send_attempt <= existing.send_attempt:
            return RequestTokenAnswer(existing.sid, e164)
        if existing is not None:
            wait_ms = existing.last_sent_ts + self._cfg.resend_interval_s * 1000 - now
            if wait_ms > 0:
                raise LimitExceeded(wait_ms, "Wait before requesting another code")
        self._limiter.check("sms_per_number", e164)
        self._limiter.check("sms_per_ip", client_ip)

        sid = existing.sid if existing is not None else secrets.token_urlsafe(18)
        code = f"{secrets.randbelow(1_000_000):06d}"
        code_expires = now + self._cfg.code_ttl_s * 1000
        if existing is None:
            try:
                await self._store.create(
                    ThreepidSessionRow(
                        sid=sid,
                        medium=MEDIUM,
                        address=e164,
                        client_secret=client_secret,
                        send_attempt=send_attempt,
                        code_hash=_code_hash(sid, code),
                        code_expires_ts=code_expires,
                        last_sent_ts=now,
                        failed_attempts=0,
                        validated_ts=None,
                        created_ts=now,
                    )
                )
            except UniqueViolation:
                # the same request raced us: answer with its session, send nothing
                raced = await self._store.find(MEDIUM, e164, client_secret)
                if raced is None:
                    raise
                return RequestTokenAnswer(raced.sid, e164)
        else:
            await self._store.new_code(
                sid,
                send_attempt=send_attempt,
                code_hash=_code_hash(sid, code),
                code_expires_ts=code_expires,
                sent_ts=now,
            )
        try:
            await self._sender.send_code(e164, code)
        except SmsDeliveryFailed:
            # Nothing was sent: forget this attempt so that the client may retry it at once.
            await self._store.new_code(
                sid,
                send_attempt=existing.send_attempt if existing is not None else -1,
                code_hash=_code_hash(sid, secrets.token_hex(16)),
                code_expires_ts=0,
                sent_ts=0,
            )
            raise
        logger.info("sent a verification code (session %s)", sid)
        return RequestTokenAnswer(sid, e164)

    async def submit_code(self, *, sid: str, client_secret: str, code: str) -> str:
        """Check a code; return the validated number (E.164).

        Raises:
            NotFound: no such session for this client secret.
            ThreepidAuthFailed: the code is wrong, expired or burnt.
        """
        session = await self._session(sid, client_secret)
        if session.validated_ts is not None:
            return session.address
        now = self._clock.time_ms()
        if session.code_hash is None:
            raise ThreepidAuthFailed("Too many wrong codes; request a new code")
        if session.code_expires_ts <= now:
            raise ThreepidAuthFailed("The code has expired; request a new code")
        if not hmac.compare_digest(_code_hash(sid, code.strip()), session.code_hash):
            failed = await self._store.record_failure(sid, max_attempts=self._cfg.max_attempts)
            left = self._cfg.max_attempts - failed
            if left <= 0:
                raise ThreepidAuthFailed("Too many wrong codes; request a new code")
            raise ThreepidAuthFailed(f"Wrong code ({left} attempts left)")
        await self._store.mark_validated(sid, now=now)
        return session.address

    async def validated_number(self, *, sid: str, client_secret: str) -> str:
        """The number a session validated (E.164).

        Raises:
            NotFound: no such session for this client secret.
            ThreepidAuthFailed: not validated (yet).
        """
        session = await self._session(sid, client_secret)
        if session.validated_ts is None:
            raise ThreepidAuthFailed("The phone number has not been validated")
        return session.address

    async def _session(self, sid: str, client_secret: str) -> ThreepidSessionRow:
        session = await self._store.get(sid)
        if (
            session is None
            or not hmac.compare_digest(session.client_secret, client_secret)
            or session.created_ts + self._lifetime_ms <= self._clock.time_ms()
        ):
            raise NotFound("Unknown validation session")
        return session

    @property
    def _lifetime_ms(self) -> int:
        return self._cfg.session_lifetime_s * 1000

    async def expire_sessions(self) -> int:
        """Delete validation sessions older than ``session_lifetime_s``."""
        return await self._store.delete_older_than(self._clock.time_ms() - self._lifetime_ms)

    async def run_expiry(
        self,
        *,
        interval_s: float = 300.0,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Expire old validation sessions every ``interval_s`` seconds, forever."""
        task_status.started()
        while True:
            await trio.sleep(interval_s)
            try:
                await self.expire_sessions()
            except Exception:
                logger.exception("expiring phone validation sessions failed")
