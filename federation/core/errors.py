"""Errors raised by the protocol core.

    ProtocolError
    ├── InvalidIdentifier     an identifier does not match the grammar
    ├── CanonicalJSONError    a value canonical JSON cannot encode
    ├── SignatureError        a signature is missing, malformed or does not verify
    ├── EventFormatError      an event is malformed for its room version (size, fields, hash)
    │   └── ContentHashError  the content hash does not match: redact the event, do not drop it
    ├── UnsupportedRoomVersion
    └── AuthError             an event fails the authorisation rules (names the rule)

The API layer turns these into Matrix errors (``M_INVALID_PARAM``, ``M_BAD_JSON``,
``M_FORBIDDEN``, ``M_UNSUPPORTED_ROOM_VERSION``).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of every error the protocol core raises."""


class InvalidIdentifier(ProtocolError, ValueError):
    """An identifier (user ID, room ID, event ID, alias, server name) is malformed."""


class CanonicalJSONError(ProtocolError, ValueError):
    """A value cannot be encoded as canonical JSON (float, big integer, bad key, bad Unicode)."""


class SignatureError(ProtocolError):
    """A signature is missing, malformed, from an unknown key, or does not verify."""


class EventFormatError(ProtocolError, ValueError):
    """An event does not have the format its room version requires."""


class ContentHashError(EventFormatError):
    """An event's ``hashes.sha256`` does not match its content.

    Per the spec the receiver then uses the redacted copy of the event instead of dropping it.
    """


class UnsupportedRoomVersion(ProtocolError):
    """The room version is not one this server knows."""

    def __init__(self, version: str) -> None:
        super().__init__(f"unsupported room version {version!r}")
        self.version = version


class AuthError(ProtocolError):
    """An event is not allowed by the authorisation rules.

    Attributes:
        rule: a short stable name of the rule that failed, such as ``"create.has_prev_events"``
            or ``"member.join.banned"``, so tests and logs can tell rules apart.
    """

    def __init__(self, rule: str, message: str = "") -> None:
        super().__init__(f"{rule}: {message}" if message else rule)
        self.rule = rule
