"""Which servers must have signed an event, and checking their signatures.

Spec: server-server-api.md › Validating hashes and signatures on received events
(https://spec.matrix.org/v1.19/server-server-api/#validating-hashes-and-signatures-on-received-events):

    The event structure and signatures are then checked against the sending server's keys
    ... the event must be signed by the server named in ``sender`` ...; in room versions 1
    and 2 also by the server of the event ID; for a join with
    ``join_authorised_via_users_server`` (restricted rooms, v8+) also by that user's server.

Signatures are over the *redacted* event (appendices › Signing Events). Pure: the keys of each
server come in as a mapping (the key ring fetches them).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.core.errors import InvalidIdentifier, SignatureError
from federation.core.ids import parse_event_id, parse_user_id
from federation.core.redaction import redact
from federation.core.room_versions import EventIdFormat, RoomVersion
from federation.core.signing import KnownKey, signed_bytes, verify_json_with_known_keys

__all__ = ["required_signers", "verify_event_signatures"]


def required_signers(room_version: RoomVersion, pdu: Mapping[str, Any]) -> set[str]:
    """The server names whose signatures ``pdu`` must carry.

    Raises:
        SignatureError: ``sender`` (or an ID the rules need) is missing or malformed.
    """
    try:
        servers = {parse_user_id(str(pdu.get("sender", ""))).server_name}
        if room_version.event_id_format is EventIdFormat.V1_ORIGIN:
            event_id = pdu.get("event_id")
            if isinstance(event_id, str):
                server = parse_event_id(event_id, room_version).server_name
                if server:
                    servers.add(server)
        if (
            room_version.restricted_join_rule
            and pdu.get("type") == "m.room.member"
            and isinstance(pdu.get("content"), Mapping)
            and pdu["content"].get("membership") == "join"
        ):
            via = pdu["content"].get("join_authorised_via_users_server")
            if isinstance(via, str):
                servers.add(parse_user_id(via).server_name)
    except (InvalidIdentifier, AttributeError, TypeError) as e:
        raise SignatureError(f"cannot tell who must sign the event: {e}") from None
    return servers


def verify_event_signatures(
    room_version: RoomVersion,
    pdu: Mapping[str, Any],
    keys_by_server: Mapping[str, Mapping[str, KnownKey]],
) -> None:
    """Check the signature of every server in :func:`required_signers`.

    Keys that expired before the event's ``origin_server_ts`` are ignored; with the room
    version's ``enforce_key_validity`` a current key must be valid until that time.

    Raises:
        SignatureError: a required signature is missing or does not verify.
    """
    ts = pdu.get("origin_server_ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise SignatureError("event has no integer origin_server_ts")
    message = signed_bytes(redact(room_version, pdu))
    for server in sorted(required_signers(room_version, pdu)):
        verify_json_with_known_keys(
            pdu,
            server,
            keys_by_server.get(server, {}),
            at_ts=ts,
            enforce_key_validity=room_version.enforce_key_validity,
            message=message,
        )
