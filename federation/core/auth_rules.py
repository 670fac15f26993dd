"""Authorisation rules for room versions 1-12.

Spec: rooms/fragments/v1-auth-rules.md (v1-2), v3-auth-rules.md (v3-5), rooms/v6.md, v7.md,
fragments/v8-auth-rules.md (v8-9), rooms/v10.md, v11.md, v12.md › Authorisation rules;
server-server-api.md › Checks performed on receipt of a PDU, Auth events selection.

    "1. If type is m.room.create: ...
     2. (v12) If the event's room_id is not an event ID for an accepted (not rejected)
        m.room.create event, with the sigil ! instead of $, reject.
     3. Considering the event's auth_events: duplicates, unexpected entries, rejected
        entries, (v1-11) no m.room.create, wrong room_id: reject.
     4. If the content of the m.room.create event in the room state has the property
        m.federate set to false, and the sender domain of the event does not match the
        sender domain of the create event, reject.
     (v1-5) If type is m.room.aliases: ...
     5. If type is m.room.member: ...
     6. If the sender's current membership state is not join, reject.
     7. If type is m.room.third_party_invite: ...
     8. If the event type's required power level is greater than the sender's power level,
        reject.
     9. If the event has a state_key that starts with an @ and does not match the sender,
        reject.
     10. If type is m.room.power_levels: ...
     (v1-2) If type is m.room.redaction: ...
     11. Otherwise, allow."

(Rule numbers here follow room version 12; older versions number them differently.)

Design. The rules split in two, as Synapse and Ruma split them:

* :func:`check_state_independent_auth_rules` needs only the event and, optionally, its auth
  events by ID: the create-event rules and the checks on ``auth_events`` (rules 1-3). It runs
  once per received event.
* :func:`check_state_dependent_auth_rules` runs everything else against a slice of room
  state keyed by ``(type, state_key)``: once against the auth events, once against the state
  before the event, once against the current state (soft fail), and inside state resolution.

Every failure raises :class:`~federation.core.errors.AuthError` whose ``rule`` names the rule
(see ``RULES`` at the end of the module for the list). Room versions differ only through
:class:`~federation.core.room_versions.RoomVersion` flags.

What is *not* done here:

* Event format, size, hashes and the signature of the sender's server (earlier steps on
  receipt of a PDU).
* Rule 5.2 (v8+, ``join_authorised_via_users_server``) checks only that the authorising
  user's server has a signature on the event; that the signature verifies is the signature
  step's job, which must add that server to the servers it checks.
* Rejection: callers give only accepted events. An auth event ID missing from the mapping
  given to :func:`check_state_independent_auth_rules` (unknown or rejected) fails rule 3.3.
* Third-party invite signatures (rule 5.4.1.7) are verified by an injectable
  :class:`SignedBlockVerifier`; the default verifies ed25519 with PyNaCl.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from typing import Any, Protocol

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from federation.core.canonicaljson import encode_canonical_json
from federation.core.errors import AuthError, CanonicalJSONError
from federation.core.events import Event, StateKey
from federation.core.power_levels import (
    CREATE_KEY,
    CREATOR_POWER_LEVEL,
    POWER_LEVELS_KEY,
    check_additional_creators,
    check_power_levels_change,
    check_power_levels_content,
    get_creators,
    get_named_level,
    get_notification_level,
    get_power_level,
    get_required_power_level,
    parse_int_power_level,
)
from federation.core.room_versions import KNOWN_ROOM_VERSIONS, RoomIdFormat, RoomVersion

__all__ = [
    "CREATOR_POWER_LEVEL",
    "RULES",
    "SignedBlockVerifier",
    "auth_types_for_event",
    "check_auth_rules",
    "check_state_dependent_auth_rules",
    "check_state_independent_auth_rules",
    "get_creators",
    "get_named_level",
    "get_notification_level",
    "get_power_level",
    "get_required_power_level",
    "parse_int_power_level",
    "verify_third_party_signed",
]

CREATE = "m.room.create"
MEMBER = "m.room.member"
JOIN_RULES = "m.room.join_rules"
POWER_LEVELS = "m.room.power_levels"
THIRD_PARTY_INVITE = "m.room.third_party_invite"
ALIASES = "m.room.aliases"
REDACTION = "m.room.redaction"

AUTHORISING_USER = "join_authorised_via_users_server"


def _domain(identifier: str) -> str:
    """The server part of ``@user:server``, ``!room:server`` or ``$event:server``."""
    return identifier.partition(":")[2]


# --------------------------------------------------------------------------- selection


def auth_types_for_event(
    room_version: RoomVersion,
    event_type: str,
    state_key: str | None,
    sender: str,
    content: Mapping[str, Any],
) -> list[StateKey]:
    """The (type, state_key) pairs whose current state events go into ``auth_events``.

    Spec: server-server-api.md › Auth events selection. The create event (not in v12, where
    the room ID stands for it), the power levels, the sender's membership, and for
    ``m.room.member``: the target's membership; the join rules for join, invite and knock;
    the ``m.room.third_party_invite`` named by ``third_party_invite.signed.token``; and for
    a join with ``join_authorised_via_users_server`` (v8+) that user's membership.

    Returns:
        The keys in a stable order, without duplicates. Empty for ``m.room.create``.
    """
    if event_type == CREATE:
        return []
    keys: list[StateKey] = []
    if room_version.create_event_in_auth_events:
        keys.append(CREATE_KEY)
    keys += [POWER_LEVELS_KEY, (MEMBER, sender)]
    if event_type == MEMBER:
        membership = content.get("membership")
        if state_key is not None:
            keys.append((MEMBER, state_key))
        if membership in ("join", "invite", "knock"):
            keys.append((JOIN_RULES, ""))
        if membership == "invite":
            token = _third_party_token(content)
            if token is not None:
                keys.append((THIRD_PARTY_INVITE, token))
        if membership == "join" and room_version.restricted_join_rule:
            authoriser = content.get(AUTHORISING_USER)
            if isinstance(authoriser, str):
                keys.append((MEMBER, authoriser))
    return list(dict.fromkeys(keys))


def _third_party_token(content: Mapping[str, Any]) -> str | None:
    invite = content.get("third_party_invite")
    signed = invite.get("signed") if isinstance(invite, Mapping) else None
    token = signed.get("token") if isinstance(signed, Mapping) else None
    return token if isinstance(token, str) else None


# --------------------------------------------------------------- state-independent rules


def _check_create_event(room_version: RoomVersion, event: Event) -> None:
    """Rule 1: ``m.room.create``."""
    # 1.1
    if event.prev_event_ids:
        raise AuthError("create.has_prev_events", "the create event has prev_events")
    # 1.2
    if room_version.room_id_format is RoomIdFormat.CREATE_EVENT_HASH:
        if "room_id" in event.pdu:
            raise AuthError("create.has_room_id", "the create event has a room_id")
    elif _domain(str(event.pdu.get("room_id", ""))) != _domain(event.sender):
        raise AuthError("create.room_id_domain", "the room ID's domain is not the sender's domain")
    # 1.3
    version = event.content.get("room_version", "1")
    if not isinstance(version, str) or version not in KNOWN_ROOM_VERSIONS:
        raise AuthError("create.unknown_room_version", f"unknown room version {version!r}")
    # v1-10 1.4
    if not room_version.implicit_room_creator and "creator" not in event.content:
        raise AuthError("create.no_creator", "content has no creator")
    # v12 1.4
    if room_version.privileged_creators and "additional_creators" in event.content:
        check_additional_creators(event.content["additional_creators"])


def _create_event_id_for_room(room_id: str) -> str:
    """v12: the create event's ID is the room ID with ``$`` for ``!``."""
    return "$" + room_id[1:]


def check_state_independent_auth_rules(
    room_version: RoomVersion, event: Event, auth_events: Mapping[str, Event] | None = None
) -> None:
    """The rules that need no room state: rules 1-3.

    Args:
        room_version: the room's version.
        event: the event to check.
        auth_events: accepted events by event ID, holding at least the event's
            ``auth_events`` (and, for room versions whose room ID is the create event's
            hash, the create event). None skips rules 2 and 3 (used when the auth events
            are checked elsewhere, e.g. in :func:`check_auth_rules`).

    Raises:
        AuthError: ``create.*``, ``room_id.*`` or ``auth_events.*``.
    """
    if event.type == CREATE:
        _check_create_event(room_version, event)
        return
    if auth_events is None:
        return

    # v12 rule 2: the room ID names an accepted create event.
    if not room_version.create_event_in_auth_events:
        create_id = _create_event_id_for_room(event.room_id)
        create = auth_events.get(create_id)
        if create is None:
            raise AuthError("room_id.no_create_event", f"no accepted create event {create_id}")
        if create.type != CREATE or create.state_key != "":
            raise AuthError("room_id.no_create_event", f"{create_id} is not a create event")

    # Rule 3.
    expected = set(
        auth_types_for_event(room_version, event.type, event.state_key, event.sender, event.content)
    )
    seen: set[StateKey] = set()
    for auth_event_id in event.auth_event_ids:
        auth_event = auth_events.get(auth_event_id)
        if auth_event is None:
            # 3.3: rejected (or unknown) auth events are not given to us.
            raise AuthError(
                "auth_events.rejected", f"auth event {auth_event_id} is unknown or rejected"
            )
        # 3.5 (checked first so that a foreign event is named as such).
        if auth_event.type != CREATE or room_version.create_event_in_auth_events:
            if auth_event.room_id != event.room_id:
                raise AuthError(
                    "auth_events.wrong_room", f"auth event {auth_event_id} is in another room"
                )
        key = auth_event.state_tuple
        if key is None:
            raise AuthError(
                "auth_events.unexpected", f"auth event {auth_event_id} is not a state event"
            )
        # 3.1
        if key in seen:
            raise AuthError("auth_events.duplicate", f"two auth events for {key}")
        seen.add(key)
        # 3.2
        if key not in expected:
            raise AuthError("auth_events.unexpected", f"auth event for {key} not expected")
    # v1-11 3.4
    if room_version.create_event_in_auth_events and CREATE_KEY not in seen:
        raise AuthError("auth_events.no_create", "no m.room.create among the auth events")


# ----------------------------------------------------------------- state-dependent rules


class SignedBlockVerifier(Protocol):
    """Verifies the ``signed`` block of a third-party invite against one public key.

    Args:
        signed: ``content.third_party_invite.signed`` (with its ``signatures``).
        public_key: one public key of the ``m.room.third_party_invite`` event, unpadded
            base64 (standard or URL-safe) as the event carries it.

    Returns:
        True when any ed25519 signature in ``signed`` verifies with ``public_key``.
    """

    def __call__(self, signed: Mapping[str, Any], public_key: str) -> bool: ...


def _unpadded_b64decode(value: str) -> bytes:
    padded = value + "=" * (-len(value) % 4)
    if "-" in value or "_" in value:
        return base64.urlsafe_b64decode(padded)
    return base64.b64decode(padded, validate=True)


def verify_third_party_signed(signed: Mapping[str, Any], public_key: str) -> bool:
    """The default :class:`SignedBlockVerifier`: ed25519 with PyNaCl.

    The signed bytes are the canonical JSON of ``signed`` without ``signatures`` and
    ``unsigned`` (appendices › Signing JSON).
    """
    signatures = signed.get("signatures")
    if not isinstance(signatures, Mapping):
        return False
    try:
        verify_key = VerifyKey(_unpadded_b64decode(public_key))
        message = encode_canonical_json(
            {k: v for k, v in signed.items() if k not in ("signatures", "unsigned")}
        )
    except (ValueError, binascii.Error, TypeError, CanonicalJSONError):
        return False
    for by_key in signatures.values():
        if not isinstance(by_key, Mapping):
            continue
        for key_id, signature in by_key.items():
            if not (isinstance(key_id, str) and key_id.startswith("ed25519:")):
                continue
            if not isinstance(signature, str):
                continue
            try:
                verify_key.verify(message, _unpadded_b64decode(signature))
            except (BadSignatureError, ValueError, binascii.Error):
                continue
            return True
    return False


def _membership(auth_state: Mapping[StateKey, Event], user_id: str) -> str | None:
    member = auth_state.get((MEMBER, user_id))
    return None if member is None else member.membership


def _join_rule(auth_state: Mapping[StateKey, Event]) -> Any:
    """The current join rule; ``invite`` when there is no join rules event."""
    event = auth_state.get((JOIN_RULES, ""))
    return "invite" if event is None else event.content.get("join_rule", "invite")


def _original_creator(room_version: RoomVersion, create: Event) -> Any:
    """Rule 5.3.1's creator: ``content.creator`` (v1-10) or the create ``sender`` (v11+)."""
    if room_version.implicit_room_creator:
        return create.sender
    return create.content.get("creator")


def check_state_dependent_auth_rules(
    room_version: RoomVersion,
    event: Event,
    auth_state: Mapping[StateKey, Event],
    *,
    verify_signed: SignedBlockVerifier = verify_third_party_signed,
) -> None:
    """Every rule after rule 3, against ``auth_state``.

    Args:
        room_version: the room's version.
        event: the event to check.
        auth_state: the relevant room state keyed by (type, state_key): the auth events,
            the state before the event or the current state. It must hold the create event
            under ``("m.room.create", "")``, also in v12 where it is not an auth event.
        verify_signed: checks third-party invite signatures (rule 5.4.1.7).

    Raises:
        AuthError: naming the rule that failed.
    """
    if event.type == CREATE:
        return  # Rule 1 allows or rejects create events on its own.

    create = auth_state.get(CREATE_KEY)
    if create is None:
        raise AuthError("create_event.missing", "no m.room.create in the auth state")
    if room_version.create_event_in_auth_events:
        same_room = create.room_id == event.room_id
    else:
        same_room = create.event_id == _create_event_id_for_room(event.room_id)
    if not same_room:
        raise AuthError("create_event.wrong_room", "the create event is for another room")

    # Rule 4.
    if create.content.get("m.federate", True) is False and _domain(event.sender) != _domain(
        create.sender
    ):
        raise AuthError("federate.disallowed", "the room is not federated")

    # v1-5 rule 4: m.room.aliases.
    if event.type == ALIASES and room_version.special_case_aliases_auth:
        if event.state_key is None:
            raise AuthError("aliases.no_state_key", "m.room.aliases without a state_key")
        if event.state_key != _domain(event.sender):
            raise AuthError(
                "aliases.state_key_not_sender_domain",
                "the state_key of m.room.aliases must be the sender's server name",
            )
        return

    # Rule 5.
    if event.type == MEMBER:
        _check_member(room_version, event, auth_state, create, verify_signed)
        return

    # Rule 6.
    if _membership(auth_state, event.sender) != "join":
        raise AuthError("sender_not_joined", f"{event.sender} is not in the room")

    sender_level = get_power_level(room_version, auth_state, event.sender)

    # Rule 7.
    if event.type == THIRD_PARTY_INVITE:
        if sender_level < get_named_level(room_version, auth_state, "invite"):
            raise AuthError(
                "third_party_invite.insufficient_power", "sender is below the invite level"
            )
        return

    # Rule 8.
    required = get_required_power_level(room_version, auth_state, event.type, event.state_key)
    if required > sender_level:
        raise AuthError(
            "required_power_level",
            f"{event.type} needs level {required}, sender has {sender_level}",
        )

    # Rule 9.
    state_key = event.state_key
    if state_key is not None and state_key.startswith("@") and state_key != event.sender:
        raise AuthError("state_key.not_sender", "a state_key starting with @ must be the sender")

    # Rule 10.
    if event.type == POWER_LEVELS:
        check_power_levels_content(room_version, event.content, get_creators(room_version, create))
        current = auth_state.get(POWER_LEVELS_KEY)
        if current is not None:
            check_power_levels_change(
                room_version, current.content, event.content, event.sender, sender_level
            )
        return

    # v1-2 rule 11: redactions, where event IDs carry the server that made them.
    if event.type == REDACTION and room_version.event_ids_in_event:
        if sender_level >= get_named_level(room_version, auth_state, "redact"):
            return
        redacts = event.redacts
        if redacts is not None and _domain(redacts) == _domain(event.event_id):
            return
        raise AuthError(
            "redaction.insufficient_power",
            "sender is below the redact level and the event is from another server",
        )


def _check_member(
    room_version: RoomVersion,
    event: Event,
    auth_state: Mapping[StateKey, Event],
    create: Event,
    verify_signed: SignedBlockVerifier,
) -> None:
    """Rule 5: ``m.room.member``."""
    # 5.1
    target = event.state_key
    if target is None:
        raise AuthError("member.no_state_key", "m.room.member without a state_key")
    membership = event.content.get("membership")
    if not isinstance(membership, str):
        raise AuthError("member.no_membership", "m.room.member without content.membership")

    # 5.2 (v8+): only that the authorising server signed; see the module docstring.
    if room_version.restricted_join_rule and AUTHORISING_USER in event.content:
        authoriser = event.content[AUTHORISING_USER]
        signatures = event.pdu.get("signatures")
        if not (
            isinstance(authoriser, str)
            and isinstance(signatures, Mapping)
            and _domain(authoriser) in signatures
        ):
            raise AuthError(
                "member.authoriser_not_signed",
                "the authorising user's server has not signed the event",
            )

    sender = event.sender
    if membership == "join":
        _check_join(room_version, event, auth_state, create, target)
    elif membership == "invite":
        _check_invite(room_version, event, auth_state, target, verify_signed)
    elif membership == "leave":
        _check_leave(room_version, auth_state, sender, target)
    elif membership == "ban":
        _check_ban(room_version, auth_state, sender, target)
    elif membership == "knock" and room_version.knock_join_rule:
        _check_knock(room_version, auth_state, sender, target)
    else:
        raise AuthError("member.unknown_membership", f"unknown membership {membership!r}")


def _check_join(
    room_version: RoomVersion,
    event: Event,
    auth_state: Mapping[StateKey, Event],
    create: Event,
    target: str,
) -> None:
    """Rule 5.3: ``membership`` is ``join``."""
    # 5.3.1: the creator's first join, right after the create event.
    prev = event.prev_event_ids
    if (
        len(prev) == 1
        and prev[0] == create.event_id
        and target == _original_creator(room_version, create)
    ):
        return
    sender = event.sender
    # 5.3.2
    if sender != target:
        raise AuthError("member.join.not_sender", "cannot join on behalf of another user")
    current = _membership(auth_state, sender)
    # 5.3.3
    if current == "ban":
        raise AuthError("member.join.banned", f"{sender} is banned")
    join_rule = _join_rule(auth_state)
    # 5.3.4
    if join_rule == "invite" or (room_version.knock_join_rule and join_rule == "knock"):
        if current in ("invite", "join"):
            return
        raise AuthError("member.join.not_invited", f"{sender} is not invited")
    # 5.3.5
    if (room_version.restricted_join_rule and join_rule == "restricted") or (
        room_version.knock_restricted_join_rule and join_rule == "knock_restricted"
    ):
        if current in ("invite", "join"):
            return
        authoriser = event.content.get(AUTHORISING_USER)
        if not isinstance(authoriser, str) or _membership(auth_state, authoriser) != "join":
            raise AuthError(
                "member.join.authoriser_not_joined",
                f"authorising user {authoriser!r} is not in the room",
            )
        if get_power_level(room_version, auth_state, authoriser) < get_named_level(
            room_version, auth_state, "invite"
        ):
            raise AuthError(
                "member.join.authoriser_cannot_invite",
                f"authorising user {authoriser} is below the invite level",
            )
        return
    # 5.3.6
    if join_rule == "public":
        return
    # 5.3.7
    raise AuthError("member.join.join_rule", f"join rule {join_rule!r} does not allow joining")


def _check_invite(
    room_version: RoomVersion,
    event: Event,
    auth_state: Mapping[StateKey, Event],
    target: str,
    verify_signed: SignedBlockVerifier,
) -> None:
    """Rule 5.4: ``membership`` is ``invite``."""
    sender = event.sender
    target_membership = _membership(auth_state, target)
    # 5.4.1: third-party invites.
    if "third_party_invite" in event.content:
        if target_membership == "ban":
            raise AuthError("member.invite.3pid.target_banned", f"{target} is banned")
        invite = event.content["third_party_invite"]
        signed = invite.get("signed") if isinstance(invite, Mapping) else None
        if not isinstance(signed, Mapping):
            raise AuthError("member.invite.3pid.no_signed", "third_party_invite has no signed")
        mxid, token = signed.get("mxid"), signed.get("token")
        if not (isinstance(mxid, str) and isinstance(token, str)):
            raise AuthError(
                "member.invite.3pid.signed_incomplete", "signed needs mxid and token strings"
            )
        if mxid != target:
            raise AuthError("member.invite.3pid.mxid_mismatch", "signed.mxid is not the target")
        tpi = auth_state.get((THIRD_PARTY_INVITE, token))
        if tpi is None:
            raise AuthError(
                "member.invite.3pid.no_invite_event", f"no m.room.third_party_invite {token!r}"
            )
        if tpi.sender != sender:
            raise AuthError(
                "member.invite.3pid.sender_mismatch",
                "the sender did not send the m.room.third_party_invite",
            )
        if any(verify_signed(signed, key) for key in _public_keys(tpi)):
            return
        raise AuthError(
            "member.invite.3pid.bad_signature", "no signature in signed matches a public key"
        )
    # 5.4.2
    if _membership(auth_state, sender) != "join":
        raise AuthError("member.invite.sender_not_joined", f"{sender} is not in the room")
    # 5.4.3
    if target_membership in ("join", "ban"):
        raise AuthError("member.invite.target_joined_or_banned", f"{target} is {target_membership}")
    # 5.4.4-5
    if get_power_level(room_version, auth_state, sender) < get_named_level(
        room_version, auth_state, "invite"
    ):
        raise AuthError("member.invite.insufficient_power", "sender is below the invite level")


def _public_keys(tpi: Event) -> list[str]:
    """The public keys of an ``m.room.third_party_invite``: ``public_key`` and
    ``public_keys[].public_key``."""
    keys: list[str] = []
    single = tpi.content.get("public_key")
    if isinstance(single, str):
        keys.append(single)
    more = tpi.content.get("public_keys")
    if isinstance(more, list):
        for entry in more:
            key = entry.get("public_key") if isinstance(entry, Mapping) else None
            if isinstance(key, str):
                keys.append(key)
    return keys


def _check_leave(
    room_version: RoomVersion, auth_state: Mapping[StateKey, Event], sender: str, target: str
) -> None:
    """Rule 5.5: ``membership`` is ``leave`` (leaving, rejecting, kicking, unbanning)."""
    sender_membership = _membership(auth_state, sender)
    # 5.5.1
    if sender == target:
        allowed = (
            ("invite", "join", "knock") if room_version.knock_join_rule else ("invite", "join")
        )
        if sender_membership in allowed:
            return
        raise AuthError("member.leave.not_member", f"{sender} is {sender_membership}")
    # 5.5.2
    if sender_membership != "join":
        raise AuthError("member.leave.sender_not_joined", f"{sender} is not in the room")
    sender_level = get_power_level(room_version, auth_state, sender)
    # 5.5.3
    if _membership(auth_state, target) == "ban" and sender_level < get_named_level(
        room_version, auth_state, "ban"
    ):
        raise AuthError("member.leave.unban_insufficient_power", "sender is below the ban level")
    # 5.5.4-5
    if sender_level < get_named_level(room_version, auth_state, "kick"):
        raise AuthError("member.leave.kick_insufficient_power", "sender is below the kick level")
    if get_power_level(room_version, auth_state, target) >= sender_level:
        raise AuthError(
            "member.leave.kick_target_too_powerful", f"{target} is not below the sender"
        )


def _check_ban(
    room_version: RoomVersion, auth_state: Mapping[StateKey, Event], sender: str, target: str
) -> None:
    """Rule 5.6: ``membership`` is ``ban``."""
    # 5.6.1
    if _membership(auth_state, sender) != "join":
        raise AuthError("member.ban.sender_not_joined", f"{sender} is not in the room")
    sender_level = get_power_level(room_version, auth_state, sender)
    # 5.6.2-3
    if sender_level < get_named_level(room_version, auth_state, "ban"):
        raise AuthError("member.ban.insufficient_power", "sender is below the ban level")
    if get_power_level(room_version, auth_state, target) >= sender_level:
        raise AuthError("member.ban.target_too_powerful", f"{target} is not below the sender")


def _check_knock(
    room_version: RoomVersion, auth_state: Mapping[StateKey, Event], sender: str, target: str
) -> None:
    """Rule 5.7 (v7+): ``membership`` is ``knock``."""
    join_rule = _join_rule(auth_state)
    # 5.7.1
    if not (
        join_rule == "knock"
        or (room_version.knock_restricted_join_rule and join_rule == "knock_restricted")
    ):
        raise AuthError("member.knock.join_rule", f"join rule {join_rule!r} forbids knocking")
    # 5.7.2
    if sender != target:
        raise AuthError("member.knock.not_sender", "cannot knock on behalf of another user")
    # 5.7.3-4
    current = _membership(auth_state, sender)
    if current in ("ban", "invite", "join"):
        raise AuthError("member.knock.already_member", f"{sender} is {current}")


# ------------------------------------------------------------------------------ both


def check_auth_rules(
    room_version: RoomVersion,
    event: Event,
    auth_state: Mapping[StateKey, Event],
    *,
    verify_signed: SignedBlockVerifier = verify_third_party_signed,
) -> None:
    """All rules: the state-independent ones (without the auth-events-by-ID checks) and
    the state-dependent ones against ``auth_state``.

    Raises:
        AuthError: naming the rule that failed.
    """
    check_state_independent_auth_rules(room_version, event)
    check_state_dependent_auth_rules(room_version, event, auth_state, verify_signed=verify_signed)


#: Every rule name this module (and :mod:`federation.core.power_levels`) can raise.
RULES: frozenset[str] = frozenset(
    {
        "create.has_prev_events",
        "create.has_room_id",
        "create.room_id_domain",
        "create.unknown_room_version",
        "create.no_creator",
        "create.invalid_additional_creators",
        "room_id.no_create_event",
        "auth_events.rejected",
        "auth_events.wrong_room",
        "auth_events.duplicate",
        "auth_events.unexpected",
        "auth_events.no_create",
        "create_event.missing",
        "create_event.wrong_room",
        "federate.disallowed",
        "aliases.no_state_key",
        "aliases.state_key_not_sender_domain",
        "member.no_state_key",
        "member.no_membership",
        "member.authoriser_not_signed",
        "member.join.not_sender",
        "member.join.banned",
        "member.join.not_invited",
        "member.join.authoriser_not_joined",
        "member.join.authoriser_cannot_invite",
        "member.join.join_rule",
        "member.invite.3pid.target_banned",
        "member.invite.3pid.no_signed",
        "member.invite.3pid.signed_incomplete",
        "member.invite.3pid.mxid_mismatch",
        "member.invite.3pid.no_invite_event",
        "member.invite.3pid.sender_mismatch",
        "member.invite.3pid.bad_signature",
        "member.invite.sender_not_joined",
        "member.invite.target_joined_or_banned",
        "member.invite.insufficient_power",
        "member.leave.not_member",
        "member.leave.sender_not_joined",
        "member.leave.unban_insufficient_power",
        "member.leave.kick_insufficient_power",
        "member.leave.kick_target_too_powerful",
        "member.ban.sender_not_joined",
        "member.ban.insufficient_power",
        "member.ban.target_too_powerful",
        "member.knock.join_rule",
        "member.knock.not_sender",
        "member.knock.already_member",
        "member.unknown_membership",
        "sender_not_joined",
        "third_party_invite.insufficient_power",
        "required_power_level",
        "state_key.not_sender",
        "power_levels.invalid_level",
        "power_levels.invalid_level_map",
        "power_levels.invalid_users",
        "power_levels.creator_in_users",
        "power_levels.named_level_above_sender",
        "power_levels.event_level_above_sender",
        "power_levels.notification_level_above_sender",
        "power_levels.user_at_or_above_sender",
        "power_levels.user_level_above_sender",
        "redaction.insufficient_power",
    }
)
