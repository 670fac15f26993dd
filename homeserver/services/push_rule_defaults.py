"""The server-default push rules, as Matrix v1.19 defines them.

Spec: client-server-api/modules/push.md › Predefined Rules. Each definition below is the JSON
of the spec text, in the spec's order, with ``[the user's Matrix ID]`` filled in by
:func:`server_default_rules`. Since v1.17 the legacy rules that looked for mentions in
``content.body`` (``.m.rule.contains_display_name``, ``.m.rule.roomnotif``,
``.m.rule.contains_user_name``) are gone from the spec, so there are no default content rules.

Where the defaults sit among the user's own rules (``.m.rule.master`` before every user
override rule, the other defaults after the user's rules of their kind) is
:mod:`homeserver.services.push_ruleset`'s business. This module is pure data.
"""

from __future__ import annotations

import copy
from typing import Any, Final

__all__ = ["DEFAULT_RULE_KINDS", "MASTER_RULE_ID", "USER_ID_PLACEHOLDER", "server_default_rules"]

#: The rule that, once enabled, turns off every notification; always the first rule.
MASTER_RULE_ID: Final = ".m.rule.master"
#: What the spec's definitions write where the owner's user ID goes.
USER_ID_PLACEHOLDER: Final = "[the user's Matrix ID]"

JsonDict = dict[str, Any]

_SOUND_DEFAULT: Final[JsonDict] = {"set_tweak": "sound", "value": "default"}
_HIGHLIGHT: Final[JsonDict] = {"set_tweak": "highlight"}


def _match(key: str, pattern: str) -> JsonDict:
    return {"kind": "event_match", "key": key, "pattern": pattern}


def _rule(
    rule_id: str, conditions: list[JsonDict], actions: list[Any], *, enabled: bool = True
) -> JsonDict:
    return {
        "rule_id": rule_id,
        "default": True,
        "enabled": enabled,
        "conditions": conditions,
        "actions": actions,
    }


_OVERRIDE: Final[tuple[JsonDict, ...]] = (
    _rule(MASTER_RULE_ID, [], [], enabled=False),
    _rule(".m.rule.suppress_notices", [_match("content.msgtype", "m.notice")], []),
    _rule(
        ".m.rule.invite_for_me",
        [
            _match("type", "m.room.member"),
            _match("content.membership", "invite"),
            _match("state_key", USER_ID_PLACEHOLDER),
        ],
        ["notify", _SOUND_DEFAULT],
    ),
    _rule(".m.rule.member_event", [_match("type", "m.room.member")], []),
    _rule(
        ".m.rule.is_user_mention",
        [
            {
                "kind": "event_property_contains",
                "key": "content.m\\.mentions.user_ids",
                "value": USER_ID_PLACEHOLDER,
            }
        ],
        ["notify", _SOUND_DEFAULT, _HIGHLIGHT],
    ),
    _rule(
        ".m.rule.is_room_mention",
        [
            {"kind": "event_property_is", "key": "content.m\\.mentions.room", "value": True},
            {"kind": "sender_notification_permission", "key": "room"},
        ],
        ["notify", _HIGHLIGHT],
    ),
    _rule(
        ".m.rule.tombstone",
        [_match("type", "m.room.tombstone"), _match("state_key", "")],
        ["notify", _HIGHLIGHT],
    ),
    _rule(".m.rule.reaction", [_match("type", "m.reaction")], []),
    _rule(
        ".m.rule.room.server_acl",
        [_match("type", "m.room.server_acl"), _match("state_key", "")],
        [],
    ),
    _rule(
        ".m.rule.suppress_edits",
        [
            {
                "kind": "event_property_is",
                "key": "content.m\\.relates_to.rel_type",
                "value": "m.replace",
            }
        ],
        [],
    ),
)

_UNDERRIDE: Final[tuple[JsonDict, ...]] = (
    _rule(
        ".m.rule.call",
        [_match("type", "m.call.invite")],
        ["notify", {"set_tweak": "sound", "value": "ring"}],
    ),
    _rule(
        ".m.rule.encrypted_room_one_to_one",
        [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.encrypted")],
        ["notify", _SOUND_DEFAULT],
    ),
    _rule(
        ".m.rule.room_one_to_one",
        [{"kind": "room_member_count", "is": "2"}, _match("type", "m.room.message")],
        ["notify", _SOUND_DEFAULT],
    ),
    _rule(".m.rule.message", [_match("type", "m.room.message")], ["notify"]),
    _rule(".m.rule.encrypted", [_match("type", "m.room.encrypted")], ["notify"]),
)

#: The server-default rules of each kind, most important first (room and sender have none).
_DEFAULTS: Final[dict[str, tuple[JsonDict, ...]]] = {
    "override": _OVERRIDE,
    "content": (),
    "room": (),
    "sender": (),
    "underride": _UNDERRIDE,
}

#: Which kind each server-default rule ID belongs to.
DEFAULT_RULE_KINDS: Final[dict[str, str]] = {
    rule["rule_id"]: kind for kind, rules in _DEFAULTS.items() for rule in rules
}


def _fill(value: Any, user_id: str) -> Any:
    if value == USER_ID_PLACEHOLDER:
        return user_id
    if isinstance(value, dict):
        return {k: _fill(v, user_id) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, user_id) for v in value]
    return copy.copy(value)


def server_default_rules(user_id: str) -> dict[str, list[JsonDict]]:
    """The server-default rules for ``user_id``: fresh JSON per kind, in the spec's order.

    Args:
        user_id: the rules' owner; fills ``[the user's Matrix ID]`` of the definitions.

    Returns:
        ``{kind: [rule, ...]}`` for all five kinds (``room`` and ``sender`` are empty).
    """
    return {kind: [_fill(r, user_id) for r in rules] for kind, rules in _DEFAULTS.items()}
