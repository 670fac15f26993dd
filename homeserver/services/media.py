"""The media repository: uploads, asynchronous uploads, finding content to serve, deletion.

Spec: client-server-api/modules/content_repo.md (``content-repo.yaml``,
``authed-content-repo.yaml``).

Uploading streams: the API hands over the request body as an async iterator of chunks, each
chunk goes to a temporary blob (hashed on the way), the size limit is checked as bytes arrive
(``413 M_TOO_LARGE`` without buffering the body), and only a complete body whose length matches
its ``Content-Length`` is committed (renamed to its sha256) and recorded. A failed or cancelled
upload leaves nothing behind. Identical content is stored once (see ``media_blobs.py``).

Asynchronous upload (``POST /_matrix/media/v1/create``): the ID is reserved for its creator until
``unused_expires_at``; a user may hold ``max_pending_uploads`` of them. A download of a pending ID
waits (up to ``timeout_ms``, capped) for the upload, woken in-process when it lands.

Media IDs are 24 characters of ``secrets.token_urlsafe`` (144 random bits): unguessable, and
made only of the characters the spec allows. Every server name and media ID from a request is
checked against the spec's grammar before it is looked up.

Remote media (another server's ``mxc://``) is served from the cache when present; fetching it
over federation is not implemented yet, so an uncached remote item is ``404 M_NOT_FOUND``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import trio

from homeserver.clock import Clock
from homeserver.config import MediaConfig
from homeserver.errors import (
    Codes,
    Forbidden,
    InvalidParam,
    LimitExceeded,
    MatrixError,
    NotFound,
    TooLarge,
)
from homeserver.services.media_blobs import BlobLocks
from homeserver.services.thumbnails import ThumbnailService
from homeserver.storage.media import MediaRow, MediaStore, PendingLimitReached, QuotaExceeded
from homeserver.storage.media_files import BlobWriter, MediaFileStore

__all__ = [
    "CannotOverwriteMedia",
    "ContentLengthMismatch",
    "MediaRow",
    "MediaService",
    "NotYetUploaded",
    "UploadedMedia",
    "parse_media_key",
]

logger = logging.getLogger(__name__)

_MEDIA_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,255}")
# appendices: server name = hostname [":" port]; IPv6 literal in brackets
_SERVER_NAME_RE = re.compile(
    r"(\[[0-9A-Fa-f:.]{2,45}\]|[0-9]{1,3}(\.[0-9]{1,3}){3}|[A-Za-z0-9.-]{1,255})(:[0-9]{1,5})?"
)
#: last_access_ts is written at most this often per item (retention needs days, not seconds).
ACCESS_GRANULARITY_MS = 3_600_000
#: Abandoned temporary files older than this are swept.
TEMP_MAX_AGE_S = 86400.0


class CannotOverwriteMedia(MatrixError):
    """The ID already has content (spec: ``409 M_CANNOT_OVERWRITE_MEDIA``)."""

    def __init__(self) -> None:
        super().__init__(409, Codes.CANNOT_OVERWRITE_MEDIA, "Media already uploaded")


class NotYetUploaded(MatrixError):
    """A pending ID still has no content after the wait (spec: ``504 M_NOT_YET_UPLOADED``)."""

    def __init__(self) -> None:
        super().__init__(504, Codes.NOT_YET_UPLOADED, "Content has not yet been uploaded")


class ContentLengthMismatch(MatrixError):
    """The body was not as long as its ``Content-Length`` said."""

    def __init__(self) -> None:
        super().__init__(
            400, Codes.INVALID_PARAM, "The body's length does not match its Content-Length"
        )


@dataclass(frozen=True, slots=True)
class UploadedMedia:
    """A created or uploaded item's ``mxc://`` URI (and, for /create, its expiry)."""

    content_uri: str
    unused_expires_at: int | None = None


def parse_media_key(server_name: str, media_id: str) -> tuple[str, str]:
    """Check a server name and media ID from a request against the spec's grammar.

    Spec: content_repo.md › Security considerations: server names must be valid server names and
    media IDs only ``A-Za-z0-9_-``. Anything else cannot name media here.

    Raises:
        NotFound: either is malformed.
    """
    if not _SERVER_NAME_RE.fullmatch(server_name) or not _MEDIA_ID_RE.fullmatch(media_id):
        raise NotFound("Media not found")
    return server_name, media_id


class MediaService:
    """Uploads, lookups for download and deletion of media.

    Args:
        store: media metadata.
        files: the blobs.
        locks: per-blob locks (shared with the thumbnail service).
        thumbnails: makes the configured thumbnail sizes of image uploads.
        clock: for timestamps and expiries.
        server_name: this server's name (the authority of local ``mxc://`` URIs).
        config: the media section.
    """

    def __init__(
        self,
        store: MediaStore,
        files: MediaFileStore,
        locks: BlobLocks,
        thumbnails: ThumbnailService,
        clock: Clock,
        *,
        server_name: str,
        config: MediaConfig,
    ) -> None:
        self._store = store
        self._files = files
        self._locks = locks
        self._thumbnails = thumbnails
        self._clock = clock
        self.server_name = server_name
        self.config = config
        self._waiters: dict[str, trio.Event] = {}

    # --- uploading ------------------------------------------------------------------------------

    def check_declared_size(self, content_length: int | None) -> None:
        """Refuse a body whose declared length is over the limit, before reading it.

        Raises:
            TooLarge: over ``max_upload_bytes``.
        """
        limit = self.config.max_upload_bytes
        if content_length is not None and content_length > limit:
            raise TooLarge(f"Cannot upload files larger than {limit} bytes")

    async def _check_quota_early(self, user_id: str, content_length: int | None) -> None:
        quota = self.config.user_quota_bytes
        if quota is None:
            return
        used = await self._store.usage(user_id)
        if used + (content_length or 0) > quota:
            raise Forbidden("Media quota exceeded")

    async def _receive(
        self, body: AsyncIterable[bytes], content_length: int | None
    ) -> tuple[BlobWriter, str]:
        """Stream ``body`` into a new blob; return its finished (uncommitted) writer and sha256."""
        limit = self.config.max_upload_bytes
        writer = await self._files.open_writer()
        try:
            async for chunk in body:
                if writer.size + len(chunk) > limit:
                    raise TooLarge(f"Cannot upload files larger than {limit} bytes")
                await writer.write(chunk)
            if content_length is not None and writer.size != content_length:
                raise ContentLengthMismatch()
            sha = await writer.finish()
        except BaseException:
            with trio.CancelScope(shield=True):
                await writer.abort()
            raise
        return writer, sha

    async def upload(
        self,
        user_id: str,
        body: AsyncIterable[bytes],
        *,
        content_length: int | None,
        content_type: str | None,
        filename: str | None,
    ) -> UploadedMedia:
        """``POST /_matrix/media/v3/upload``: store a body under a new ID.

        Raises:
            TooLarge: over ``max_upload_bytes`` (checked as the body arrives).
            Forbidden: over the user's quota.
            ContentLengthMismatch: the body ended before (or after) its declared length.
        """
        self.check_declared_size(content_length)
        await self._check_quota_early(user_id, content_length)
        writer, sha = await self._receive(body, content_length)
        media_id = secrets.token_urlsafe(18)
        now = self._clock.time_ms()

        async def record(sha: str, size: int) -> None:
            try:
                await self._store.add_media(
                    self.server_name,
                    media_id,
                    user_id,
                    content_type=content_type,
                    upload_name=filename,
                    size=size,
                    sha256=sha,
                    now=now,
                    quota=self.config.user_quota_bytes,
                )
            except QuotaExceeded:
                raise Forbidden("Media quota exceeded") from None

        await self._commit(writer, sha, record)
        await self._after_upload(media_id)
        return UploadedMedia(f"mxc://{self.server_name}/{media_id}")

    async def create(self, user_id: str) -> UploadedMedia:
        """``POST /_matrix/media/v1/create``: reserve an ID for a later upload.

        Raises:
            LimitExceeded: the user holds ``max_pending_uploads`` pending IDs.
        """
        now = self._clock.time_ms()
        expires = now + int(self.config.unused_id_lifetime_s * 1000)
        media_id = secrets.token_urlsafe(18)
        try:
            await self._store.create_pending(
                self.server_name,
                media_id,
                user_id,
                now=now,
                expires_ts=expires,
                max_pending=self.config.max_pending_uploads,
            )
        except PendingLimitReached as e:
            raise LimitExceeded(
                e.earliest_expiry_ts - now, "Too many pending media uploads"
            ) from None
        return UploadedMedia(f"mxc://{self.server_name}/{media_id}", expires)

    async def upload_to(
        self,
        user_id: str,
        server_name: str,
        media_id: str,
        body: AsyncIterable[bytes],
        *,
        content_length: int | None,
        content_type: str | None,
        filename: str | None,
    ) -> None:
        """``PUT /_matrix/media/v3/upload/{serverName}/{mediaId}``: fill a created ID.

        Raises:
            NotFound: not an ID created here, or it expired.
            Forbidden: another user created it, or over quota.
            CannotOverwriteMedia: it already has content.
            TooLarge, ContentLengthMismatch: as for :meth:`upload`.
        """
        parse_media_key(server_name, media_id)
        if server_name != self.server_name:
            raise NotFound("Unknown media ID")
        self.check_declared_size(content_length)
        # fail fast, before the body is read; checked again when recording
        self._raise_for_target(await self._store.get(server_name, media_id), user_id)
        await self._check_quota_early(user_id, content_length)
        writer, sha = await self._receive(body, content_length)

        async def record(sha: str, size: int) -> None:
            status = await self._store.complete_pending(
                server_name,
                media_id,
                user_id,
                content_type=content_type,
                upload_name=filename,
                size=size,
                sha256=sha,
                now=self._clock.time_ms(),
                quota=self.config.user_quota_bytes,
            )
            if status == "quota":
                raise Forbidden("Media quota exceeded")
            if status == "forbidden":
                raise Forbidden("This media ID was created by another user")
            if status == "exists":
                raise CannotOverwriteMedia()
            if status == "not_found":
                raise NotFound("Unknown media ID")

        await self._commit(writer, sha, record)
        await self._after_upload(media_id)

    def _raise_for_target(self, row: MediaRow | None, user_id: str) -> None:
        now = self._clock.time_ms()
        if row is None:
            raise NotFound("Unknown media ID")
        if row.user_id != user_id:
            raise Forbidden("This media ID was created by another user")
        if row.uploaded_ts is not None:
            raise CannotOverwriteMedia()
        if row.unused_expires_ts is not None and row.unused_expires_ts <= now:
            raise NotFound("Unknown media ID")

    async def _commit(
        self, writer: BlobWriter, digest: str, record: Callable[[str, int], Awaitable[None]]
    ) -> None:
        """Make the blob visible and record its row, atomically with respect to deletions."""
        ok = False
        try:
            async with self._locks.hold(digest):
                await writer.commit()
                await record(digest, writer.size)
                ok = True
        finally:
            await writer.abort()
            if not ok:
                with trio.CancelScope(shield=True):
                    await self._locks.drop_if_unused(digest)

    async def _after_upload(self, media_id: str) -> None:
        event = self._waiters.pop(media_id, None)
        if event is not None:
            event.set()
        if self.config.pregenerate_thumbnails:
            row = await self._store.get(self.server_name, media_id)
            if row is not None:
                try:
                    await self._thumbnails.pregenerate(row)
                except Exception:
                    logger.exception("making thumbnails of %s failed", media_id)

    # --- finding content to serve ---------------------------------------------------------------

    async def get_content(
        self,
        server_name: str,
        media_id: str,
        *,
        timeout_ms: int | None = None,
        authenticated: bool = True,
    ) -> MediaRow:
        """The uploaded item to serve, waiting a while for a pending one.

        Args:
            timeout_ms: how long the client waits for a pending upload (capped by
                ``max_download_wait_s``); None: the spec's default, 20 s.
            authenticated: False on the deprecated ``/_matrix/media/v3`` download endpoints,
                which only serve media created before ``unauthenticated_media_freeze_ts``.

        Raises:
            NotFound: unknown (or expired, or remote and not cached, or frozen) media.
            NotYetUploaded: still pending after the wait.
        """
        parse_media_key(server_name, media_id)
        row = await self._store.get(server_name, media_id)
        if row is None:
            if server_name != self.server_name:
                raise NotFound(
                    "Remote media is not available: this server does not fetch media over "
                    "federation yet"
                )
            raise NotFound("Media not found")
        if not authenticated and row.created_ts >= self.config.unauthenticated_media_freeze_ts:
            raise NotFound("Media not found (use the authenticated /_matrix/client/v1/media API)")
        if row.uploaded_ts is None:
            row = await self._wait_for_upload(row, timeout_ms)
        now = self._clock.time_ms()
        if row.last_access_ts is None or now - row.last_access_ts >= ACCESS_GRANULARITY_MS:
            await self._store.touch(row.origin, row.media_id, now)
        return row

    async def _wait_for_upload(self, row: MediaRow, timeout_ms: int | None) -> MediaRow:
        now = self._clock.time_ms()
        if row.unused_expires_ts is not None and row.unused_expires_ts <= now:
            raise NotFound("Media not found")
        wait_s = 20.0 if timeout_ms is None else max(0, timeout_ms) / 1000
        wait_s = min(wait_s, self.config.max_download_wait_s)
        event = self._waiters.setdefault(row.media_id, trio.Event())
        with trio.move_on_after(wait_s):
            await event.wait()
        fresh = await self._store.get(row.origin, row.media_id)
        if fresh is None:
            raise NotFound("Media not found")
        if fresh.uploaded_ts is None:
            raise NotYetUploaded()
        return fresh

    def stream(self, sha256: str, start: int, end: int) -> AsyncIterator[bytes]:
        """The bytes ``[start, end)`` of a blob, in chunks read off the event loop."""
        return self._files.iter_range(sha256, start, end)

    # --- quotas, listing, deletion --------------------------------------------------------------

    async def usage(self, user_id: str) -> int:
        """Bytes stored for the user."""
        return await self._store.usage(user_id)

    async def list_user_media(self, user_id: str) -> list[MediaRow]:
        """The user's local media (pending IDs included), oldest first."""
        return await self._store.list_user_media(self.server_name, user_id)

    async def delete(self, keys: list[tuple[str, str]]) -> list[str]:
        """Delete items (and blobs and thumbnails nothing else uses); return the IDs deleted."""
        deleted, candidates = await self._store.delete_media(keys)
        await self._locks.release(candidates)
        for media_id in deleted:
            event = self._waiters.pop(media_id, None)
            if event is not None:
                event.set()
        return deleted

    async def delete_one(self, server_name: str, media_id: str) -> list[str]:
        """Delete one item (admin).

        Raises:
            NotFound: no such item.
        """
        parse_media_key(server_name, media_id)
        deleted = await self.delete([(server_name, media_id)])
        if not deleted:
            raise NotFound("Media not found")
        return deleted

    async def delete_user_media(self, user_id: str) -> list[str]:
        """Delete every local item of the user (admin); return the IDs deleted."""
        if not user_id.startswith("@") or ":" not in user_id:
            raise InvalidParam("Not a user ID")
        rows = await self._store.list_user_media(self.server_name, user_id)
        return await self.delete([(r.origin, r.media_id) for r in rows])
