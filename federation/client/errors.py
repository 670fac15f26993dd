"""Errors raised by the outbound federation client.

    FederationError
    ├── DestinationBlocked      refused before any connection: allow/deny list, or an address
    │                           that policy forbids (loopback, private, link-local, ...)
    ├── DestinationUnreachable  DNS failure, connection or TLS failure, timeout
    ├── RemoteServerError       the remote answered with a non-2xx status (its Matrix error
    │                           code and message when the body was one)
    └── InvalidResponse         a 2xx answer whose body is not the JSON the endpoint promises

httpx's own exceptions never leave this package: the transport translates them at the boundary.
A :class:`RemoteServerError` describes what *another* server said; the homeserver must never pass
its errcode on to a client as if it were its own answer (wrap it, e.g. ``502`` or a
``M_UNKNOWN`` naming the remote).
"""

from __future__ import annotations


class FederationError(Exception):
    """Base class of every error the federation client raises."""

    def __init__(self, destination: str, message: str) -> None:
        super().__init__(f"{destination}: {message}")
        self.destination = destination
        self.message = message


class DestinationBlocked(FederationError):
    """The destination may not be contacted: refused by the domain allow/deny list or because
    every address it resolves to is in a forbidden range. No connection was attempted."""


class DestinationUnreachable(FederationError):
    """The destination could not be reached: DNS failure, connection refused, TLS failure
    (including a certificate our trust store does not accept) or a timeout."""


class InvalidResponse(FederationError):
    """The destination answered 2xx with a body that is not what the endpoint promises (not
    JSON, wrong shape, too large)."""


class RemoteServerError(FederationError):
    """The destination answered with a non-2xx status.

    Attributes:
        status: the HTTP status code.
        errcode: the Matrix ``errcode`` of the body, or ``None`` when the body was not a Matrix
            error (an HTML page from a proxy, say).
        error: the ``error`` message of the body, or ``""``.
        room_version: the ``room_version`` of an ``M_INCOMPATIBLE_ROOM_VERSION`` body.
    """

    def __init__(
        self,
        destination: str,
        status: int,
        errcode: str | None,
        error: str,
        room_version: str | None = None,
    ) -> None:
        super().__init__(destination, f"HTTP {status} {errcode or ''} {error}".rstrip())
        self.status = status
        self.errcode = errcode
        self.error = error
        self.room_version = room_version
