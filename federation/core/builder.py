"""Building and signing new events; format, hash and signature checks on received events.

Spec: server-server-api.md › Signing Events › Adding hashes and signatures to outgoing events
("the content hash … is stored in the event object, in a ``hashes`` object, under a
``sha256`` key. The event object is then redacted … Finally it is signed"), › Validating hashes
and signatures on received events, › Checks performed on receipt of a PDU (1. valid format,
2. signatures, 3. hashes); client-server-api › Size limits (65,536 bytes of canonical JSON;
``sender``, ``room_id``, ``state_key``, ``type``, ``event_id`` ≤ 255 bytes); the PDU schemas
``pdu_v1``/``v3``/``v4``/``v6``/``v11``/``v12`` (≤ 20 ``prev_events``, ≤ 10 ``auth_events``);
rooms/v12.md (the create event has no ``room_id``; the create event is never an auth event).

Required signatures, as Synapse computes them: the ``sender``'s server (except for invites made
from a third-party invite, where the sender need not be the sending server); in v1-2 also the
server in the ``event_id``; in v8+ also the server of ``join_authorised_via_users_server`` on a
restricted join.

Signing and the reference hash share one encoding: the signed bytes (the redacted event without
``signatures`` and ``unsigned``) are exactly what the reference hash covers.
"""

from __future__ import annotations

import hashlib
import secrets
import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from federation.core.canonicaljson import encode_canonical_json
from federation.core.errors import (
    CanonicalJSONError,
    ContentHashError,
    EventFormatError,
    InvalidIdentifier,
    SignatureError,
)
from federation.core.events import Event
from federation.core.hashing import compute_content_hash, event_id_from_reference_hash
from federation.core.ids import is_valid_event_id, parse_room_id, parse_user_id
from federation.core.redaction import redact
from federation.core.room_versions import EventIdFormat, RedactionRules, RoomIdFormat, RoomVersion
from federation.core.signing import (
    KnownKey,
    SigningKey,
    VerifyKey,
    decode_base64,
    encode_base64,
    verify_signatures,
)

MAX_PDU_BYTES = 65536
MAX_FIELD_BYTES = 255
MAX_PREV_EVENTS = 20
MAX_AUTH_EVENTS = 10

#: ``lookup_key(server_name, key_id, origin_server_ts)`` → a key valid for that use, or None.
LookupKey = Callable[[str, str, int], VerifyKey | None]
#: v1-2 ``prev_events``/``auth_events`` hashes: event ID → ``{"sha256": ...}``.
EventHashes = Callable[[str], Mapping[str, str]] | Mapping[str, Mapping[str, str]]


def _random_event_id(origin: str) -> str:
    return "$" + "".join(secrets.choice(string.ascii_letters) for _ in range(18)) + ":" + origin


def _event_refs(
    room_version: RoomVersion, event_ids: Sequence[str], event_hashes: EventHashes | None
) -> list[Any]:
    if room_version.event_id_format is not EventIdFormat.V1_ORIGIN:
        return list(event_ids)
    if event_hashes is None:
        return [[eid, {}] for eid in event_ids]  # as Synapse: the hashes may be left empty
    get = event_hashes if callable(event_hashes) else event_hashes.__getitem__
    return [[eid, dict(get(eid))] for eid in event_ids]


def build_event(
    room_version: RoomVersion,
    *,
    room_id: str | None,
    sender: str,
    type: str,
    content: Mapping[str, Any],
    prev_event_ids: Sequence[str],
    auth_event_ids: Sequence[str],
    depth: int,
    origin_server_ts: int,
    origin: str,
    signing_key: SigningKey,
    state_key: str | None = None,
    redacts: str | None = None,
    event_hashes: EventHashes | None = None,
    event_id: str | None = None,
) -> Event:
    """Build, hash and sign a new event.

    Args:
        room_version: the room's version.
        room_id: the room; None only for a v12 ``m.room.create`` event.
        sender: the sending user (one of ``origin``'s users).
        type: the event type.
        content: the event content.
        prev_event_ids: the forward extremities the event follows.
        auth_event_ids: the auth events (never the create event in v12).
        depth: the event's depth.
        origin_server_ts: the timestamp in milliseconds.
        origin: our server name: signs the event and, in v1-2, names it.
        signing_key: our signing key.
        state_key: for a state event, its state key.
        redacts: for ``m.room.redaction``: top level before v11, in ``content`` from v11.
        event_hashes: v1-2 only: reference hashes of prev/auth events; None leaves them empty.
        event_id: v1-2 only: the event ID to use instead of a random ``$…:origin``.

    Returns:
        The signed :class:`Event`.

    Raises:
        EventFormatError: the arguments cannot form a valid event.
        CanonicalJSONError: ``content`` is not canonical-JSON encodable.
    """
    pdu: dict[str, Any] = {
        "auth_events": _event_refs(room_version, auth_event_ids, event_hashes),
        "content": dict(content),
        "depth": depth,
        "origin_server_ts": origin_server_ts,
        "prev_events": _event_refs(room_version, prev_event_ids, event_hashes),
        "sender": sender,
        "type": type,
    }
    if room_id is not None:
        pdu["room_id"] = room_id
    elif not (
        room_version.room_id_format is RoomIdFormat.CREATE_EVENT_HASH and type == "m.room.create"
    ):
        raise EventFormatError("room_id is required (except for a v12 m.room.create event)")
    if state_key is not None:
        pdu["state_key"] = state_key
    if redacts is not None:
        if room_version.redaction_rules is RedactionRules.V11:
            pdu["content"]["redacts"] = redacts
        else:
            pdu["redacts"] = redacts
    if room_version.event_id_format is EventIdFormat.V1_ORIGIN:
        pdu["event_id"] = event_id or _random_event_id(origin)
    pdu, message = _hash_and_sign(room_version, pdu, origin, signing_key)
    if room_version.event_id_format is EventIdFormat.V1_ORIGIN:
        return Event(room_version, pdu, pdu["event_id"])
    digest = hashlib.sha256(message).digest()
    return Event(room_version, pdu, event_id_from_reference_hash(room_version, digest))


def _hash_and_sign(
    room_version: RoomVersion, pdu: Mapping[str, Any], origin: str, signing_key: SigningKey
) -> tuple[dict[str, Any], bytes]:
    """Add ``hashes.sha256`` and our signature; also return the signed bytes.

    The signed bytes are the redacted event without ``signatures``/``unsigned``: exactly what
    the reference hash covers, so callers get the v3+ event ID for one SHA-256.
    """
    strict = room_version.strict_canonical_json
    out = dict(pdu)
    out["hashes"] = {"sha256": encode_base64(compute_content_hash(out, strict=strict))}
    redacted = redact(room_version, out)
    redacted.pop("signatures", None)
    message = encode_canonical_json(redacted, strict=strict)
    signatures = {s: dict(v) for s, v in (pdu.get("signatures") or {}).items()}
    signatures.setdefault(origin, {})[signing_key.key_id] = encode_base64(signing_key.sign(message))
    out["signatures"] = signatures
    return out, message


def hash_and_sign_event(
    room_version: RoomVersion, pdu: Mapping[str, Any], origin: str, signing_key: SigningKey
) -> dict[str, Any]:
    """Return a copy of ``pdu`` with its content hash and ``origin``'s signature added.

    This is the spec's "Adding hashes and signatures to outgoing events": existing signatures
    and ``unsigned`` are kept. Also used to co-sign events (e.g. restricted joins, where the
    authorising server signs the joining server's event).

    Raises:
        CanonicalJSONError: the event cannot be encoded.
    """
    return _hash_and_sign(room_version, pdu, origin, signing_key)[0]


def _require(pdu: Mapping[str, Any], key: str, kind: type | tuple[type, ...]) -> Any:
    value = pdu.get(key)
    if value is None or not isinstance(value, kind) or isinstance(value, bool):
        raise EventFormatError(f"{key} is missing or not a {getattr(kind, '__name__', kind)}")
    return value


def _check_bytes(key: str, value: str) -> None:
    if len(value.encode("utf-8", "surrogatepass")) > MAX_FIELD_BYTES:
        raise EventFormatError(f"{key} is longer than {MAX_FIELD_BYTES} bytes")


def _check_refs(room_version: RoomVersion, key: str, refs: Any, limit: int) -> list[str]:
    if not isinstance(refs, list):
        raise EventFormatError(f"{key} is not a list")
    if len(refs) > limit:
        raise EventFormatError(f"{key} has more than {limit} entries")
    ids = []
    for ref in refs:
        if room_version.event_id_format is EventIdFormat.V1_ORIGIN:
            if not (isinstance(ref, list) and len(ref) == 2 and isinstance(ref[1], Mapping)):
                raise EventFormatError(f"{key} entries must be [event_id, hashes] pairs")
            ref = ref[0]
        if not isinstance(ref, str) or not is_valid_event_id(ref, room_version):
            raise EventFormatError(f"{key} holds an invalid event ID: {ref!r}")
        ids.append(ref)
    return ids


def check_event_format(room_version: RoomVersion, pdu: Any) -> None:
    """Check a received PDU has the format its room version requires (check 1 of receipt).

    Raises:
        EventFormatError: the event is malformed: oversize, a field missing, mistyped or too
            long, a bad identifier, or (v6+) not strict canonical JSON.
    """
    if not isinstance(pdu, Mapping):
        raise EventFormatError("an event must be a JSON object")
    try:
        size = len(encode_canonical_json(pdu, strict=room_version.strict_canonical_json))
    except CanonicalJSONError as e:
        raise EventFormatError(f"not canonical JSON: {e}") from None
    if size > MAX_PDU_BYTES:
        raise EventFormatError(f"event is {size} bytes, more than {MAX_PDU_BYTES}")
    event_type = _require(pdu, "type", str)
    _check_bytes("type", event_type)
    sender = _require(pdu, "sender", str)
    try:
        parse_user_id(sender)
    except InvalidIdentifier as e:
        raise EventFormatError(f"sender: {e}") from None
    _require(pdu, "content", Mapping)
    _require(pdu, "depth", int)
    if pdu["depth"] < 0:
        raise EventFormatError("depth is negative")
    _require(pdu, "origin_server_ts", int)
    hashes = _require(pdu, "hashes", Mapping)
    if not isinstance(hashes.get("sha256"), str):
        raise EventFormatError("hashes.sha256 is missing")
    _require(pdu, "signatures", Mapping)
    if "state_key" in pdu:
        _check_bytes("state_key", _require(pdu, "state_key", str))
    if "unsigned" in pdu and not isinstance(pdu["unsigned"], Mapping):
        raise EventFormatError("unsigned is not an object")
    if "redacts" in pdu and room_version.redaction_rules is not RedactionRules.V11:
        _require(pdu, "redacts", str)
    if room_version.event_id_format is EventIdFormat.V1_ORIGIN:
        if not is_valid_event_id(_require(pdu, "event_id", str), room_version):
            raise EventFormatError(f"invalid event_id {pdu['event_id']!r}")
    _check_refs(room_version, "prev_events", pdu.get("prev_events"), MAX_PREV_EVENTS)
    auth_ids = _check_refs(room_version, "auth_events", pdu.get("auth_events"), MAX_AUTH_EVENTS)
    is_v12_create = (
        room_version.room_id_format is RoomIdFormat.CREATE_EVENT_HASH
        and event_type == "m.room.create"
    )
    if is_v12_create:
        if "room_id" in pdu:
            raise EventFormatError("a v12 m.room.create event has no room_id")
        return
    room_id = _require(pdu, "room_id", str)
    try:
        parse_room_id(room_id, room_version)
    except InvalidIdentifier as e:
        raise EventFormatError(f"room_id: {e}") from None
    if not room_version.create_event_in_auth_events and "$" + room_id[1:] in auth_ids:
        raise EventFormatError("the create event must not be in auth_events")


def check_content_hash(pdu: Mapping[str, Any], *, strict: bool = True) -> None:
    """Compare ``hashes.sha256`` with the content hash (check 3 of receipt).

    Raises:
        ContentHashError: missing, undecodable or different. The spec's remedy is to keep
            the redacted event instead.
    """
    hashes = pdu.get("hashes")
    expected = hashes.get("sha256") if isinstance(hashes, Mapping) else None
    if not isinstance(expected, str):
        raise ContentHashError("no hashes.sha256")
    try:
        expected_bytes = decode_base64(expected)
        actual = compute_content_hash(pdu, strict=strict)
    except (ValueError, CanonicalJSONError) as e:
        raise ContentHashError(f"cannot check the content hash: {e}") from None
    if expected_bytes != actual:
        raise ContentHashError("content hash does not match")


def _server_of(user_id: Any) -> str | None:
    if not isinstance(user_id, str):
        return None
    try:
        return parse_user_id(user_id).server_name
    except InvalidIdentifier:
        return None


def required_signature_servers(room_version: RoomVersion, pdu: Mapping[str, Any]) -> set[str]:
    """The servers whose signatures a received event must carry.

    Raises:
        SignatureError: an identifier naming a required server is malformed.
    """
    servers: set[str] = set()
    content = pdu.get("content")
    content = content if isinstance(content, Mapping) else {}
    is_member = pdu.get("type") == "m.room.member"
    third_party_invite = (
        is_member and content.get("membership") == "invite" and "third_party_invite" in content
    )
    if not third_party_invite:
        server = _server_of(pdu.get("sender"))
        if server is None:
            raise SignatureError("invalid sender")
        servers.add(server)
    if room_version.event_id_format is EventIdFormat.V1_ORIGIN:
        event_id = pdu.get("event_id")
        _, sep, server = event_id.partition(":") if isinstance(event_id, str) else ("", "", "")
        if not sep:
            raise SignatureError("invalid event_id")
        servers.add(server)
    if (
        room_version.restricted_join_rule
        and is_member
        and content.get("membership") == "join"
        and "join_authorised_via_users_server" in content
    ):
        server = _server_of(content["join_authorised_via_users_server"])
        if server is None:
            raise SignatureError("invalid join_authorised_via_users_server")
        servers.add(server)
    return servers


def verify_event_signatures(
    room_version: RoomVersion, pdu: Mapping[str, Any], lookup_key: LookupKey
) -> bytes:
    """Check the signatures of a received event (check 2 of receipt).

    The redacted event is checked, so a redacted copy verifies too. Signatures by keys the
    lookup does not return (unknown, expired) are skipped; every required server needs at
    least one signature by a known key, and every checked signature must verify.

    Args:
        room_version: the room's version.
        pdu: the event JSON, already through :func:`check_event_format`.
        lookup_key: ``(server_name, key_id, origin_server_ts)`` → verify key or None.

    Returns:
        The event's reference hash: the signed bytes are exactly what it covers, so the
        caller gets the v3+ event ID (``hashing.event_id_from_reference_hash``) for free.

    Raises:
        SignatureError: a required signature is missing or does not verify.
    """
    redacted = redact(room_version, pdu)
    redacted.pop("signatures", None)
    try:
        message = encode_canonical_json(redacted, strict=room_version.strict_canonical_json)
    except CanonicalJSONError as e:
        raise SignatureError(f"cannot encode the event: {e}") from None
    ts = pdu.get("origin_server_ts")
    ts = ts if isinstance(ts, int) else 0
    for server in sorted(required_signature_servers(room_version, pdu)):

        def lookup(key_id: str, server: str = server) -> VerifyKey | None:
            return lookup_key(server, key_id, ts)

        verify_signatures(message, pdu, server, lookup)
    return hashlib.sha256(message).digest()


def check_received_event(
    room_version: RoomVersion, pdu: Any, lookup_key: LookupKey
) -> tuple[Event, bool]:
    """Checks 1-3 on receipt of a PDU: format, signatures, content hash.

    Args:
        room_version: the room's version.
        pdu: the event JSON as received.
        lookup_key: as for :func:`verify_event_signatures`.

    Returns:
        ``(event, hash_ok)``. When the content hash does not match, ``event`` is the redacted
        copy, as the spec asks ("the receiving server should use the redacted copy it
        calculated rather than the full copy it received"), and ``hash_ok`` is False.

    Raises:
        EventFormatError: the event is malformed (drop it).
        SignatureError: a required signature is missing or bad (drop it).
    """
    check_event_format(room_version, pdu)
    reference_hash = verify_event_signatures(room_version, pdu, lookup_key)
    if room_version.event_id_format is EventIdFormat.V1_ORIGIN:
        event_id = pdu["event_id"]
    else:
        event_id = event_id_from_reference_hash(room_version, reference_hash)
    try:
        check_content_hash(pdu, strict=room_version.strict_canonical_json)
    except ContentHashError:
        return Event(room_version, redact(room_version, pdu), event_id), False
    return Event(room_version, pdu, event_id), True


def key_lookup(room_version: RoomVersion, keys: Mapping[str, Mapping[str, KnownKey]]) -> LookupKey:
    """A :data:`LookupKey` over known keys (server → key ID → key), applying key validity."""

    def lookup(server_name: str, key_id: str, ts: int) -> VerifyKey | None:
        known = keys.get(server_name, {}).get(key_id)
        if known is None or not known.valid_at(
            ts, enforce_key_validity=room_version.enforce_key_validity
        ):
            return None
        return known.verify_key

    return lookup
