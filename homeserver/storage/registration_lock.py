"""Registration-lock PINs: the ``registration_locks`` table.

One row per user who set a PIN: the PIN's argon2id hash, the newest activity of the account
that the server knows of (when the PIN was set, logins, and the device last-seen times that
:class:`~homeserver.services.auth.AuthService` flushes), and the wrong PINs counted in the
current window. Counting happens in one transaction with the row locked, so concurrent wrong
guesses cannot slip past the limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select, update

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import registration_locks as t

__all__ = ["RegistrationLockRow", "RegistrationLockStore"]


@dataclass(frozen=True, slots=True)
class RegistrationLockRow:
    user_id: str
    pin_hash: str
    set_ts: int
    last_active_ts: int
    failed_attempts: int
    #: start of the window ``failed_attempts`` counts in; None before the first wrong PIN
    failed_window_start_ts: int | None


_COLS = (
    t.c.user_id,
    t.c.pin_hash,
    t.c.set_ts,
    t.c.last_active_ts,
    t.c.failed_attempts,
    t.c.failed_window_start_ts,
)
_GET = select(*_COLS).where(t.c.user_id == bindparam("user_id"))
_LOCK = _GET.with_for_update()
_DELETE = delete(t).where(t.c.user_id == bindparam("user_id"))
_INSERT = insert(t).values({c.name: bindparam(c.name) for c in _COLS})
_SET_FAILURES = (
    update(t)
    .where(t.c.user_id == bindparam("user_id"))
    .values(
        failed_attempts=bindparam("failed_attempts"),
        failed_window_start_ts=bindparam("failed_window_start_ts"),
    )
)
_TOUCH = (
    update(t)
    .where(t.c.user_id == bindparam("user_id"), t.c.last_active_ts < bindparam("ts"))
    .values(last_active_ts=bindparam("ts"))
)


def _row(row: Sequence[object] | None) -> RegistrationLockRow | None:
    if row is None:
        return None
    user_id, pin_hash, set_ts, last_active, failed, window = row
    return RegistrationLockRow(
        str(user_id),
        str(pin_hash),
        int(set_ts),  # type: ignore[call-overload]
        int(last_active),  # type: ignore[call-overload]
        int(failed),  # type: ignore[call-overload]
        None if window is None else int(window),  # type: ignore[call-overload]
    )


class RegistrationLockStore:
    """Read and change registration locks."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def get(self, user_id: str) -> RegistrationLockRow | None:
        """The lock of ``user_id``, or None if no PIN is set."""

        async def work(conn: Conn) -> RegistrationLockRow | None:
            return _row(await conn.fetch_one(_GET, {"user_id": user_id}))

        return await self._db.read(work, name="registration_lock_get")

    async def set_pin(self, user_id: str, pin_hash: str, *, now: int) -> None:
        """Set or replace the PIN; the wrong-PIN count starts again."""
        params = {
            "user_id": user_id,
            "pin_hash": pin_hash,
            "set_ts": now,
            "last_active_ts": now,
            "failed_attempts": 0,
            "failed_window_start_ts": None,
        }

        async def work(conn: Conn) -> None:
            await conn.execute(_DELETE, {"user_id": user_id})
            await conn.execute(_INSERT, params)

        await self._db.run(work, name="registration_lock_set")

    async def delete(self, user_id: str) -> bool:
        """Remove the PIN; return whether one was set."""

        async def work(conn: Conn) -> int:
            return await conn.execute(_DELETE, {"user_id": user_id})

        return await self._db.run(work, name="registration_lock_delete") > 0

    async def record_failure(self, user_id: str, *, now: int, window_ms: int) -> tuple[int, int]:
        """Count a wrong PIN; a window older than ``window_ms`` starts again at ``now``.

        Returns:
            the wrong PINs in the window (this one included) and the window's start; ``(0, now)``
            if the user has no PIN (any more).
        """

        async def work(conn: Conn) -> tuple[int, int]:
            row = _row(await conn.fetch_one(_LOCK, {"user_id": user_id}))
            if row is None:
                return 0, now
            start = row.failed_window_start_ts
            if start is None or now - start >= window_ms:
                failed, start = 1, now
            else:
                failed = row.failed_attempts + 1
            await conn.execute(
                _SET_FAILURES,
                {"user_id": user_id, "failed_attempts": failed, "failed_window_start_ts": start},
            )
            return failed, start

        return await self._db.run(work, name="registration_lock_failure")

    async def reset_failures(self, user_id: str) -> None:
        """Forget the wrong PINs (after a right one)."""

        async def work(conn: Conn) -> None:
            await conn.execute(
                _SET_FAILURES,
                {"user_id": user_id, "failed_attempts": 0, "failed_window_start_ts": None},
            )

        await self._db.run(work, name="registration_lock_reset")

    async def record_activity(self, seen: Sequence[tuple[str, int]]) -> None:
        """Move ``last_active_ts`` forward for each ``(user_id, ts)`` (no PIN: nothing)."""
        if not seen:
            return
        params = [{"user_id": user_id, "ts": ts} for user_id, ts in seen]

        async def work(conn: Conn) -> None:
            await conn.execute_many(_TOUCH, params)

        await self._db.run(work, name="registration_lock_activity")
