"""Keeping the content-addressed blobs and the rows that refer to them in step.

A blob (a file named by its sha256) may be shared by many media items and thumbnails. Two
things race on it: an upload that commits a blob and then inserts its row, and a deletion that
removes the last row and then the file. :class:`BlobLocks` serialises both per sha256, and
:meth:`BlobLocks.release` deletes a file only after re-checking, under the lock, that no row
refers to it any more. The lock is per process: several processes sharing one media directory
could, in a narrow window, delete a blob another process has just re-uploaded (the upload would
then answer 404 on download; the operator guide says to run media on one process).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager

import trio

from homeserver.storage.media import MediaStore
from homeserver.storage.media_files import MediaFileStore

__all__ = ["BlobLocks"]

logger = logging.getLogger(__name__)


class BlobLocks:
    """Per-blob locks, and the deletion of blobs nothing refers to.

    Args:
        store: the media metadata (who refers to a blob).
        files: where the blobs are.
    """

    def __init__(self, store: MediaStore, files: MediaFileStore) -> None:
        self._store = store
        self._files = files
        self._locks: dict[str, tuple[trio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, sha256: str) -> AsyncIterator[None]:
        """Hold the blob's lock."""
        lock, users = self._locks.get(sha256, (trio.Lock(), 0))
        self._locks[sha256] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[sha256]
            if users <= 1:
                del self._locks[sha256]
            else:
                self._locks[sha256] = (lock, users - 1)

    async def release(self, candidates: Iterable[str]) -> int:
        """Delete the files of the blobs among ``candidates`` that no row refers to.

        Returns:
            How many files were deleted.
        """
        deleted = 0
        for sha in candidates:
            async with self.hold(sha):
                if await self._store.blob_in_use(sha):
                    continue
                await self._files.delete(sha)
                deleted += 1
        return deleted

    async def drop_if_unused(self, sha256: str) -> None:
        """After a failed insert: delete a just-committed blob unless something uses it."""
        try:
            await self.release([sha256])
        except Exception:
            logger.exception("could not clean up blob %s", sha256)
