"""Uploading: ``POST /upload``, ``POST /create`` + ``PUT /upload/{serverName}/{mediaId}``, config.

Spec: client-server-api/modules/content_repo.md, ``content-repo.yaml`` and
``authed-content-repo.yaml``.

The request body is never read whole: it is handed to the media service as an async iterator of
chunks (the HTTP layer's streaming body keeps at most a few hundred KiB buffered and stops
reading the socket while the disk catches up). A declared ``Content-Length`` over the limit is
refused before a byte of the body is read; a body that goes quiet for ``BODY_IDLE_TIMEOUT_S`` is
abandoned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import trio
from quart import request

from homeserver.api._http import route
from homeserver.errors import InvalidParam, MatrixError, Unrecognized
from homeserver.services.media import MediaService
from homeserver.services.requester import Requester

__all__ = ["BODY_IDLE_TIMEOUT_S", "UploadApi", "request_body_chunks"]

#: Seconds an upload may go without a byte arriving before it is abandoned.
BODY_IDLE_TIMEOUT_S = 60.0
_MAX_FILENAME = 255
_MAX_CONTENT_TYPE = 255
_DEFAULT_TYPE = "application/octet-stream"


async def request_body_chunks(idle_timeout_s: float = BODY_IDLE_TIMEOUT_S) -> AsyncIterator[bytes]:
    """The request body, chunk by chunk, as it arrives.

    Raises:
        MatrixError: ``408 M_UNKNOWN`` when no data arrives for ``idle_timeout_s``.
    """
    chunks = request.body.__aiter__()
    while True:
        with trio.move_on_after(idle_timeout_s) as scope:
            try:
                chunk = await chunks.__anext__()
            except StopAsyncIteration:
                return
        if scope.cancelled_caught:
            raise MatrixError(408, "M_UNKNOWN", "Timed out waiting for the request body")
        yield chunk


def _upload_params() -> tuple[str, str | None]:
    """The content type (header, default ``application/octet-stream``) and ``filename``."""
    content_type = (request.headers.get("Content-Type") or "").strip() or _DEFAULT_TYPE
    if len(content_type) > _MAX_CONTENT_TYPE or "/" not in content_type:
        raise InvalidParam("Content-Type must be a media type such as image/png")
    filename = request.args.get("filename")
    if filename is not None:
        if len(filename) > _MAX_FILENAME:
            raise InvalidParam(f"filename is longer than {_MAX_FILENAME} characters")
        if any(ord(c) < 0x20 or ord(c) == 0x7F for c in filename):
            raise InvalidParam("filename contains control characters")
        filename = filename or None
    return content_type, filename


class UploadApi:
    """Upload, asynchronous upload, the repository's configuration and URL previews.

    Args:
        media: the media service.
    """

    def __init__(self, media: MediaService) -> None:
        self._media = media

    @route("POST", "/_matrix/media/v3/upload", auth="user", rate_limit="client_default")
    async def upload(self, requester: Requester) -> Any:
        """``POST /_matrix/media/v3/upload``: upload content, get its ``mxc://`` URI.

        Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixmediav3upload
        """
        content_type, filename = _upload_params()
        result = await self._media.upload(
            requester.user_id,
            request_body_chunks(),
            content_length=request.content_length,
            content_type=content_type,
            filename=filename,
        )
        return {"content_uri": result.content_uri}

    @route("POST", "/_matrix/media/v1/create", auth="user", rate_limit="client_default")
    async def create(self, requester: Requester) -> Any:
        """``POST /_matrix/media/v1/create``: reserve an ``mxc://`` URI to upload to later.

        Spec: https://spec.matrix.org/v1.19/client-server-api/#post_matrixmediav1create
        """
        result = await self._media.create(requester.user_id)
        return {"content_uri": result.content_uri, "unused_expires_at": result.unused_expires_at}

    @route(
        "PUT",
        "/_matrix/media/v3/upload/{server_name}/{media_id}",
        auth="user",
        rate_limit="client_default",
    )
    async def upload_to(self, requester: Requester, server_name: str, media_id: str) -> Any:
        """``PUT /_matrix/media/v3/upload/{serverName}/{mediaId}``: upload to a created URI.

        Spec: https://spec.matrix.org/v1.19/client-server-api/#put_matrixmediav3uploadservernamemediaid
        """
        content_type, filename = _upload_params()
        await self._media.upload_to(
            requester.user_id,
            server_name,
            media_id,
            request_body_chunks(),
            content_length=request.content_length,
            content_type=content_type,
            filename=filename,
        )
        return {}

    @route("GET", "/_matrix/client/v1/media/config", auth="user")
    async def config(self, requester: Requester) -> Any:
        """``GET /_matrix/client/v1/media/config``: the upload size limit.

        Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1mediaconfig
        """
        return {"m.upload.size": self._media.config.max_upload_bytes}

    @route("GET", "/_matrix/media/v3/config", auth="user")
    async def config_v3(self, requester: Requester) -> Any:
        """``GET /_matrix/media/v3/config`` (deprecated): as the authenticated endpoint.

        Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixmediav3config
        """
        return {"m.upload.size": self._media.config.max_upload_bytes}

    @route("GET", "/_matrix/client/v1/media/preview_url", auth="user")
    async def preview_url(self, requester: Requester) -> Any:
        """``GET /_matrix/client/v1/media/preview_url``: not offered by this server.

        Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1mediapreview_url

        Previewing means fetching arbitrary URLs on a user's behalf, which needs its own
        defences (an IP blocklist against server-side request forgery, size and time limits, an
        HTML parser for OpenGraph data). Until that exists the endpoint answers
        ``404 M_UNRECOGNIZED``, which clients treat as "no previews".
        """
        raise Unrecognized(404, "URL previews are not supported by this server")

    @route("GET", "/_matrix/media/v3/preview_url", auth="user")
    async def preview_url_v3(self, requester: Requester) -> Any:
        """``GET /_matrix/media/v3/preview_url`` (deprecated): not offered, as above.

        Spec: https://spec.matrix.org/v1.19/client-server-api/#get_matrixmediav3preview_url
        """
        raise Unrecognized(404, "URL previews are not supported by this server")
