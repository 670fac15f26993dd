"""Thumbnails: ``GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`` (and frozen v3).

Spec: client-server-api/modules/content_repo.md › Thumbnails and ``authed-content-repo.yaml``.
The choice of size, the image-bomb check and the cache are the thumbnail service's; this module
parses the query and serves the result ``inline`` with one of the spec's image types.
"""

from __future__ import annotations

from typing import Any

from quart import Response, request

from homeserver.api._http import route
from homeserver.api.media._serve import content_disposition, media_headers, stream_response
from homeserver.api.media.download import timeout_ms_param
from homeserver.errors import InvalidParam, MissingParam
from homeserver.services.imaging import Method
from homeserver.services.media import MediaService
from homeserver.services.thumbnails import ThumbnailService

__all__ = ["ThumbnailApi"]

_EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/gif": "gif", "image/webp": "webp"}
_MAX_REQUEST_DIMENSION = 100_000


def _dimension(name: str) -> int:
    raw = request.args.get(name)
    if raw is None:
        raise MissingParam(f"{name} is required")
    try:
        value = int(raw)
    except ValueError:
        raise InvalidParam(f"{name} must be an integer") from None
    if not 0 < value <= _MAX_REQUEST_DIMENSION:
        raise InvalidParam(f"{name} must be a positive integer")
    return value


def _params() -> tuple[int, int, Method, bool | None]:
    width, height = _dimension("width"), _dimension("height")
    method_raw = request.args.get("method", "scale")
    if method_raw not in ("crop", "scale"):
        raise InvalidParam("method must be crop or scale")
    method: Method = "crop" if method_raw == "crop" else "scale"
    animated_raw = request.args.get("animated")
    if animated_raw not in (None, "true", "false"):
        raise InvalidParam("animated must be true or false")
    animated = None if animated_raw is None else animated_raw == "true"
    return width, height, method, animated


class ThumbnailApi:
    """Serving thumbnails.

    Args:
        media: finds the content.
        thumbnails: makes and caches thumbnails.
    """

    def __init__(self, media: MediaService, thumbnails: ThumbnailService) -> None:
        self._media = media
        self._thumbnails = thumbnails

    async def _thumbnail(self, server_name: str, media_id: str, *, authenticated: bool) -> Response:
        width, height, method, animated = _params()
        row = await self._media.get_content(
            server_name, media_id, timeout_ms=timeout_ms_param(), authenticated=authenticated
        )
        thumb = await self._thumbnails.thumbnail(row, width, height, method, animated)
        name = f"thumbnail.{_EXTENSIONS.get(thumb.content_type, 'png')}"
        headers = media_headers(
            thumb.content_type, content_disposition(thumb.content_type, name, inline=True)
        )
        if thumb.data is not None:
            data = thumb.data

            async def from_memory(start: int, end: int) -> Any:
                yield data[start:end]

            return stream_response(from_memory, size=thumb.size, headers=headers, etag=None)
        sha = thumb.sha256
        assert sha is not None
        return stream_response(
            lambda start, end: self._media.stream(sha, start, end),
            size=thumb.size,
            headers=headers,
            etag=sha,
        )

    @route("GET", "/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}", auth="user")
    async def thumbnail(self, requester: Any, server_name: str, media_id: str) -> Any:
        """``GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}``.

        Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1mediathumbnailservernamemediaid
        """
        return await self._thumbnail(server_name, media_id, authenticated=True)

    @route("GET", "/_matrix/media/v3/thumbnail/{server_name}/{media_id}")
    async def thumbnail_v3(self, server_name: str, media_id: str) -> Any:
        """``GET /_matrix/media/v3/thumbnail/{serverName}/{mediaId}`` (deprecated, frozen).

        Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixmediav3thumbnailservernamemediaid
        """
        return await self._thumbnail(server_name, media_id, authenticated=False)
