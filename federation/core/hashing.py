"""Content hashes, reference hashes, event IDs and v12 room IDs.

Spec: server-server-api.md › Calculating the content hash for an event:

    First, any existing ``unsigned``, ``signatures``, and ``hashes`` properties are removed.
    The resulting object is then encoded as Canonical JSON, and the JSON is hashed using SHA-256.

› Calculating the reference hash for an event: redact, remove ``signatures`` and ``unsigned``,
canonical JSON, SHA-256. rooms/fragments/v1-event-ids.md (v1-2: ``$opaque:domain`` carried in
the event), v3 (``$`` + unpadded base64 of the reference hash), v4-event-ids.md (v4+: URL-safe),
appendices.md › Room IDs and rooms/v12.md (v12: the room ID is the create event's event ID with
``!`` instead of ``$``).

Room versions 1-5 "might not be fully compliant" with canonical JSON, so their events are
encoded leniently (big integers, floats); v6+ events must be strict.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from federation.core.canonicaljson import encode_canonical_json
from federation.core.errors import EventFormatError
from federation.core.events import Event
from federation.core.redaction import redact
from federation.core.room_versions import EventIdFormat, RoomVersion
from federation.core.signing import encode_base64

_NOT_IN_CONTENT_HASH = frozenset({"unsigned", "signatures", "hashes"})
_NOT_IN_REFERENCE_HASH = frozenset({"unsigned", "signatures", "age_ts"})


def compute_content_hash(pdu: Mapping[str, Any], *, strict: bool = True) -> bytes:
    """SHA-256 over the canonical JSON of ``pdu`` without ``unsigned``/``signatures``/``hashes``.

    Args:
        pdu: the event JSON.
        strict: encode strictly (room v6+); False accepts the lenient JSON of v1-5.

    Returns:
        The 32-byte digest (``hashes.sha256`` is its unpadded base64).

    Raises:
        CanonicalJSONError: the event cannot be encoded.
    """
    stripped = {k: v for k, v in pdu.items() if k not in _NOT_IN_CONTENT_HASH}
    return hashlib.sha256(encode_canonical_json(stripped, strict=strict)).digest()


def compute_reference_hash(room_version: RoomVersion, pdu: Mapping[str, Any]) -> bytes:
    """SHA-256 over the canonical JSON of the redacted event without signatures/unsigned.

    Raises:
        CanonicalJSONError: the event cannot be encoded.
    """
    redacted = redact(room_version, pdu)
    for key in _NOT_IN_REFERENCE_HASH:
        redacted.pop(key, None)
    data = encode_canonical_json(redacted, strict=room_version.strict_canonical_json)
    return hashlib.sha256(data).digest()


def compute_event_id(room_version: RoomVersion, pdu: Mapping[str, Any]) -> str:
    """The event ID of ``pdu``: its ``event_id`` (v1-2) or ``$`` + its reference hash (v3+).

    Raises:
        EventFormatError: a v1-2 event without a string ``event_id``.
        CanonicalJSONError: the event cannot be encoded.
    """
    fmt = room_version.event_id_format
    if fmt is EventIdFormat.V1_ORIGIN:
        event_id = pdu.get("event_id")
        if not isinstance(event_id, str):
            raise EventFormatError("room versions 1 and 2 need an event_id in the event")
        return event_id
    return event_id_from_reference_hash(room_version, compute_reference_hash(room_version, pdu))


def event_id_from_reference_hash(room_version: RoomVersion, digest: bytes) -> str:
    """``$`` + unpadded base64 of ``digest``: standard alphabet in v3, URL-safe from v4."""
    urlsafe = room_version.event_id_format is EventIdFormat.V3_URLSAFE
    return "$" + encode_base64(digest, urlsafe=urlsafe)


def room_id_from_create_event(room_version: RoomVersion, create_pdu: Mapping[str, Any]) -> str:
    """The v12 room ID: ``!`` + URL-safe unpadded base64 of the create event's reference hash.

    Raises:
        CanonicalJSONError: the event cannot be encoded.
    """
    return "!" + encode_base64(compute_reference_hash(room_version, create_pdu), urlsafe=True)


def event_from_pdu(room_version: RoomVersion, pdu: Mapping[str, Any]) -> Event:
    """Wrap ``pdu`` in an :class:`Event`, computing its event ID.

    No checks are made: run ``builder.check_event_format`` and the signature and hash checks
    on received events first.

    Raises:
        EventFormatError: a v1-2 event without ``event_id``.
        CanonicalJSONError: the event cannot be encoded.
    """
    return Event(room_version, pdu, compute_event_id(room_version, pdu))
