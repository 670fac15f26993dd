"""The redaction algorithm of every room version.

Spec: rooms/fragments/v1-redactions.md, v6-redactions.md, v9-redactions.md,
v11-redactions.md; rooms/v8.md (``m.room.join_rules`` keeps ``allow``).

    Upon receipt of a redaction event, the server must strip off any keys not in the
    following list … The content object must also be stripped of all keys, unless it is one
    of the following event types …

+-------------------------+---------------------------------------------------------------+
| rules (room versions)   | difference from the row above                                 |
+=========================+===============================================================+
| V1 (1-5)                | top level keeps ``origin``, ``membership``, ``prev_state``;    |
|                         | ``m.room.aliases`` keeps ``aliases``                          |
| V6 (6-7)                | ``m.room.aliases`` content is no longer kept                  |
| V8 (8)                  | ``m.room.join_rules`` keeps ``allow``                         |
| V9 (9-10)               | ``m.room.member`` keeps ``join_authorised_via_users_server``  |
| V11 (11-12)             | top level drops ``origin``, ``membership``, ``prev_state``;    |
|                         | create keeps all content; power levels keep ``invite``;       |
|                         | member keeps ``third_party_invite.signed``; redaction keeps   |
|                         | ``redacts``                                                   |
+-------------------------+---------------------------------------------------------------+

Only the JSON is transformed: the event ID of a redacted event does not change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.core.room_versions import RedactionRules, RoomVersion

_TOP_LEVEL_V11 = frozenset(
    {
        "event_id",
        "type",
        "room_id",
        "sender",
        "state_key",
        "content",
        "hashes",
        "signatures",
        "depth",
        "prev_events",
        "auth_events",
        "origin_server_ts",
    }
)
_TOP_LEVEL_V1 = _TOP_LEVEL_V11 | {"prev_state", "origin", "membership"}

_POWER_LEVELS_V1 = (
    "ban",
    "events",
    "events_default",
    "kick",
    "redact",
    "state_default",
    "users",
    "users_default",
)


def _content_keys(rules: RedactionRules) -> dict[str, tuple[str, ...]]:
    """Event type → content keys kept, for one set of rules (``m.room.create`` in v11 aside)."""
    keys: dict[str, tuple[str, ...]] = {
        "m.room.member": ("membership",),
        "m.room.create": ("creator",),
        "m.room.join_rules": ("join_rule",),
        "m.room.power_levels": _POWER_LEVELS_V1,
        "m.room.history_visibility": ("history_visibility",),
    }
    if rules is RedactionRules.V1:
        keys["m.room.aliases"] = ("aliases",)
    if rules in (RedactionRules.V8, RedactionRules.V9, RedactionRules.V11):
        keys["m.room.join_rules"] = ("join_rule", "allow")
    if rules in (RedactionRules.V9, RedactionRules.V11):
        keys["m.room.member"] = ("membership", "join_authorised_via_users_server")
    if rules is RedactionRules.V11:
        keys["m.room.power_levels"] = (*_POWER_LEVELS_V1, "invite")
        keys["m.room.redaction"] = ("redacts",)
    return keys


_CONTENT_KEYS = {rules: _content_keys(rules) for rules in RedactionRules}


def redact(room_version: RoomVersion, pdu: Mapping[str, Any]) -> dict[str, Any]:
    """Return the redacted copy of ``pdu`` under ``room_version``'s rules.

    Args:
        room_version: decides which redaction algorithm applies.
        pdu: the event JSON; not modified.

    Returns:
        A new dict holding only the protected keys. Nested values are shared with ``pdu``,
        not copied: treat both as read-only.
    """
    rules = room_version.redaction_rules
    top = _TOP_LEVEL_V11 if rules is RedactionRules.V11 else _TOP_LEVEL_V1
    out = {k: v for k, v in pdu.items() if k in top}
    event_type = pdu.get("type")
    content = pdu.get("content")
    if not isinstance(content, Mapping):
        out["content"] = {}  # as Synapse: a redacted event always has a content object
        return out
    if rules is RedactionRules.V11 and event_type == "m.room.create":
        out["content"] = dict(content)
        return out
    kept = _CONTENT_KEYS[rules].get(event_type) if isinstance(event_type, str) else None
    new_content = {k: content[k] for k in kept if k in content} if kept else {}
    if rules is RedactionRules.V11 and event_type == "m.room.member":
        invite = content.get("third_party_invite")
        if isinstance(invite, Mapping) and "signed" in invite:
            new_content["third_party_invite"] = {"signed": invite["signed"]}
    out["content"] = new_content
    return out
