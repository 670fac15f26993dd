"""Where media bytes live: a content-addressed file store behind a small interface.

Design: a blob is named by the sha256 of its bytes, so identical uploads are stored once and a
name can never be chosen by a client (no media ID, file name or server name ever becomes part of
a path: path traversal has nothing to work with). :class:`LocalFileStore` keeps blobs under
``<root>/content/ab/cd/abcd…`` and writes them through ``<root>/tmp/``::

    writer = await files.open_writer()      # a temporary file under tmp/
    await writer.write(chunk) ...           # hashed as it is written, in a worker thread
    sha = await writer.finish()             # flushed and fsynced; still invisible
    created = await writer.commit()         # os.replace into content/ (atomic), or dropped
                                            # when that blob exists already (dedup)

A crash leaves at most an orphan in ``tmp/`` (swept by :meth:`LocalFileStore.sweep_temp`), never
a half-written blob under its name. Reads stream in chunks from a worker thread, so a large file
is never held in memory. Another backend (S3-compatible object storage) implements
:class:`MediaFileStore`; nothing above this module knows the layout.

Which blobs are still referenced is the database's business (:mod:`homeserver.storage.media`):
the media service deletes a blob only after checking, under its per-blob lock, that no row
refers to it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO, Protocol

import trio

__all__ = ["BlobWriter", "LocalFileStore", "MediaFileStore", "is_sha256"]

#: Bytes handed to a worker thread per read or write: large enough that the thread hop is noise.
CHUNK = 256 * 1024

_HEX = frozenset("0123456789abcdef")


def is_sha256(name: str) -> bool:
    """Whether ``name`` is a lower-case hex sha256 digest (the only names blobs have)."""
    return len(name) == 64 and set(name) <= _HEX


class BlobWriter(Protocol):
    """A blob being written. Call :meth:`finish` then :meth:`commit`, or :meth:`abort`."""

    @property
    def size(self) -> int:
        """Bytes written so far."""
        ...

    async def write(self, data: bytes) -> None:
        """Append ``data``."""
        ...

    async def finish(self) -> str:
        """Flush to stable storage; return the sha256 (hex) of everything written."""
        ...

    async def commit(self) -> bool:
        """Make the blob visible under its sha256; False if it already existed (deduplicated)."""
        ...

    async def abort(self) -> None:
        """Drop what was written (idempotent; also after :meth:`commit`, where it does nothing)."""
        ...


class MediaFileStore(Protocol):
    """Blob storage for the media repository."""

    async def open_writer(self) -> BlobWriter:
        """Start writing a new blob."""
        ...

    async def put(self, data: bytes) -> str:
        """Store a small blob whole (a thumbnail); return its sha256."""
        ...

    async def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""
        ...

    def iter_range(
        self, sha256: str, start: int, end: int, *, chunk_size: int = CHUNK
    ) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` of the blob, in chunks.

        Raises:
            FileNotFoundError: the blob is not stored.
        """
        ...

    async def open_sync(self, sha256: str) -> BinaryIO:
        """A blocking file object for a worker thread (decoding images); the caller closes it.

        Raises:
            FileNotFoundError: the blob is not stored.
        """
        ...

    async def delete(self, sha256: str) -> None:
        """Remove the blob (nothing if it is not stored)."""
        ...

    async def sweep_temp(self, older_than_s: float) -> int:
        """Remove abandoned temporary files older than ``older_than_s``; return how many."""
        ...


class _LocalWriter:
    def __init__(self, store: LocalFileStore, path: Path, fh: BinaryIO) -> None:
        self._store = store
        self._path = path
        self._fh: BinaryIO | None = fh
        self._hash = hashlib.sha256()
        self._pending: list[bytes] = []
        self._pending_size = 0
        self._size = 0
        self._sha: str | None = None
        self._done = False

    @property
    def size(self) -> int:
        return self._size

    def _flush_sync(self, chunks: list[bytes]) -> None:
        assert self._fh is not None
        for chunk in chunks:
            self._hash.update(chunk)
            self._fh.write(chunk)

    async def _flush(self) -> None:
        if not self._pending:
            return
        chunks, self._pending, self._pending_size = self._pending, [], 0
        await trio.to_thread.run_sync(self._flush_sync, chunks)

    async def write(self, data: bytes) -> None:
        if self._fh is None or self._sha is not None:
            raise RuntimeError("writer is closed")
        if not data:
            return
        self._pending.append(data)
        self._pending_size += len(data)
        self._size += len(data)
        if self._pending_size >= CHUNK:
            await self._flush()

    async def finish(self) -> str:
        await self._flush()
        fh = self._fh
        assert fh is not None

        def sync() -> None:
            fh.flush()
            os.fsync(fh.fileno())
            fh.close()

        await trio.to_thread.run_sync(sync)
        self._sha = self._hash.hexdigest()
        return self._sha

    async def commit(self) -> bool:
        if self._sha is None:
            raise RuntimeError("finish() before commit()")
        final = self._store.path_of(self._sha)
        created = await trio.to_thread.run_sync(_place, self._path, final)
        self._done = True
        return created

    async def abort(self) -> None:
        if self._done:
            return
        self._done = True
        fh, self._fh = self._fh, None
        if fh is not None and not fh.closed:
            fh.close()
        with contextlib.suppress(FileNotFoundError):
            self._path.unlink()


def _place(temp: Path, final: Path) -> bool:
    """Move ``temp`` to ``final`` atomically, or drop it if ``final`` exists (same content)."""
    if final.exists():
        temp.unlink()
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    os.replace(temp, final)
    return True


class LocalFileStore:
    """Blobs as files under ``root`` (``content/ab/cd/<sha256>``, temporaries in ``tmp/``).

    Args:
        root: the directory; created if missing. ``tmp/`` is on the same file system as
            ``content/``, which the atomic rename needs.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        self._content = root / "content"
        self._tmp = root / "tmp"
        self._content.mkdir(parents=True, exist_ok=True)
        self._tmp.mkdir(parents=True, exist_ok=True)

    def path_of(self, sha256: str) -> Path:
        """The file of a blob. Only digests are accepted, so no name can leave ``content/``.

        Raises:
            ValueError: ``sha256`` is not a hex sha256 digest.
        """
        if not is_sha256(sha256):
            raise ValueError("not a sha256 digest")
        return self._content / sha256[:2] / sha256[2:4] / sha256

    async def open_writer(self) -> BlobWriter:
        path = self._tmp / f"{secrets.token_hex(16)}.part"
        fh = await trio.to_thread.run_sync(open, path, "xb")
        return _LocalWriter(self, path, fh)

    async def put(self, data: bytes) -> str:
        writer = await self.open_writer()
        try:
            await writer.write(data)
            sha = await writer.finish()
            await writer.commit()
            return sha
        finally:
            await writer.abort()

    async def exists(self, sha256: str) -> bool:
        return await trio.to_thread.run_sync(self.path_of(sha256).exists)

    async def iter_range(
        self, sha256: str, start: int, end: int, *, chunk_size: int = CHUNK
    ) -> AsyncIterator[bytes]:
        fh: BinaryIO = await trio.to_thread.run_sync(open, self.path_of(sha256), "rb")
        try:
            await trio.to_thread.run_sync(fh.seek, start)
            remaining = end - start
            while remaining > 0:
                chunk = await trio.to_thread.run_sync(fh.read, min(chunk_size, remaining))
                if not chunk:
                    return
                remaining -= len(chunk)
                yield chunk
        finally:
            fh.close()

    async def open_sync(self, sha256: str) -> BinaryIO:
        fh: BinaryIO = await trio.to_thread.run_sync(open, self.path_of(sha256), "rb")
        return fh

    async def delete(self, sha256: str) -> None:
        path = self.path_of(sha256)

        def sync() -> None:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

        await trio.to_thread.run_sync(sync)

    async def sweep_temp(self, older_than_s: float) -> int:
        def sync() -> int:
            cutoff = time.time() - older_than_s
            removed = 0
            for entry in self._tmp.iterdir():
                with contextlib.suppress(FileNotFoundError):
                    if entry.stat().st_mtime < cutoff:
                        entry.unlink()
                        removed += 1
            return removed

        return await trio.to_thread.run_sync(sync)
