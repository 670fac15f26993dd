"""The Matrix error model.

Spec: client-server-api/_index.md › API Standards › Standard error response.

Every error a client can see is a :class:`MatrixError` carrying an HTTP status, an ``errcode``
and a human-readable ``error``; the HTTP layer renders it as ``{"errcode", "error", ...}``.
Services raise these (or protocol errors that the API layer translates); nothing else reaches
a client, and an unexpected exception becomes ``500 M_UNKNOWN`` without internals.

    MatrixError(status, errcode, msg, **extra)
    ├── NotJson              400 M_NOT_JSON           body is not JSON
    ├── BadJson              400 M_BAD_JSON           JSON of the wrong shape
    ├── InvalidParam         400 M_INVALID_PARAM      a parameter has a bad value
    ├── MissingParam         400 M_MISSING_PARAM
    ├── TooLarge             413 M_TOO_LARGE          body over the configured limit
    ├── Unrecognized         404/405 M_UNRECOGNIZED   unknown endpoint or method
    ├── NotFound             404 M_NOT_FOUND
    ├── Forbidden            403 M_FORBIDDEN
    ├── MissingToken         401 M_MISSING_TOKEN
    ├── UnknownToken         401 M_UNKNOWN_TOKEN      (soft_logout optional)
    ├── LimitExceeded        429 M_LIMIT_EXCEEDED     retry_after_ms + Retry-After header
    └── UnknownError         500 M_UNKNOWN
"""

from __future__ import annotations

import enum
import math
from typing import Any


class Codes(enum.StrEnum):
    """Matrix error codes (spec: Standard error response › Common error codes)."""

    FORBIDDEN = "M_FORBIDDEN"
    UNKNOWN_TOKEN = "M_UNKNOWN_TOKEN"
    MISSING_TOKEN = "M_MISSING_TOKEN"
    USER_LOCKED = "M_USER_LOCKED"
    USER_SUSPENDED = "M_USER_SUSPENDED"
    BAD_JSON = "M_BAD_JSON"
    NOT_JSON = "M_NOT_JSON"
    NOT_FOUND = "M_NOT_FOUND"
    LIMIT_EXCEEDED = "M_LIMIT_EXCEEDED"
    UNRECOGNIZED = "M_UNRECOGNIZED"
    UNKNOWN = "M_UNKNOWN"
    UNAUTHORIZED = "M_UNAUTHORIZED"
    USER_DEACTIVATED = "M_USER_DEACTIVATED"
    USER_IN_USE = "M_USER_IN_USE"
    INVALID_USERNAME = "M_INVALID_USERNAME"
    ROOM_IN_USE = "M_ROOM_IN_USE"
    INVALID_ROOM_STATE = "M_INVALID_ROOM_STATE"
    THREEPID_IN_USE = "M_THREEPID_IN_USE"
    THREEPID_NOT_FOUND = "M_THREEPID_NOT_FOUND"
    THREEPID_AUTH_FAILED = "M_THREEPID_AUTH_FAILED"
    THREEPID_DENIED = "M_THREEPID_DENIED"
    SERVER_NOT_TRUSTED = "M_SERVER_NOT_TRUSTED"
    UNSUPPORTED_ROOM_VERSION = "M_UNSUPPORTED_ROOM_VERSION"
    INCOMPATIBLE_ROOM_VERSION = "M_INCOMPATIBLE_ROOM_VERSION"
    BAD_STATE = "M_BAD_STATE"
    GUEST_ACCESS_FORBIDDEN = "M_GUEST_ACCESS_FORBIDDEN"
    CAPTCHA_NEEDED = "M_CAPTCHA_NEEDED"
    CAPTCHA_INVALID = "M_CAPTCHA_INVALID"
    MISSING_PARAM = "M_MISSING_PARAM"
    INVALID_PARAM = "M_INVALID_PARAM"
    TOO_LARGE = "M_TOO_LARGE"
    EXCLUSIVE = "M_EXCLUSIVE"
    RESOURCE_LIMIT_EXCEEDED = "M_RESOURCE_LIMIT_EXCEEDED"
    CANNOT_LEAVE_SERVER_NOTICE_ROOM = "M_CANNOT_LEAVE_SERVER_NOTICE_ROOM"
    WEAK_PASSWORD = "M_WEAK_PASSWORD"
    UNABLE_TO_AUTHORISE_JOIN = "M_UNABLE_TO_AUTHORISE_JOIN"
    UNABLE_TO_GRANT_JOIN = "M_UNABLE_TO_GRANT_JOIN"
    NOT_YET_UPLOADED = "M_NOT_YET_UPLOADED"
    CANNOT_OVERWRITE_MEDIA = "M_CANNOT_OVERWRITE_MEDIA"
    WRONG_ROOM_KEYS_VERSION = "M_WRONG_ROOM_KEYS_VERSION"
    UNKNOWN_POS = "M_UNKNOWN_POS"


class ClientGone(Exception):
    """The client disconnected before its answer was ready: there is nobody to answer.

    Not a :class:`MatrixError` (no client ever sees it); the HTTP layer drops the request.
    """


class MatrixError(Exception):
    """An error a client sees as ``{"errcode": ..., "error": ...}`` with ``status``.

    Args:
        status: HTTP status code.
        errcode: the Matrix error code.
        msg: human-readable text (never internals).
        headers: extra response headers.
        **extra: extra top-level keys of the error body (e.g. ``retry_after_ms``).
    """

    def __init__(
        self,
        status: int,
        errcode: str,
        msg: str,
        *,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(msg)
        self.status = status
        self.errcode = errcode
        self.msg = msg
        self.headers = headers or {}
        self.extra = extra

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"errcode": self.errcode, "error": self.msg}
        body.update(self.extra)
        return body

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.status}, {self.errcode!r}, {self.msg!r})"


class NotJson(MatrixError):
    """The request body is not valid JSON (or not UTF-8)."""

    def __init__(self, msg: str = "Content not JSON.") -> None:
        super().__init__(400, Codes.NOT_JSON, msg)


class BadJson(MatrixError):
    """The JSON is valid but has the wrong shape or types."""

    def __init__(self, msg: str = "Invalid JSON body.") -> None:
        super().__init__(400, Codes.BAD_JSON, msg)


class InvalidParam(MatrixError):
    """A parameter has a value that is not allowed."""

    def __init__(self, msg: str) -> None:
        super().__init__(400, Codes.INVALID_PARAM, msg)


class MissingParam(MatrixError):
    """A required parameter is missing."""

    def __init__(self, msg: str) -> None:
        super().__init__(400, Codes.MISSING_PARAM, msg)


class TooLarge(MatrixError):
    """The request body is over the configured limit."""

    def __init__(self, msg: str = "Request body too large.") -> None:
        super().__init__(413, Codes.TOO_LARGE, msg)


class Unrecognized(MatrixError):
    """Unknown endpoint (404) or known endpoint with a wrong method (405)."""

    def __init__(self, status: int = 404, msg: str = "Unrecognized request") -> None:
        super().__init__(status, Codes.UNRECOGNIZED, msg)


class NotFound(MatrixError):
    """The thing asked for does not exist (or is not visible to the requester)."""

    def __init__(self, msg: str = "Not found") -> None:
        super().__init__(404, Codes.NOT_FOUND, msg)


class Forbidden(MatrixError):
    """The requester may not do this."""

    def __init__(self, msg: str = "Forbidden") -> None:
        super().__init__(403, Codes.FORBIDDEN, msg)


class MissingToken(MatrixError):
    """No access token was given."""

    def __init__(self, msg: str = "Missing access token") -> None:
        super().__init__(401, Codes.MISSING_TOKEN, msg)


class UnknownToken(MatrixError):
    """The access token is not recognised (or has expired: ``soft_logout``)."""

    def __init__(self, msg: str = "Unknown access token", *, soft_logout: bool = False) -> None:
        if soft_logout:
            super().__init__(401, Codes.UNKNOWN_TOKEN, msg, soft_logout=True)
        else:
            super().__init__(401, Codes.UNKNOWN_TOKEN, msg)


class LimitExceeded(MatrixError):
    """Rate limited: ``retry_after_ms`` in the body and ``Retry-After`` (seconds) as header."""

    def __init__(self, retry_after_ms: int, msg: str = "Too many requests") -> None:
        retry_after_ms = max(0, int(retry_after_ms))
        super().__init__(
            429,
            Codes.LIMIT_EXCEEDED,
            msg,
            headers={"Retry-After": str(max(1, math.ceil(retry_after_ms / 1000)))},
            retry_after_ms=retry_after_ms,
        )


class UnknownError(MatrixError):
    """An internal failure; the message never carries internals."""

    def __init__(self, msg: str = "Internal server error") -> None:
        super().__init__(500, Codes.UNKNOWN, msg)
