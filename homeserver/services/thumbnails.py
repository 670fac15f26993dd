"""Thumbnails: choosing a size, making it off the event loop, caching it.

Spec: client-server-api/modules/content_repo.md › Thumbnails, and
``GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}``.

Choosing: a request asks for a *minimum* size. When the image is no larger than that (and the
animation question does not get in the way) the original is the answer, as the spec says.
Otherwise, with ``dynamic_thumbnails`` (the default) the requested size itself is made (capped at
``max_thumbnail_dimension``; a pre-generated configured size serves it when it is exactly that
size), as Synapse does, so a thumbnail is never larger than asked for; without it the smallest
configured size of the same method that covers the request is used (for ``crop`` only one of the
requested aspect ratio), or else the nearest configured one.

Making: the image header is read first and images with more than ``max_image_pixels`` pixels
(all frames counted for animated output) are refused with ``413 M_TOO_LARGE`` before anything
is decoded; decoding and encoding run in ``trio.to_thread`` under a small capacity limiter so a
burst of thumbnail requests cannot take every worker thread or core.

Caching: a thumbnail is a blob like any other, recorded in ``media_thumbnails`` under the
*source blob's* sha256, box, method and animation flag, so identical uploads share thumbnails
and the configured sizes can be made once at upload time (:meth:`ThumbnailService.pregenerate`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import BinaryIO

import trio

from homeserver.clock import Clock
from homeserver.config import MediaConfig
from homeserver.errors import MatrixError, TooLarge
from homeserver.services.imaging import (
    FORMAT_CONTENT_TYPES,
    ImageError,
    ImageInfo,
    ImageTooLarge,
    Method,
    Rendered,
    probe,
    render,
)
from homeserver.services.media_blobs import BlobLocks
from homeserver.storage.media import MediaRow, MediaStore, ThumbnailRow
from homeserver.storage.media_files import MediaFileStore

__all__ = ["CannotThumbnail", "Thumbnail", "ThumbnailService"]

logger = logging.getLogger(__name__)

#: Content types we try to thumbnail (the decoder checks the actual format anyway).
THUMBNAILABLE = frozenset(FORMAT_CONTENT_TYPES.values()) | {"image/apng", "image/jpg"}


class CannotThumbnail(MatrixError):
    """The content is not an image we can thumbnail (spec: 400 with ``M_UNKNOWN``)."""

    def __init__(self, msg: str = "Cannot generate thumbnails for the requested content") -> None:
        super().__init__(400, "M_UNKNOWN", msg)


@dataclass(frozen=True, slots=True)
class Thumbnail:
    """What to send: a stored blob, or bytes just made (when they could not be cached)."""

    content_type: str
    size: int
    sha256: str | None = None
    data: bytes | None = None


class ThumbnailService:
    """Thumbnails of local (and cached remote) images.

    Args:
        store: media metadata and the thumbnail cache.
        files: the blobs.
        locks: per-blob locks shared with the media service.
        clock: for ``created_ts``.
        config: the media section (sizes, limits).
        threads: at most this many images are decoded at once.
    """

    def __init__(
        self,
        store: MediaStore,
        files: MediaFileStore,
        locks: BlobLocks,
        clock: Clock,
        config: MediaConfig,
        *,
        threads: int = 2,
    ) -> None:
        self._store = store
        self._files = files
        self._locks = locks
        self._clock = clock
        self._cfg = config
        self._limiter = trio.CapacityLimiter(threads)

    def choose_box(self, width: int, height: int, method: Method) -> tuple[int, int]:
        """The box a request is answered from (see the module docstring)."""
        same = [(s.width, s.height) for s in self._cfg.thumbnail_sizes if s.method == method]
        cap = self._cfg.max_thumbnail_dimension
        if self._cfg.dynamic_thumbnails:
            # the requested size itself (a configured size only when it is exactly that), as
            # Synapse does: a bigger configured box could be as large as the original
            return min(width, cap), min(height, cap)
        covering = [(w, h) for w, h in same if w >= width and h >= height]
        # crop answers in the requested aspect ratio, so only a box of that ratio will do
        fitting = [b for b in covering if method == "scale" or b[0] * height == b[1] * width]
        if fitting:
            return min(fitting, key=lambda b: (b[0] * b[1], b))
        if not same:
            return min(width, cap), min(height, cap)
        if covering:
            return min(covering, key=lambda b: (b[0] * b[1], b))
        return max(same, key=lambda b: (b[0] * b[1], b))

    async def _with_source(self, sha256: str, fn: object, *args: object) -> object:
        fh = await self._files.open_sync(sha256)
        try:
            async with self._limiter:
                return await trio.to_thread.run_sync(fn, fh, *args)  # type: ignore[arg-type]
        finally:
            fh.close()

    async def _probe(self, row: MediaRow) -> ImageInfo:
        if row.sha256 is None:
            raise CannotThumbnail()
        base_type = (row.content_type or "").split(";")[0].strip().lower()
        if base_type not in THUMBNAILABLE:
            raise CannotThumbnail()
        try:
            info = await self._with_source(row.sha256, probe)
        except ImageTooLarge:
            raise TooLarge("Content is too large to thumbnail") from None
        except (ImageError, FileNotFoundError):
            raise CannotThumbnail() from None
        assert isinstance(info, ImageInfo)
        return info

    def _check_pixels(self, info: ImageInfo, animated: bool) -> None:
        frames = info.frames if animated else 1
        if info.width * info.height * frames > self._cfg.max_image_pixels:
            raise TooLarge("Content is too large to thumbnail")

    async def thumbnail(
        self, row: MediaRow, width: int, height: int, method: Method, animated: bool | None
    ) -> Thumbnail:
        """A thumbnail of at least ``width`` x ``height`` (unless the image is smaller).

        Args:
            row: an uploaded media item.
            animated: the request's ``animated``: True asks for an animated thumbnail where the
                source is animated; False and None never give one.

        Raises:
            CannotThumbnail: not a JPEG, PNG, GIF or WebP image, or corrupt.
            TooLarge: the image has more pixels than ``max_image_pixels``.
        """
        info = await self._probe(row)
        assert row.sha256 is not None and row.size is not None
        want_animated = bool(animated) and info.animated
        if info.width <= width and info.height <= height and (want_animated or not info.animated):
            return Thumbnail(info.content_type, row.size, sha256=row.sha256)
        self._check_pixels(info, want_animated)
        bw, bh = self.choose_box(width, height, method)
        cached = await self._store.get_thumbnail(row.sha256, bw, bh, method, want_animated)
        if cached is not None and await self._files.exists(cached.sha256):
            return Thumbnail(cached.content_type, cached.size, sha256=cached.sha256)
        try:
            made = await self._with_source(row.sha256, _render_one, (bw, bh, method), want_animated)
        except ImageError:
            raise CannotThumbnail() from None
        assert isinstance(made, Rendered)
        stored = await self._cache(row.sha256, (bw, bh, method), want_animated, made)
        if stored is not None:
            return Thumbnail(stored.content_type, stored.size, sha256=stored.sha256)
        return Thumbnail(made.content_type, len(made.data), data=made.data)

    async def pregenerate(self, row: MediaRow) -> int:
        """Make the configured sizes of a fresh upload (those smaller than the image).

        Returns:
            How many thumbnails were made; 0 for content that is not a usable image.
        """
        try:
            info = await self._probe(row)
            self._check_pixels(info, False)
        except MatrixError:
            return 0
        assert row.sha256 is not None
        boxes: list[tuple[int, int, Method]] = [
            (s.width, s.height, s.method)
            for s in self._cfg.thumbnail_sizes
            if info.width > s.width or info.height > s.height
        ]
        if not boxes:
            return 0
        try:
            made = await self._with_source(row.sha256, _render_many, boxes)
        except ImageError:
            return 0
        assert isinstance(made, list)
        count = 0
        for box, thumb in zip(boxes, made, strict=True):
            if await self._cache(row.sha256, box, False, thumb) is not None:
                count += 1
        return count

    async def _cache(
        self, source: str, box: tuple[int, int, Method], animated: bool, made: Rendered
    ) -> ThumbnailRow | None:
        """Store a thumbnail's blob and row; the row that won, or None if it could not be kept."""
        width, height, method = box
        writer = await self._files.open_writer()
        try:
            await writer.write(made.data)
            sha = await writer.finish()
            row = ThumbnailRow(
                source, width, height, method, animated, made.content_type, len(made.data), sha,
                self._clock.time_ms(),
            )  # fmt: skip
            async with self._locks.hold(sha):
                await writer.commit()
                added = await self._store.add_thumbnail(row)
        finally:
            await writer.abort()
        if added:
            return row
        await self._locks.drop_if_unused(sha)
        return await self._store.get_thumbnail(source, width, height, method, animated)


def _render_one(fh: BinaryIO, box: tuple[int, int, Method], animated: bool) -> Rendered:
    return render(fh, [box], animated=animated)[0]


def _render_many(fh: BinaryIO, boxes: list[tuple[int, int, Method]]) -> list[Rendered]:
    return render(fh, boxes)
