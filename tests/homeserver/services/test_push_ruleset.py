"""The pure push rules model: server defaults, effective order, edits and stored content."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from homeserver.errors import MatrixError
from homeserver.services.push_rule_defaults import (
    DEFAULT_RULE_KINDS,
    USER_ID_PLACEHOLDER,
    server_default_rules,
)
from homeserver.services.push_ruleset import (
    KINDS,
    PushRule,
    PushRuleset,
    check_kind,
    check_new_rule_id,
    default_push_rules_event,
    parse_actions,
    parse_conditions,
    push_rules_event,
)

ALICE = "@alice:test.local"
SPEC_PUSH = Path(__file__).resolve().parent / "spec" / "push.md"  # copied from the spec v1.19

OVERRIDE_IDS = [
    ".m.rule.master",
    ".m.rule.suppress_notices",
    ".m.rule.invite_for_me",
    ".m.rule.member_event",
    ".m.rule.is_user_mention",
    ".m.rule.is_room_mention",
    ".m.rule.tombstone",
    ".m.rule.reaction",
    ".m.rule.room.server_acl",
    ".m.rule.suppress_edits",
]
UNDERRIDE_IDS = [
    ".m.rule.call",
    ".m.rule.encrypted_room_one_to_one",
    ".m.rule.room_one_to_one",
    ".m.rule.message",
    ".m.rule.encrypted",
]


def ids(ruleset: PushRuleset, kind: str) -> list[str]:
    return [r.rule_id for r in ruleset.rules(kind)]


def rule(kind: str, rule_id: str, actions=("notify",), **fields) -> PushRule:
    if kind == "content":
        fields.setdefault("pattern", "cake")
    return PushRule.create(kind, rule_id, list(actions), **fields)


def error_of(fn, *args, **kwargs) -> tuple[int, str]:
    with pytest.raises(MatrixError) as caught:
        fn(*args, **kwargs)
    return caught.value.status, caught.value.errcode


# --- defaults -----------------------------------------------------------------------------------


def test_default_ruleset_order_and_user_parts() -> None:
    rs = PushRuleset.defaults(ALICE)
    assert ids(rs, "override") == OVERRIDE_IDS
    assert ids(rs, "underride") == UNDERRIDE_IDS
    assert ids(rs, "content") == ids(rs, "room") == ids(rs, "sender") == []
    body = rs.to_json()
    assert list(body) == list(KINDS)
    invite = rs.get("override", ".m.rule.invite_for_me").to_json()
    assert invite == {
        "rule_id": ".m.rule.invite_for_me",
        "default": True,
        "enabled": True,
        "conditions": [
            {"kind": "event_match", "key": "type", "pattern": "m.room.member"},
            {"kind": "event_match", "key": "content.membership", "pattern": "invite"},
            {"kind": "event_match", "key": "state_key", "pattern": ALICE},
        ],
        "actions": ["notify", {"set_tweak": "sound", "value": "default"}],
    }
    mention = rs.get("override", ".m.rule.is_user_mention").to_json()
    assert mention["conditions"] == [
        {"kind": "event_property_contains", "key": "content.m\\.mentions.user_ids", "value": ALICE}
    ]
    assert rs.get("override", ".m.rule.master").to_json() == {
        "rule_id": ".m.rule.master",
        "default": True,
        "enabled": False,
        "conditions": [],
        "actions": [],
    }
    assert rs.get("underride", ".m.rule.call").actions == (
        "notify",
        {"set_tweak": "sound", "value": "ring"},
    )
    assert USER_ID_PLACEHOLDER not in json.dumps(body)
    assert DEFAULT_RULE_KINDS[".m.rule.message"] == "underride"


def test_default_rules_are_fresh_copies() -> None:
    first = server_default_rules(ALICE)
    first["override"][1]["actions"].append("notify")
    first["override"][1]["conditions"][0]["pattern"] = "changed"
    assert server_default_rules(ALICE)["override"][1] == {
        "rule_id": ".m.rule.suppress_notices",
        "default": True,
        "enabled": True,
        "conditions": [{"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"}],
        "actions": [],
    }


def test_defaults_equal_the_spec_text() -> None:
    """Every ``Definition:`` block under Predefined Rules, in order, is one of ours."""
    text = SPEC_PUSH.read_text()
    section = text.split("#### Predefined Rules")[1].split("#### Push Rules: API")[0]
    found: dict[str, list[dict[str, Any]]] = {}
    kind = ""
    for part in re.split(r"(##### Default \w+ Rules|```json\n.*?```)", section, flags=re.S):
        heading = re.match(r"##### Default (\w+) Rules", part)
        if heading:
            kind = heading.group(1).lower()
        elif part.startswith("```json"):
            found.setdefault(kind, []).append(json.loads(part[len("```json") : -3]))
    ours = server_default_rules(USER_ID_PLACEHOLDER)
    assert set(found) == {"override", "underride"}
    for kind, rules in found.items():
        assert rules == ours[kind], kind
    assert ours["content"] == ours["room"] == ours["sender"] == []


def test_default_event_for_sync() -> None:
    event = default_push_rules_event(ALICE)
    assert event["type"] == "m.push_rules"
    assert event["content"] == {"global": PushRuleset.defaults(ALICE).to_json()}
    stored = PushRuleset.defaults(ALICE).with_enabled("override", ".m.rule.master", True)
    shown = push_rules_event(ALICE, stored.to_content())
    assert shown["content"]["global"]["override"][0]["enabled"] is True


# --- effective order and edits ------------------------------------------------------------------


def test_user_rules_sit_between_master_and_the_other_defaults() -> None:
    rs = PushRuleset.defaults(ALICE)
    rs = rs.with_rule("override", rule("override", "mine"))
    rs = rs.with_rule("underride", rule("underride", "low"))
    rs = rs.with_rule("content", rule("content", "cake"))
    rs = rs.with_rule("room", rule("room", "!r:test.local"))
    rs = rs.with_rule("sender", rule("sender", "@spam:test.local", actions=()))
    assert ids(rs, "override") == [OVERRIDE_IDS[0], "mine", *OVERRIDE_IDS[1:]]
    assert ids(rs, "underride") == ["low", *UNDERRIDE_IDS]
    assert ids(rs, "content") == ["cake"]
    assert ids(rs, "room") == ["!r:test.local"]
    body = rs.to_json()
    assert body["content"][0] == {
        "rule_id": "cake",
        "default": False,
        "enabled": True,
        "pattern": "cake",
        "actions": ["notify"],
    }
    assert body["room"][0] == {
        "rule_id": "!r:test.local",
        "default": False,
        "enabled": True,
        "actions": ["notify"],
    }
    assert body["sender"][0]["actions"] == []
    assert body["override"][1]["conditions"] == []


def test_new_rules_go_first_and_before_after_place_them() -> None:
    rs = PushRuleset.defaults(ALICE)
    for name in ("a", "b", "c"):
        rs = rs.with_rule("content", rule("content", name))
    assert ids(rs, "content") == ["c", "b", "a"]
    rs = rs.with_rule("content", rule("content", "d"), before="a")
    assert ids(rs, "content") == ["c", "b", "d", "a"]
    rs = rs.with_rule("content", rule("content", "e"), after="c")
    assert ids(rs, "content") == ["c", "e", "b", "d", "a"]
    # both given: before wins
    rs = rs.with_rule("content", rule("content", "f"), before="a", after="c")
    assert ids(rs, "content") == ["c", "e", "b", "d", "f", "a"]
    # moving an existing rule
    rs = rs.with_rule("content", rule("content", "c"), after="a")
    assert ids(rs, "content") == ["e", "b", "d", "f", "a", "c"]
    rs = rs.with_rule("content", rule("content", "c"), before="e")
    assert ids(rs, "content") == ["c", "e", "b", "d", "f", "a"]


def test_update_keeps_place_and_enabled_and_replaces_parameters() -> None:
    rs = PushRuleset.defaults(ALICE)
    rs = rs.with_rule("content", rule("content", "a"))
    rs = rs.with_rule("content", rule("content", "b"))
    rs = rs.with_enabled("content", "a", False)
    rs = rs.with_rule("content", rule("content", "a", actions=(), pattern="pie"))
    assert ids(rs, "content") == ["b", "a"]
    updated = rs.get("content", "a")
    assert (updated.enabled, updated.pattern, updated.actions) == (False, "pie", ())
    # relative to itself: stays where it is
    rs = rs.with_rule("content", rule("content", "a"), before="a")
    assert ids(rs, "content") == ["b", "a"]


def test_before_after_must_name_a_user_rule_of_the_kind() -> None:
    rs = PushRuleset.defaults(ALICE).with_rule("override", rule("override", "x"))
    for kwargs in (
        {"before": ".m.rule.master"},
        {"after": ".m.rule.suppress_notices"},
        {"before": "nope"},
        {"after": "x-other"},
    ):
        assert error_of(rs.with_rule, "override", rule("override", "y"), **kwargs) == (
            400,
            "M_UNKNOWN",
        )
    # a rule of another kind does not count; nor a new rule relative to itself
    assert error_of(rs.with_rule, "underride", rule("underride", "y"), before="x") == (
        400,
        "M_UNKNOWN",
    )
    assert error_of(rs.with_rule, "override", rule("override", "z"), before="z") == (
        400,
        "M_UNKNOWN",
    )
    with pytest.raises(MatrixError, match="before/after rule not found: nope"):
        rs.with_rule("override", rule("override", "y"), before="nope")


def test_room_rules_are_copied_to_an_upgraded_room() -> None:
    old, new = "!old:test.local", "!new:test.local"
    on_old = [{"kind": "event_match", "key": "room_id", "pattern": old}]
    rs = PushRuleset.defaults(ALICE)
    rs = rs.with_rule("room", rule("room", old, actions=["dont_notify"]))
    rs = rs.with_rule("room", rule("room", "!else:test.local"))
    rs = rs.with_rule("override", rule("override", f"x{old}", conditions=on_old))
    rs = rs.with_rule("override", rule("override", "same-id", conditions=on_old))
    rs = rs.with_rule("underride", rule("underride", f"off{old}", conditions=on_old))
    rs = rs.with_enabled("underride", f"off{old}", False)
    copied = rs.with_room_rules_copied(old, new)
    assert ids(copied, "room") == [new, "!else:test.local", old]
    assert copied.get("room", new).actions == ("dont_notify",)
    assert ids(copied, "override")[1:4] == [f"x{new}", "same-id", f"x{old}"]
    assert copied.get("override", f"x{new}").conditions == (
        {"kind": "event_match", "key": "room_id", "pattern": new},
    )
    assert f"off{new}" not in ids(copied, "underride")  # disabled: not copied
    # nothing about the room, or copied already: the same ruleset
    assert copied.with_room_rules_copied(old, new).to_content() == copied.to_content()
    plain = PushRuleset.defaults(ALICE)
    assert plain.with_room_rules_copied(old, new).to_content() == plain.to_content()
    # a copy whose ID could not be stored (over 255 bytes) is not made
    long_new = "!" + "n" * 243 + ":test.local"  # 255 bytes: a room ID can be that long
    rs = rs.with_rule("override", rule("override", "y" * 50 + old, conditions=on_old))
    copied = rs.with_room_rules_copied(old, long_new)
    assert copied.get("room", long_new).actions == ("dont_notify",)
    assert all(len(r.rule_id.encode()) <= 255 for r in copied.rules("override"))
    assert f"x{long_new}" not in ids(copied, "override")


def test_edits_return_new_rulesets() -> None:
    rs = PushRuleset.defaults(ALICE)
    changed = rs.with_rule("override", rule("override", "x"))
    assert "x" not in ids(rs, "override") and "x" in ids(changed, "override")


def test_delete_enable_and_actions() -> None:
    rs = PushRuleset.defaults(ALICE).with_rule("sender", rule("sender", "@bob:test.local"))
    rs = rs.with_enabled("underride", ".m.rule.message", False)
    rs = rs.with_actions("override", ".m.rule.tombstone", ("notify",))
    rs = rs.with_actions("sender", "@bob:test.local", ())
    assert rs.get("underride", ".m.rule.message").enabled is False
    assert rs.get("underride", ".m.rule.message").default is True
    assert rs.get("override", ".m.rule.tombstone").actions == ("notify",)
    assert rs.get("sender", "@bob:test.local").actions == ()
    rs = rs.without_rule("sender", "@bob:test.local")
    assert ids(rs, "sender") == []
    not_found = (404, "M_NOT_FOUND")
    assert error_of(rs.without_rule, "sender", "@bob:test.local") == not_found
    assert error_of(rs.without_rule, "override", ".m.rule.master") == not_found
    assert error_of(rs.with_enabled, "override", "nope", True) == not_found
    assert error_of(rs.with_actions, "content", ".m.rule.message", ()) == not_found
    assert error_of(rs.get, "override", ".m.rule.message") == not_found


# --- stored content ---------------------------------------------------------------------------


def test_content_round_trip() -> None:
    rs = PushRuleset.defaults(ALICE)
    rs = rs.with_rule(
        "override",
        rule(
            "override",
            "beer",
            actions=("notify", {"set_tweak": "sound", "value": "beeroclock.wav"}),
            conditions=[
                {"kind": "event_match", "key": "content.body", "pattern": "beer"},
                {"kind": "room_member_count", "is": "<=10"},
            ],
        ),
    )
    rs = rs.with_rule("content", rule("content", "a")).with_rule("content", rule("content", "b"))
    rs = rs.with_enabled("content", "a", False).with_enabled("override", ".m.rule.master", True)
    rs = rs.with_actions("underride", ".m.rule.message", ())
    again = PushRuleset.from_content(ALICE, json.loads(json.dumps(rs.to_content())))
    assert again.to_json() == rs.to_json()


def test_stored_content_meets_current_defaults() -> None:
    stored = PushRuleset.defaults(ALICE).with_enabled("override", ".m.rule.reaction", False)
    content = json.loads(json.dumps(stored.to_content()))
    overrides = content["global"]["override"]
    # a default this server no longer defines, a default missing from storage, changed
    # conditions on a default, and junk entries
    overrides.append({"rule_id": ".m.rule.roomnotif", "default": True, "enabled": True,
                      "conditions": [], "actions": ["notify"]})  # fmt: skip
    content["global"]["override"] = [r for r in overrides if r["rule_id"] != ".m.rule.tombstone"]
    content["global"]["override"][1]["conditions"] = []
    content["global"]["override"].insert(1, {"rule_id": "ok", "actions": ["notify"]})
    content["global"]["override"] += [
        "junk",
        {"rule_id": 5, "actions": []},
        {"rule_id": "no-actions"},
        {"rule_id": "bad-action", "actions": ["sing"]},
        {"rule_id": "ok", "actions": []},  # a duplicate: the first wins
    ]
    content["global"]["content"] = [{"rule_id": "nopattern", "actions": []}]
    content["global"]["room"] = "not a list"
    content["global"]["underride"][0]["actions"] = "not a list"
    content["global"]["underride"][1]["enabled"] = "yes"
    rs = PushRuleset.from_content(ALICE, content)
    assert ids(rs, "override") == [OVERRIDE_IDS[0], "ok", *OVERRIDE_IDS[1:]]
    assert rs.get("override", "ok").actions == ("notify",)
    assert rs.get("override", ".m.rule.reaction").enabled is False
    assert rs.get("override", ".m.rule.suppress_notices").conditions == (
        {"kind": "event_match", "key": "content.msgtype", "pattern": "m.notice"},
    )
    assert rs.get("override", ".m.rule.tombstone").enabled is True
    assert ids(rs, "content") == ids(rs, "room") == []
    default = PushRuleset.defaults(ALICE)
    assert rs.get("underride", ".m.rule.call") == default.get("underride", ".m.rule.call")
    assert rs.get("underride", ".m.rule.encrypted_room_one_to_one").enabled is True
    empty: list[dict[str, Any] | None] = [None, {}, {"global": []}, {"global": {"override": None}}]
    for content_ in empty:
        assert PushRuleset.from_content(ALICE, content_).to_json() == default.to_json()


# --- parsing at the edge ----------------------------------------------------------------------


def test_parse_actions() -> None:
    tweak = {"set_tweak": "sound", "value": "default"}
    assert parse_actions(["notify", tweak, {"set_tweak": "highlight"}]) == (
        "notify",
        tweak,
        {"set_tweak": "highlight"},
    )
    # the historical actions are kept as written (Synapse does too); evaluation ignores them
    assert parse_actions(["dont_notify"]) == ("dont_notify",)
    assert parse_actions(["coalesce", "notify"]) == ("coalesce", "notify")
    assert parse_actions([]) == ()
    for bad in ("notify", None, {"set_tweak": "x"}, [1], [{"value": 1}], [{"set_tweak": 1}]):
        assert error_of(parse_actions, bad) == (400, "M_BAD_JSON"), bad
    assert error_of(parse_actions, ["sing"]) == (400, "M_INVALID_PARAM")


def test_parse_conditions() -> None:
    good = [
        {"kind": "event_match", "key": "content.body", "pattern": "x*"},
        {"kind": "event_property_is", "key": "content.m\\.federate", "value": True},
        {"kind": "event_property_is", "key": "k", "value": None},
        {"kind": "event_property_contains", "key": "k", "value": 2**53 - 1},
        {"kind": "contains_display_name"},
        {"kind": "room_member_count", "is": "2"},
        {"kind": "room_member_count", "is": ">=10"},
        {"kind": "sender_notification_permission", "key": "room"},
        {"kind": "org.example.future", "whatever": [1, 2]},
    ]
    assert parse_conditions(good) == tuple(good)
    assert parse_conditions([]) == ()
    bad_json = [
        {"conditions": "x"},
        ["x"],
        [{"key": "type", "pattern": "x"}],
        [{"kind": 1}],
        [{"kind": "event_match", "key": "type"}],
        [{"kind": "event_match", "key": 1, "pattern": "x"}],
        [{"kind": "event_property_is", "key": "k"}],
        [{"kind": "event_property_is", "key": "k", "value": 1.5}],
        [{"kind": "event_property_contains", "key": "k", "value": [1]}],
        [{"kind": "event_property_is", "key": "k", "value": 2**53}],
        [{"kind": "room_member_count"}],
        [{"kind": "room_member_count", "is": 2}],
        [{"kind": "sender_notification_permission"}],
    ]
    for value in bad_json:
        assert error_of(parse_conditions, value) == (400, "M_BAD_JSON"), value
    for is_ in ("", "=2", "!=2", "2.5", "> 2", "two"):
        value = [{"kind": "room_member_count", "is": is_}]
        assert error_of(parse_conditions, value) == (400, "M_INVALID_PARAM"), is_


def test_create_rule_fields_by_kind() -> None:
    over = PushRule.create("override", "x", ["notify"], pattern="ignored")
    assert (over.conditions, over.pattern) == ((), None)
    content = PushRule.create("content", "x", [], pattern="cake*lie", conditions="ignored")
    assert (content.conditions, content.pattern) == (None, "cake*lie")
    room = PushRule.create("room", "!r:x", [], conditions=[{"kind": "x"}], pattern="p")
    assert (room.conditions, room.pattern) == (None, None)
    assert error_of(PushRule.create, "content", "x", []) == (400, "M_MISSING_PARAM")
    assert error_of(PushRule.create, "content", "x", [], pattern=3) == (400, "M_BAD_JSON")
    assert error_of(PushRule.create, "override", "x", None) == (400, "M_MISSING_PARAM")
    assert error_of(PushRule.create, "override", "x", [], conditions={}) == (400, "M_BAD_JSON")


def test_rule_ids_and_kinds() -> None:
    for kind in KINDS:
        assert check_kind(kind) == kind
    for kind in ("global", "Override", "", "device"):
        assert error_of(check_kind, kind) == (400, "M_INVALID_PARAM")
    assert check_new_rule_id("content", "SSByZWFsbHkgbGlrZSBjYWtl") == "SSByZWFsbHkgbGlrZSBjYWtl"
    assert check_new_rule_id("room", "!dj234r78wl45Gh4D:matrix.org")
    assert check_new_rule_id("sender", "@spambot:matrix.org")
    # IDs that are not room (user) IDs are accepted, as Synapse does (they match nothing)
    assert check_new_rule_id("room", "#spam:example.com") == "#spam:example.com"
    assert check_new_rule_id("sender", "bob") == "bob"
    for kind, rule_id in (
        ("override", ".m.rule.master"),
        ("override", ".mine"),
        ("content", "a/b"),
        ("content", "a\\b"),
        ("content", ""),
        ("content", "x" * 256),
    ):
        assert error_of(check_new_rule_id, kind, rule_id) == (400, "M_INVALID_PARAM"), rule_id
