"""Registration lock (from Signal): a PIN that a login by phone number must also give.

Extension ``org.example.reglock``, documented in ``docs/reference/registration_lock.md``.

A user sets a PIN (``PUT /_matrix/client/unstable/org.example.reglock/pin``, with UIA); only its
argon2id hash is stored. From then on a login that identifies the account by its phone number
(``m.login.msisdn`` with an SMS code, or ``m.login.password`` with ``m.id.phone``) must also carry
the PIN, checked *after* the code or password, so that only someone who passed the first factor
can spend PIN attempts:

    no PIN given  → 423 ``ORG.EXAMPLE.REGLOCK.PIN_REQUIRED``
    wrong PIN     → 423 ``ORG.EXAMPLE.REGLOCK.PIN_INCORRECT``       (counted)
    10 wrong/day  → 423 ``ORG.EXAMPLE.REGLOCK.TOO_MANY_ATTEMPTS``   (even the right PIN) with
                    ``retry_after_ms``

Every answer carries ``time_remaining_ms``: how long until the lock lapses. As in Signal, the
lock protects an account that is in use: after ``inactivity_lapse_s`` (7 days) without any
activity of the account (PIN set, logins, any device seen) the PIN is no longer asked, so a user
who lost both phone and PIN gets the account back by waiting.

Every phone login counts as a new device: a ``device_id`` cannot prove that the client is the
existing device, because device IDs are public (every contact sees them in key queries).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass

from homeserver.clock import Clock
from homeserver.config import RegistrationLockConfig
from homeserver.errors import InvalidParam, MatrixError
from homeserver.services.passwords import PasswordHasher
from homeserver.storage.registration_lock import RegistrationLockStore

__all__ = [
    "PIN_INCORRECT",
    "PIN_REQUIRED",
    "TOO_MANY_ATTEMPTS",
    "LockStatus",
    "RegistrationLockService",
    "RegistrationLocked",
]

logger = logging.getLogger(__name__)

PIN_REQUIRED = "ORG.EXAMPLE.REGLOCK.PIN_REQUIRED"
PIN_INCORRECT = "ORG.EXAMPLE.REGLOCK.PIN_INCORRECT"
TOO_MANY_ATTEMPTS = "ORG.EXAMPLE.REGLOCK.TOO_MANY_ATTEMPTS"


class RegistrationLocked(MatrixError):
    """423: the account is registration-locked and the login did not give the right PIN.

    The body has ``time_remaining_ms`` (until the lock lapses for inactivity),
    ``attempts_remaining`` and, after too many wrong PINs, ``retry_after_ms``.
    """

    def __init__(
        self,
        errcode: str,
        msg: str,
        *,
        time_remaining_ms: int,
        attempts_remaining: int,
        retry_after_ms: int | None = None,
    ) -> None:
        super().__init__(
            423,
            errcode,
            msg,
            time_remaining_ms=time_remaining_ms,
            attempts_remaining=attempts_remaining,
        )
        if retry_after_ms is not None:
            self.extra["retry_after_ms"] = retry_after_ms


@dataclass(frozen=True, slots=True)
class LockStatus:
    """What ``GET .../pin`` shows its owner."""

    enabled: bool
    set_ts: int | None = None
    #: when the lock lapses unless the account is active again
    lapses_ts: int | None = None


class RegistrationLockService:
    """Sets, removes and enforces registration-lock PINs.

    Args:
        store: the PINs.
        hasher: argon2id, off the event loop.
        clock: lapse and attempt windows.
        config: the ``registration_lock`` section.
    """

    def __init__(
        self,
        store: RegistrationLockStore,
        hasher: PasswordHasher,
        clock: Clock,
        config: RegistrationLockConfig,
    ) -> None:
        self._store = store
        self._hasher = hasher
        self._clock = clock
        self._cfg = config

    @property
    def enabled(self) -> bool:
        return self._cfg.enabled

    @property
    def _lapse_ms(self) -> int:
        return self._cfg.inactivity_lapse_s * 1000

    async def status(self, user_id: str) -> LockStatus:
        row = await self._store.get(user_id)
        if row is None:
            return LockStatus(enabled=False)
        return LockStatus(
            enabled=True, set_ts=row.set_ts, lapses_ts=row.last_active_ts + self._lapse_ms
        )

    def check_pin_format(self, pin: str) -> None:
        """Raises: InvalidParam: too short, too long, or not printable."""
        lo, hi = self._cfg.pin_min_length, self._cfg.pin_max_length
        if not lo <= len(pin) <= hi:
            raise InvalidParam(f"The PIN must be {lo} to {hi} characters long")
        if not pin.isprintable():
            raise InvalidParam("The PIN must be printable characters")

    async def set_pin(self, user_id: str, pin: str) -> None:
        """Set or replace the PIN of ``user_id``.

        Raises:
            InvalidParam: bad PIN format.
        """
        self.check_pin_format(pin)
        pin_hash = await self._hasher.hash(pin)
        await self._store.set_pin(user_id, pin_hash, now=self._clock.time_ms())
        logger.info("registration lock set for %s", user_id)

    async def remove_pin(self, user_id: str) -> bool:
        """Remove the PIN; return whether one was set."""
        removed = await self._store.delete(user_id)
        if removed:
            logger.info("registration lock removed for %s", user_id)
        return removed

    async def check_login(
        self, user_id: str, pin: str | None, *, recently_seen_ms: int | None = None
    ) -> None:
        """Let a phone-number login of ``user_id`` through, or raise.

        Call it after the login's first factor (SMS code or password) was verified.

        Args:
            user_id: the account logging in.
            pin: the PIN the login carried, if any.
            recently_seen_ms: activity of the account not yet written to the database.

        Raises:
            RegistrationLocked: the PIN is missing or wrong, or too many were wrong.
        """
        if not self._cfg.enabled:
            return
        row = await self._store.get(user_id)
        if row is None:
            return
        now = self._clock.time_ms()
        last_active = max(row.last_active_ts, recently_seen_ms or 0)
        remaining = last_active + self._lapse_ms - now
        if remaining <= 0:
            return  # inactive long enough: the lock has lapsed
        limit = self._cfg.max_failed_attempts
        window_ms = self._cfg.failed_attempts_window_s * 1000
        failed = row.failed_attempts
        start = row.failed_window_start_ts
        if start is None or now - start >= window_ms:
            failed = 0
        if failed >= limit:
            assert start is not None
            raise RegistrationLocked(
                TOO_MANY_ATTEMPTS,
                "Too many wrong PINs; try again later",
                time_remaining_ms=remaining,
                attempts_remaining=0,
                retry_after_ms=start + window_ms - now,
            )
        if pin is None:
            raise RegistrationLocked(
                PIN_REQUIRED,
                "This account is protected by a registration lock PIN",
                time_remaining_ms=remaining,
                attempts_remaining=limit - failed,
            )
        if await self._hasher.verify(row.pin_hash, pin):
            if row.failed_attempts:
                await self._store.reset_failures(user_id)
            return
        failed, start = await self._store.record_failure(user_id, now=now, window_ms=window_ms)
        logger.info("wrong registration lock PIN for %s (%d in window)", user_id, failed)
        if failed >= limit:
            raise RegistrationLocked(
                TOO_MANY_ATTEMPTS,
                "Too many wrong PINs; try again later",
                time_remaining_ms=remaining,
                attempts_remaining=0,
                retry_after_ms=start + window_ms - now,
            )
        raise RegistrationLocked(
            PIN_INCORRECT,
            "Wrong registration lock PIN",
            time_remaining_ms=remaining,
            attempts_remaining=limit - failed,
        )

    async def record_activity(self, seen: Mapping[str, int]) -> None:
        """The accounts in ``seen`` were active at the given times (ms)."""
        await self._store.record_activity(sorted(seen.items()))
