"""Serving media bytes: headers the spec asks for, ``Range``, and streamed bodies.

Spec: client-server-api/modules/content_repo.md (the ``Content-Security-Policy`` and
``Cross-Origin-Resource-Policy`` recommendations, › Serving inline content) and the
``Content-Disposition`` rules of ``GET /_matrix/client/v1/media/download``.

- ``Content-Disposition`` is ``inline`` only for the spec's list of safe types, ``attachment``
  for everything else (HTML and SVG included); the file name is quoted, or RFC 5987-encoded when
  it is not plain ASCII, so no name can inject a header parameter.
- A single ``bytes=`` range is answered ``206`` with ``Content-Range``; an unsatisfiable one
  ``416``; several ranges, a malformed header or a stale ``If-Range`` get the whole file (RFC
  9110 allows ignoring ``Range``).
- Bodies are async generators reading the blob in chunks from a worker thread; the response has
  no time limit (a slow client on a large file is not cut off), and memory stays flat.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Callable
from urllib.parse import quote

from quart import Response, request

from homeserver.errors import Codes, MatrixError

__all__ = [
    "INLINE_TYPES",
    "content_disposition",
    "media_headers",
    "parse_range",
    "stream_response",
]

#: Spec: › Serving inline content.
INLINE_TYPES = frozenset(
    {
        "text/css",
        "text/plain",
        "text/csv",
        "application/json",
        "application/ld+json",
        "image/jpeg",
        "image/gif",
        "image/png",
        "image/apng",
        "image/webp",
        "image/avif",
        "video/mp4",
        "video/webm",
        "video/ogg",
        "video/quicktime",
        "audio/mp4",
        "audio/webm",
        "audio/aac",
        "audio/mpeg",
        "audio/ogg",
        "audio/wave",
        "audio/wav",
        "audio/x-wav",
        "audio/x-pn-wav",
        "audio/flac",
        "audio/x-flac",
    }
)

#: Spec: the recommended policy.
CSP = (
    "sandbox; default-src 'none'; script-src 'none'; plugin-types application/pdf; "
    "style-src 'unsafe-inline'; object-src 'self';"
)

_PLAIN_NAME = re.compile(r"[\x20-\x7e]+")
_RANGE = re.compile(r"bytes=(\d*)-(\d*)")

#: ``(start, end) -> the bytes [start, end) of the content, in chunks``.
ChunkSource = Callable[[int, int], AsyncIterator[bytes]]


def base_type(content_type: str) -> str:
    """``text/plain; charset=utf-8`` → ``text/plain``."""
    return content_type.split(";", 1)[0].strip().lower()


def content_disposition(
    content_type: str, filename: str | None, *, inline: bool | None = None
) -> str:
    """The ``Content-Disposition`` value for content of this type and name."""
    if inline is None:
        inline = base_type(content_type) in INLINE_TYPES
    disposition = "inline" if inline else "attachment"
    if not filename:
        return disposition
    if _PLAIN_NAME.fullmatch(filename) and '"' not in filename and "\\" not in filename:
        return f'{disposition}; filename="{filename}"'
    return f"{disposition}; filename*=utf-8''{quote(filename, safe='')}"


def media_headers(content_type: str, disposition: str) -> dict[str, str]:
    """The headers every media response carries."""
    return {
        "Content-Type": content_type,
        "Content-Disposition": disposition,
        "Content-Security-Policy": CSP,
        "Cross-Origin-Resource-Policy": "cross-origin",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, max-age=86400",
    }


class RangeNotSatisfiable(MatrixError):
    """``416``: the range starts past the end of the content."""

    def __init__(self, size: int) -> None:
        super().__init__(
            416,
            Codes.INVALID_PARAM,
            "Requested range not satisfiable",
            headers={"Content-Range": f"bytes */{size}"},
        )


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The ``[start, end)`` a ``Range`` header asks for, or None for the whole content.

    Raises:
        RangeNotSatisfiable: a well-formed single range outside the content.
    """
    if header is None:
        return None
    m = _RANGE.fullmatch(header.strip())
    if m is None:
        return None  # several ranges, other units, garbage: serve everything
    first, last = m.group(1), m.group(2)
    if not first and not last:
        return None
    if not first:  # suffix: the last N bytes
        n = int(last)
        if n == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - n), size
    start = int(first)
    end = size if not last else min(int(last) + 1, size)
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable(size)
    return start, end


def stream_response(
    chunks_for: ChunkSource,
    *,
    size: int,
    headers: dict[str, str],
    etag: str | None,
) -> Response:
    """A ``200``/``206`` response streaming the content (honouring ``Range`` / ``If-Range``)."""
    out = dict(headers)
    out["Accept-Ranges"] = "bytes"
    if etag is not None:
        out["ETag"] = f'"{etag}"'
    wanted = request.headers.get("Range")
    if_range = request.headers.get("If-Range")
    if wanted is not None and if_range is not None and if_range.strip() != f'"{etag}"':
        wanted = None
    span = parse_range(wanted, size)
    status = 200
    start, end = 0, size
    if span is not None:
        start, end = span
        status = 206
        out["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    out["Content-Length"] = str(end - start)
    content_type = out.pop("Content-Type")
    resp = Response(chunks_for(start, end), status=status, content_type=content_type)
    for name, value in out.items():
        resp.headers[name] = value
    resp.timeout = None  # type: ignore[assignment]
    return resp
