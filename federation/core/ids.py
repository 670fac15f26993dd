"""Identifier grammar: server names, user IDs, room IDs, event IDs, room aliases.

Spec: appendices.md › Identifier Grammar (Server Name, Common Identifier Format, User
Identifiers, Historical User IDs, Mapping from other character sets, Room IDs, Room Aliases,
Event IDs), appendices.md › Dot-separated property paths, rooms/_index.md › Room version grammar.

    server_name = hostname [ ":" port ]
    hostname    = IPv4address / "[" IPv6address "]" / dns-name
    user_id     = "@" user_id_localpart ":" server_name      ; ≤ 255 bytes

Remote identifiers are parsed with the *historical* grammar, which every server MUST accept:
a localpart is any non-surrogate code points except ``:`` and NUL (even empty). New local
user IDs must use the strict grammar (:func:`check_new_localpart`). Room IDs are either
``!opaque:server`` (room versions 1-11) or ``!`` + 43 characters of URL-safe unpadded base64
(v12, the create event's reference hash); event IDs are ``$opaque:server`` (v1-2) or ``$`` +
43 characters of base64 (v3 standard alphabet, v4+ URL-safe).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache

from federation.core.errors import InvalidIdentifier
from federation.core.room_versions import EventIdFormat, RoomIdFormat, RoomVersion

#: The byte limit of user IDs, room IDs, event IDs and aliases (sigil and domain included).
MAX_ID_BYTES = 255

_PORT = r"(?::(?P<port>[0-9]{1,5}))?"
_SERVER_RE = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]{2,45})\]|(?P<dns>[0-9A-Za-z.-]{1,255}))" + _PORT
)
_STRICT_LOCALPART_RE = re.compile(r"[a-z0-9._=\-/+]+")
_HASH_STD_RE = re.compile(r"[A-Za-z0-9+/]{43}")
_HASH_URLSAFE_RE = re.compile(r"[A-Za-z0-9_-]{43}")
_ROOM_VERSION_RE = re.compile(r"[a-z0-9.-]{1,32}")


@dataclass(frozen=True, slots=True)
class ServerName:
    """A parsed server name: ``host`` keeps IPv6 brackets; ``port`` is None when absent."""

    host: str
    port: int | None = None

    def __str__(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UserID:
    """``@localpart:server_name``."""

    localpart: str
    server_name: str

    def __str__(self) -> str:
        return f"@{self.localpart}:{self.server_name}"

    @property
    def is_compliant(self) -> bool:
        """True when the localpart follows the current (non-historical) grammar."""
        return _STRICT_LOCALPART_RE.fullmatch(self.localpart) is not None


@dataclass(frozen=True, slots=True)
class RoomID:
    """``!opaque:server_name`` (v1-11) or ``!hash`` (v12, ``server_name`` is None)."""

    opaque: str
    server_name: str | None

    def __str__(self) -> str:
        return (
            f"!{self.opaque}" if self.server_name is None else f"!{self.opaque}:{self.server_name}"
        )


@dataclass(frozen=True, slots=True)
class EventID:
    """``$opaque:server_name`` (v1-2) or ``$hash`` (v3+, ``server_name`` is None)."""

    opaque: str
    server_name: str | None

    def __str__(self) -> str:
        return (
            f"${self.opaque}" if self.server_name is None else f"${self.opaque}:{self.server_name}"
        )


@dataclass(frozen=True, slots=True)
class RoomAlias:
    """``#localpart:server_name``."""

    localpart: str
    server_name: str

    def __str__(self) -> str:
        return f"#{self.localpart}:{self.server_name}"


@lru_cache(maxsize=16384)
def parse_server_name(value: str) -> ServerName:
    """Parse a server name: DNS name, IPv4 literal or bracketed IPv6 literal, optional port.

    Results are cached: every received event names a handful of servers many times.

    Raises:
        InvalidIdentifier: ``value`` does not match the grammar.
    """
    m = _SERVER_RE.fullmatch(value)
    if m is None:
        raise InvalidIdentifier(f"invalid server name {value!r}")
    port = int(m["port"]) if m["port"] is not None else None
    if m["ipv6"] is not None:
        try:
            ipaddress.IPv6Address(m["ipv6"])
        except ValueError:
            raise InvalidIdentifier(f"invalid IPv6 literal in {value!r}") from None
        return ServerName(f"[{m['ipv6']}]", port)
    # A dotted quad with an octet > 255 still matches dns-name (digits and dots are
    # dns-chars), so the grammar accepts it as a DNS name; so do we.
    return ServerName(m["dns"], port)


def is_valid_server_name(value: str) -> bool:
    """True when ``value`` is a valid server name."""
    try:
        parse_server_name(value)
    except InvalidIdentifier:
        return False
    return True


def _split(value: str, sigil: str, what: str) -> tuple[str, str]:
    """Split ``&localpart:server`` checking sigil, byte length, NUL, surrogates and server."""
    if not value.startswith(sigil):
        raise InvalidIdentifier(f"{what} must start with {sigil!r}: {value!r}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidIdentifier(f"{what} contains a surrogate: {value!r}") from None
    if size > MAX_ID_BYTES:
        raise InvalidIdentifier(f"{what} is longer than {MAX_ID_BYTES} bytes")
    localpart, sep, server = value[1:].partition(":")
    if not sep:
        raise InvalidIdentifier(f"{what} has no server name: {value!r}")
    if "\x00" in localpart:
        raise InvalidIdentifier(f"{what} contains NUL: {value!r}")
    parse_server_name(server)
    return localpart, server


@lru_cache(maxsize=65536)
def parse_user_id(value: str) -> UserID:
    """Parse a user ID with the historical grammar every server must accept (results cached).

    Raises:
        InvalidIdentifier: bad sigil, server name, NUL, surrogate or longer than 255 bytes.
    """
    localpart, server = _split(value, "@", "user ID")
    return UserID(localpart, server)


def check_new_localpart(localpart: str, server_name: str) -> UserID:
    """Check a localpart for a *new* local user against the strict grammar.

    Raises:
        InvalidIdentifier: characters outside ``a-z 0-9 . _ = - / +``, empty, or a user ID
            longer than 255 bytes.
    """
    if _STRICT_LOCALPART_RE.fullmatch(localpart) is None:
        raise InvalidIdentifier(f"invalid localpart {localpart!r}")
    return parse_user_id(f"@{localpart}:{server_name}")


def parse_room_alias(value: str) -> RoomAlias:
    """Parse ``#localpart:server``.

    Raises:
        InvalidIdentifier: the alias does not match the grammar.
    """
    localpart, server = _split(value, "#", "room alias")
    return RoomAlias(localpart, server)


def parse_room_id(value: str, room_version: RoomVersion | None = None) -> RoomID:
    """Parse a room ID; with ``room_version`` only that version's format is accepted.

    Raises:
        InvalidIdentifier: the room ID does not match the grammar.
    """
    fmt = None if room_version is None else room_version.room_id_format
    if fmt is not RoomIdFormat.LEGACY and ":" not in value:
        if value.startswith("!") and _HASH_URLSAFE_RE.fullmatch(value, 1):
            return RoomID(value[1:], None)
        raise InvalidIdentifier(f"invalid room ID {value!r}")
    if fmt is RoomIdFormat.CREATE_EVENT_HASH:
        raise InvalidIdentifier(f"room ID {value!r} must be a create event hash")
    opaque, server = _split(value, "!", "room ID")
    return RoomID(opaque, server)


def parse_event_id(value: str, room_version: RoomVersion | None = None) -> EventID:
    """Parse an event ID; with ``room_version`` only that version's format is accepted.

    Raises:
        InvalidIdentifier: the event ID does not match the grammar.
    """
    fmt = None if room_version is None else room_version.event_id_format
    if fmt is EventIdFormat.V1_ORIGIN or (fmt is None and ":" in value):
        opaque, server = _split(value, "$", "event ID")
        return EventID(opaque, server)
    pattern = _HASH_STD_RE if fmt is EventIdFormat.V2_BASE64 else _HASH_URLSAFE_RE
    ok = value.startswith("$") and (
        pattern.fullmatch(value, 1) is not None
        or (fmt is None and _HASH_STD_RE.fullmatch(value, 1) is not None)
    )
    if not ok:
        raise InvalidIdentifier(f"invalid event ID {value!r}")
    return EventID(value[1:], None)


def is_valid_event_id(value: str, room_version: RoomVersion) -> bool:
    """Fast check that ``value`` is an event ID of ``room_version``'s format (no object built)."""
    fmt = room_version.event_id_format
    if fmt is EventIdFormat.V3_URLSAFE:
        return value[:1] == "$" and _HASH_URLSAFE_RE.fullmatch(value, 1) is not None
    if fmt is EventIdFormat.V2_BASE64:
        return value[:1] == "$" and _HASH_STD_RE.fullmatch(value, 1) is not None
    try:
        parse_event_id(value, room_version)
    except InvalidIdentifier:
        return False
    return True


def is_valid_room_version_id(value: str) -> bool:
    """Room version grammar: 1-32 code points of ``a-z 0-9 . -``."""
    return _ROOM_VERSION_RE.fullmatch(value) is not None


_LOCALPART_BYTES = frozenset(b"abcdefghijklmnopqrstuvwxyz0123456789._-/+")


def map_to_localpart(name: str, *, preserve_case: bool = False) -> str:
    """Map any string onto the user ID localpart character set (the spec's suggestion).

    Upper-case ASCII is lower-cased, or with ``preserve_case`` escaped as ``_`` + lower
    case (and ``_`` as ``__``); every other byte outside the allowed set, and ``=``, becomes
    ``=xx``. ``"#"`` → ``"=23"``, ``"á"`` → ``"=c3=a1"``.
    """
    out: list[str] = []
    for byte in name.encode("utf-8"):
        if 0x41 <= byte <= 0x5A:
            out.append(("_" if preserve_case else "") + chr(byte + 0x20))
        elif byte == 0x5F and preserve_case:
            out.append("__")
        elif byte in _LOCALPART_BYTES:
            out.append(chr(byte))
        else:
            out.append(f"={byte:02x}")
    return "".join(out)


def split_property_path(path: str) -> list[str]:
    r"""Split a dot-separated property path: ``content.m\.relates_to`` → two keys.

    ``\.`` and ``\\`` are escapes; any other backslash is kept literally.
    """
    keys: list[str] = []
    current: list[str] = []
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "\\" and i + 1 < len(path) and path[i + 1] in ".\\":
            current.append(path[i + 1])
            i += 2
            continue
        if ch == ".":
            keys.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    keys.append("".join(current))
    return keys
