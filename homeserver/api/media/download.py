"""Downloading: the authenticated ``/_matrix/client/v1/media/download`` and the frozen v3 one.

Spec: client-server-api/modules/content_repo.md, ``authed-content-repo.yaml`` and the
deprecated ``GET /_matrix/media/v3/download`` of ``content-repo.yaml``.

The deprecated endpoints are *frozen* as the spec's 1.12 warning describes: they serve only
media created before ``media.unauthenticated_media_freeze_ts`` and answer ``404 M_NOT_FOUND``
for anything newer (by default everything, as this server postdates the freeze). The file name
in the path only ever reaches the ``Content-Disposition`` header, encoded.
"""

from __future__ import annotations

from typing import Any

from quart import Response, request

from homeserver.api._http import route
from homeserver.api.media._serve import content_disposition, media_headers, stream_response
from homeserver.errors import InvalidParam
from homeserver.services.media import MediaRow, MediaService

__all__ = ["DownloadApi", "timeout_ms_param"]

_DEFAULT_TYPE = "application/octet-stream"


def timeout_ms_param() -> int | None:
    """The ``timeout_ms`` query parameter.

    Raises:
        InvalidParam: not an integer.
    """
    raw = request.args.get("timeout_ms")
    if raw is None:
        return None
    try:
        return max(0, int(raw))
    except ValueError:
        raise InvalidParam("timeout_ms must be an integer") from None


class DownloadApi:
    """Serving uploaded content.

    Args:
        media: the media service.
    """

    def __init__(self, media: MediaService) -> None:
        self._media = media

    def _serve(self, row: MediaRow, filename: str | None) -> Response:
        assert row.sha256 is not None and row.size is not None
        content_type = row.content_type or _DEFAULT_TYPE
        name = filename if filename is not None else row.upload_name
        headers = media_headers(content_type, content_disposition(content_type, name))
        sha = row.sha256
        return stream_response(
            lambda start, end: self._media.stream(sha, start, end),
            size=row.size,
            headers=headers,
            etag=sha,
        )

    async def _download(
        self, server_name: str, media_id: str, filename: str | None, *, authenticated: bool
    ) -> Response:
        row = await self._media.get_content(
            server_name, media_id, timeout_ms=timeout_ms_param(), authenticated=authenticated
        )
        return self._serve(row, filename)

    @route("GET", "/_matrix/client/v1/media/download/{server_name}/{media_id}", auth="user")
    async def download(self, requester: Any, server_name: str, media_id: str) -> Any:
        """``GET /_matrix/client/v1/media/download/{serverName}/{mediaId}``.

        Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1mediadownloadservernamemediaid
        """
        return await self._download(server_name, media_id, None, authenticated=True)

    @route(
        "GET",
        "/_matrix/client/v1/media/download/{server_name}/{media_id}/{file_name}",
        auth="user",
    )
    async def download_named(
        self, requester: Any, server_name: str, media_id: str, file_name: str
    ) -> Any:
        """``GET /_matrix/client/v1/media/download/{serverName}/{mediaId}/{fileName}``.

        Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1mediadownloadservernamemediaidfilename
        """
        return await self._download(server_name, media_id, file_name, authenticated=True)

    @route("GET", "/_matrix/media/v3/download/{server_name}/{media_id}")
    async def download_v3(self, server_name: str, media_id: str) -> Any:
        """``GET /_matrix/media/v3/download/{serverName}/{mediaId}`` (deprecated, frozen).

        Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixmediav3downloadservernamemediaid
        """
        return await self._download(server_name, media_id, None, authenticated=False)

    @route("GET", "/_matrix/media/v3/download/{server_name}/{media_id}/{file_name}")
    async def download_v3_named(self, server_name: str, media_id: str, file_name: str) -> Any:
        """``GET /_matrix/media/v3/download/{serverName}/{mediaId}/{fileName}`` (deprecated).

        Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixmediav3downloadservernamemediaidfilename
        """
        return await self._download(server_name, media_id, file_name, authenticated=False)
