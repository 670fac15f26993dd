"""Password hashing with argon2id, off the event loop.

Hashing costs tens of milliseconds and 64 MiB by design, so it runs in a worker thread; a
bounded :class:`trio.CapacityLimiter` keeps a login storm from using all memory at once. An
unknown user is checked against a fixed dummy hash so that timing does not tell which user
names exist.
"""

from __future__ import annotations

import argon2
import trio
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

__all__ = ["PasswordHasher"]


class PasswordHasher:
    """Hash and verify passwords (argon2id, argon2-cffi's RFC 9106 defaults).

    Args:
        time_cost: argon2 passes (tests may lower it).
        memory_cost: KiB of memory per hash.
        concurrency: how many hashes may run at once.
    """

    def __init__(
        self, *, time_cost: int = 3, memory_cost: int = 65536, concurrency: int = 4
    ) -> None:
        self._hasher = argon2.PasswordHasher(time_cost=time_cost, memory_cost=memory_cost)
        self._limiter = trio.CapacityLimiter(concurrency)
        self._dummy_hash: str | None = None

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password`` (a PHC string with salt and parameters)."""
        return await trio.to_thread.run_sync(self._hasher.hash, password, limiter=self._limiter)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether ``password`` matches ``password_hash``; ``None`` never matches (same cost)."""
        if password_hash is None:
            if self._dummy_hash is None:
                self._dummy_hash = await self.hash("dummy password for timing")
            password_hash = self._dummy_hash
            await trio.to_thread.run_sync(
                self._check, password_hash, password, limiter=self._limiter
            )
            return False
        return await trio.to_thread.run_sync(
            self._check, password_hash, password, limiter=self._limiter
        )

    def _check(self, password_hash: str, password: str) -> bool:
        try:
            return self._hasher.verify(password_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
