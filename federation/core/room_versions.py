"""Room versions as data.

Spec: https://spec.matrix.org/v1.19/rooms/ and ``content/rooms/v1.md`` … ``v12.md``.

Every behaviour that differs between room versions is one field of :class:`RoomVersion`.
Code asks ``room_version.knock_join_rule``, never ``if version in ("7", "8")``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from federation.core.errors import UnsupportedRoomVersion


class EventIdFormat(enum.Enum):
    """How an event ID is formed."""

    #: v1-2: ``$opaque:server``, chosen by the origin server, carried in the event.
    V1_ORIGIN = "v1"
    #: v3: ``$`` + standard unpadded base64 of the reference hash.
    V2_BASE64 = "v2"
    #: v4+: ``$`` + URL-safe unpadded base64 of the reference hash.
    V3_URLSAFE = "v3"


class RoomIdFormat(enum.Enum):
    """How a room ID is formed."""

    #: v1-11: ``!opaque:server``.
    LEGACY = "legacy"
    #: v12: ``!`` + URL-safe unpadded base64 of the create event's reference hash.
    CREATE_EVENT_HASH = "create_hash"


class RedactionRules(enum.Enum):
    """Which redaction algorithm applies (``fragments/v*-redactions.md``)."""

    V1 = "v1"  # v1-5
    V6 = "v6"  # v6-7: m.room.aliases no longer keeps ``aliases``
    V8 = "v8"  # v8: join_rules keeps ``allow``
    V9 = "v9"  # v9-10: member keeps ``join_authorised_via_users_server``
    V11 = "v11"  # v11-12


class StateResAlgorithm(enum.Enum):
    """Which state resolution algorithm applies."""

    V1 = "v1"  # room version 1
    V2 = "v2"  # room versions 2-11
    V2_1 = "v2.1"  # room version 12


@dataclass(frozen=True, slots=True)
class RoomVersion:
    """Feature flags of one room version.

    Attributes:
        identifier: the version string, e.g. ``"10"``.
        event_id_format: how event IDs are formed.
        room_id_format: how room IDs are formed.
        redaction_rules: which redaction algorithm applies.
        state_res: which state resolution algorithm applies.
        enforce_key_validity: signing keys must be valid at the event's ``origin_server_ts`` (v5+).
        special_case_aliases_auth: ``m.room.aliases`` has its own auth rule (v1-5).
        strict_canonical_json: events must be strict canonical JSON: no floats, integers
            within ±(2**53 - 1) (v6+).
        limit_notifications_power_levels: the ``notifications`` key of power levels is checked
            when changed (v6+).
        knock_join_rule: the ``knock`` join rule and membership exist (v7+).
        restricted_join_rule: the ``restricted`` join rule exists (v8+).
        knock_restricted_join_rule: the ``knock_restricted`` join rule exists (v10+).
        enforce_int_power_levels: power level values must be integers, not strings (v10+).
        implicit_room_creator: the creator is the create event's ``sender``; ``content.creator``
            is not required (v11+).
        privileged_creators: creators (sender + ``additional_creators``) have infinite power and
            may not appear in ``m.room.power_levels`` ``users`` (v12).
        create_event_in_auth_events: ``auth_events`` reference the create event (False in v12,
            where the room ID is the create event's hash).
    """

    identifier: str
    event_id_format: EventIdFormat
    room_id_format: RoomIdFormat
    redaction_rules: RedactionRules
    state_res: StateResAlgorithm
    enforce_key_validity: bool
    special_case_aliases_auth: bool
    strict_canonical_json: bool
    limit_notifications_power_levels: bool
    knock_join_rule: bool
    restricted_join_rule: bool
    knock_restricted_join_rule: bool
    enforce_int_power_levels: bool
    implicit_room_creator: bool
    privileged_creators: bool
    create_event_in_auth_events: bool

    @property
    def event_ids_in_event(self) -> bool:
        """True where the event carries its own ``event_id`` (v1-2)."""
        return self.event_id_format is EventIdFormat.V1_ORIGIN


def _version(identifier: str, n: int) -> RoomVersion:
    return RoomVersion(
        identifier=identifier,
        event_id_format=(
            EventIdFormat.V1_ORIGIN
            if n <= 2
            else EventIdFormat.V2_BASE64
            if n == 3
            else EventIdFormat.V3_URLSAFE
        ),
        room_id_format=RoomIdFormat.CREATE_EVENT_HASH if n >= 12 else RoomIdFormat.LEGACY,
        redaction_rules=(
            RedactionRules.V1
            if n <= 5
            else RedactionRules.V6
            if n <= 7
            else RedactionRules.V8
            if n == 8
            else RedactionRules.V9
            if n <= 10
            else RedactionRules.V11
        ),
        state_res=(
            StateResAlgorithm.V1
            if n == 1
            else StateResAlgorithm.V2_1
            if n >= 12
            else StateResAlgorithm.V2
        ),
        enforce_key_validity=n >= 5,
        special_case_aliases_auth=n <= 5,
        strict_canonical_json=n >= 6,
        limit_notifications_power_levels=n >= 6,
        knock_join_rule=n >= 7,
        restricted_join_rule=n >= 8,
        knock_restricted_join_rule=n >= 10,
        enforce_int_power_levels=n >= 10,
        implicit_room_creator=n >= 11,
        privileged_creators=n >= 12,
        create_event_in_auth_events=n < 12,
    )


#: Every room version this server implements, by identifier.
KNOWN_ROOM_VERSIONS: dict[str, RoomVersion] = {str(n): _version(str(n), n) for n in range(1, 13)}

#: The version new rooms get unless the operator configures another.
DEFAULT_ROOM_VERSION = "12"


def get_room_version(identifier: str) -> RoomVersion:
    """Return the :class:`RoomVersion` for ``identifier``.

    Raises:
        UnsupportedRoomVersion: the version is unknown.
    """
    try:
        return KNOWN_ROOM_VERSIONS[identifier]
    except KeyError:
        raise UnsupportedRoomVersion(identifier) from None
