"""The pure push rule evaluator: conditions, globs, property paths, actions, and the
server-default rules end to end (client-server-api/modules/push.md › Push Rules)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from homeserver.services.push_evaluator import (
    NO_MATCH,
    PushContext,
    PushEvaluator,
    PushOutcome,
    compile_glob,
    outcome_of_actions,
    sender_power_level,
)
from homeserver.services.push_ruleset import PushRule, PushRuleset

ALICE = "@alice:example.org"
BOB = "@bob:example.org"
ROOM = "!room:example.org"
OTHER_ROOM = "!other:example.org"
HIGHLIGHT = {"set_tweak": "highlight"}


def ctx(
    *,
    members: int = 10,
    display_name: str | None = "Alice",
    power_levels: Mapping[str, Any] | None = None,
    creators: frozenset[str] = frozenset(),
    privileged_creators: bool = False,
) -> PushContext:
    return PushContext(
        user_id=ALICE,
        display_name=display_name,
        member_count=members,
        power_levels={} if power_levels is None else power_levels,
        creators=creators,
        privileged_creators=privileged_creators,
    )


def event(
    content: dict[str, Any] | None = None,
    *,
    type: str = "m.room.message",
    sender: str = BOB,
    room_id: str = ROOM,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "type": type,
        "content": {"msgtype": "m.text", "body": "hello"} if content is None else content,
        "sender": sender,
        "room_id": room_id,
        "event_id": "$event:example.org",
        **extra,
    }


def message(body: str, **content: Any) -> dict[str, Any]:
    return event({"msgtype": "m.text", "body": body, **content})


def defaults() -> PushRuleset:
    return PushRuleset.defaults(ALICE)


def with_override(
    conditions: list[dict[str, Any]],
    actions: list[Any] | None = None,
    *,
    rule_id: str = "test",
) -> PushEvaluator:
    """The defaults plus one user override rule (it precedes every default but the master)."""
    rule = PushRule.create(
        "override", rule_id, ["notify", HIGHLIGHT] if actions is None else actions
    )
    # Built directly so tests can also use conditions the API edge would reject.
    rule = PushRule(rule.rule_id, rule.actions, conditions=tuple(conditions))
    return PushEvaluator(defaults().with_rule("override", rule))


def only_rule(conditions: list[dict[str, Any]]) -> PushEvaluator:
    """A ruleset whose only enabled rule is one override with ``conditions``."""
    ruleset = defaults()
    for kind in ("override", "underride"):
        for rule in ruleset.rules(kind):
            ruleset = ruleset.with_enabled(kind, rule.rule_id, False)
    rule = PushRule("test", ("notify",), conditions=tuple(conditions))
    return PushEvaluator(ruleset.with_rule("override", rule))


def matches(
    condition: dict[str, Any], ev: Mapping[str, Any], context: PushContext | None = None
) -> bool:
    outcome = only_rule([condition]).evaluate(ev, context or ctx())
    return outcome.rule_id == "test"


def match_cond(key: str, pattern: str) -> dict[str, Any]:
    return {"kind": "event_match", "key": key, "pattern": pattern}


# --- event_match and globs ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("topic", "expected"),
    [
        ("Lunch plans", True),
        ("LUNCH", True),  # case-insensitive; * may match zero characters
        ("lunch", True),
        (" lunch", False),  # leading space: the whole value must match
        ("lunc", False),  # ? must match a character
        (None, False),  # not a string
    ],
)
def test_event_match_spec_example(topic: Any, expected: bool) -> None:
    ev = event({"topic": topic}, type="m.room.topic", state_key="")
    assert matches(match_cond("content.topic", "lunc?*"), ev) is expected


@pytest.mark.parametrize(
    ("pattern", "value", "expected"),
    [
        ("m.room.message", "m.room.message", True),
        ("m.room.message", "M.ROOM.MESSAGE", True),
        ("m.room.message", "m.room.message.extra", False),
        ("m.room.message", "xm.room.message", False),
        ("m.room.*", "m.room.message", True),
        ("m.room.*", "m.room.", True),
        ("m.room.*", "m.roo", False),
        ("*.message", "m.room.message", True),
        ("m.*.message", "m.room.message", True),
        ("m.*.message", "m..message", True),
        ("m.*.message", "m.message", False),
        ("a?c", "abc", True),
        ("a?c", "ac", False),
        ("a?c", "abbc", False),
        ("a??", "abc", True),
        ("*", "", True),
        ("*", "anything at all", True),
        ("", "", True),
        ("", "x", False),
        ("a*b*c", "aXbYc", True),
        ("a*b*c", "abc", True),
        ("a*b*c", "acb", False),
        ("a*b*c", "abcbc", True),
        ("*a*", "bab", True),
        ("a.b", "axb", False),  # regex metacharacters are literal
        ("[ab]", "a", False),
        ("[ab]", "[AB]", True),
        ("a+", "aa", False),
        ("a\\b", "a\\b", True),
        ("a*", "a\nb", True),  # * also matches newlines
        ("a?b", "a\nb", True),
        ("abc", "abc\n", False),  # no end-of-line leniency
        ("école", "ÉCOLE", True),  # case-insensitive beyond ASCII
        ("ÉCOLE", "école", True),
        ("straße", "STRASSE", False),  # character-by-character: no multi-character folding
    ],
)
def test_event_match_globs_whole_value(pattern: str, value: str, expected: bool) -> None:
    assert matches(match_cond("content.topic", pattern), event({"topic": value})) is expected


@pytest.mark.parametrize("value", [None, 1, 1.5, True, ["a"], {"a": "b"}])
def test_event_match_non_string_never_matches_even_star(value: Any) -> None:
    assert not matches(match_cond("content.topic", "*"), event({"topic": value}))


def test_event_match_absent_property_never_matches_even_star() -> None:
    assert not matches(match_cond("content.topic", "*"), event({}))
    assert not matches(match_cond("state_key", "*"), event())
    assert not matches(match_cond("content.a.b", "*"), event({"a": "not an object"}))
    assert not matches(match_cond("content.a.b", "*"), event({"a": ["b"]}))


def test_event_match_state_key_empty_string() -> None:
    assert matches(match_cond("state_key", ""), event(state_key=""))
    assert not matches(match_cond("state_key", ""), event(state_key="@x:y"))
    assert not matches(match_cond("state_key", ""), event())


def test_event_match_top_level_keys() -> None:
    assert matches(match_cond("type", "m.room.*"), event())
    assert matches(match_cond("sender", "@bob:*"), event())
    assert matches(match_cond("room_id", ROOM), event())
    assert not matches(match_cond("room_id", ROOM), event(room_id=OTHER_ROOM))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("An example event.", True),
        ("exple", True),  # at the start and end of the body
        ("An exciting triple-whammy", True),  # spans words; - separates words
        ("EXAMPLE", True),
        ("examples", False),  # ends inside a word
        ("counterexample", False),  # starts inside a word
        ("ex_ple", True),
        ("exple_", False),  # _ is a word character
        ("exple9", False),
        ("(example)", True),
        ("no match here", False),
    ],
)
def test_event_match_content_body_matches_at_word_boundaries(body: str, expected: bool) -> None:
    assert matches(match_cond("content.body", "ex*ple"), message(body)) is expected


@pytest.mark.parametrize(
    ("pattern", "body", "expected"),
    [
        ("tea", "time for tea", True),
        ("tea", "tea time", True),
        ("tea", "Tea!", True),
        ("tea", "teapot", False),
        ("tea", "steam", False),
        ("tea", "a steam tea", True),  # a later occurrence at word boundaries counts
        ("t?a", "the tea", True),
        ("*", "anything", True),
        ("*", "", True),
        ("*pot", "a teapot", True),  # starts at the start of the value
        ("tea*", "teapot", True),  # ends at the end of the value
        ("@room", "hey @room!", True),
        ("@room", "hey@room", False),  # 'y' is a word character
        ("ve", "naïve", True),  # ï is not in [A-Za-z0-9_]: it is a boundary
        ("ok", "\u212aok", True),  # the Kelvin sign is a boundary, although it folds to 'k'
        ("a.b", "a.b", True),
        ("a.b", "axb", False),
        ("two words", "say two words now", True),
        ("two words", "two  words", False),
    ],
)
def test_content_body_word_boundary_globs(pattern: str, body: str, expected: bool) -> None:
    assert matches(match_cond("content.body", pattern), message(body)) is expected


def test_word_boundary_rule_only_for_content_body() -> None:
    assert not matches(match_cond("content.topic", "tea"), event({"topic": "time for tea"}))
    # The key is parsed first: an escaped "content.body" is another (top-level) property,
    # matched as a whole value.
    ev = {**event(), "content.body": "time for tea"}
    assert not matches(match_cond("content\\.body", "tea"), ev)
    assert matches(match_cond("content\\.body", "time for tea"), ev)


def test_globs_stay_linear_on_adversarial_input() -> None:
    # Exponential (or high polynomial) backtracking would not finish.
    assert compile_glob("a*a*a*a*a*a*b").match("a" * 50_000) is None
    assert compile_glob("a*a*a*a*a*a*b", words=True).match("a " * 50_000) is None
    assert compile_glob("a*a*a*a*a*a*b", words=True).match("a " * 50_000 + "b") is not None


def test_compile_glob_is_cached() -> None:
    assert compile_glob("some*pattern") is compile_glob("some*pattern")
    assert compile_glob("some*pattern") is not compile_glob("some*pattern", words=True)


# --- dot-separated property paths ----------------------------------------------------------------


def test_escaped_dot_in_key() -> None:
    cond = {"kind": "event_property_is", "key": "content.m\\.relates_to.rel_type", "value": "x"}
    assert matches(cond, event({"m.relates_to": {"rel_type": "x"}}))
    # Unescaped, the dot separates keys: content → m → relates_to.
    unescaped = {**cond, "key": "content.m.relates_to.rel_type"}
    assert not matches(unescaped, event({"m.relates_to": {"rel_type": "x"}}))
    assert matches(unescaped, event({"m": {"relates_to": {"rel_type": "x"}}}))


def test_escaped_backslash_in_key() -> None:
    # A content property named m\foo is written content.m\\foo.
    cond = match_cond("content.m\\\\foo", "bar")
    assert matches(cond, event({"m\\foo": "bar"}))
    assert not matches(cond, event({"m\\\\foo": "bar"}))


def test_other_escapes_are_literal() -> None:
    # "\x" is a literal backslash followed by x.
    assert matches(match_cond("content.a\\x", "v"), event({"a\\x": "v"}))


def test_spec_federate_example_key() -> None:
    create = event(
        {"creator": "@example:example.org", "m.federate": True, "room_version": "1"},
        type="m.room.create",
        state_key="",
    )
    cond = {"kind": "event_property_is", "key": "content.m\\.federate", "value": True}
    assert matches(cond, create)


def test_deep_paths() -> None:
    cond = match_cond("content.a.b.c.d", "deep")
    assert matches(cond, event({"a": {"b": {"c": {"d": "DEEP"}}}}))
    assert not matches(cond, event({"a": {"b": {"c": "deep"}}}))
    assert not matches(cond, event({"a": {"b": None}}))


# --- event_property_is / event_property_contains ------------------------------------------------


@pytest.mark.parametrize(
    ("wanted", "actual", "expected"),
    [
        (True, True, True),
        (True, "true", False),  # note the string value
        (True, 1, False),  # do not cast types
        (1, True, False),
        (1, 1, True),
        (1, 1.0, False),
        (0, False, False),
        (False, False, True),
        (None, None, True),
        (None, False, False),
        ("a", "a", True),
        ("a", "A", False),  # exact, not case-insensitive
        ("a", ["a"], False),  # compound values never match
        ("a", {"a": 1}, False),
        (-(2**53) + 1, -(2**53) + 1, True),
    ],
)
def test_event_property_is(wanted: Any, actual: Any, expected: bool) -> None:
    cond = {"kind": "event_property_is", "key": "content.p", "value": wanted}
    assert matches(cond, event({"p": actual})) is expected


def test_event_property_is_absent_never_matches_even_null() -> None:
    cond = {"kind": "event_property_is", "key": "content.p", "value": None}
    assert not matches(cond, event({}))


def test_event_property_contains_spec_example() -> None:
    aliases = {
        "alias": "#somewhere:localhost",
        "alt_aliases": ["#somewhere:example.org", "#myroom:example.com"],
    }
    ev = event(aliases, type="m.room.canonical_alias", state_key="")
    cond = {
        "kind": "event_property_contains",
        "key": "content.alt_aliases",
        "value": "#myroom:example.com",
    }
    assert matches(cond, ev)
    assert not matches({**cond, "value": ":example.com"}, ev)  # partial values do not match
    assert not matches({**cond, "value": "#MYROOM:example.com"}, ev)


@pytest.mark.parametrize(
    ("wanted", "array", "expected"),
    [
        (1, [True], False),
        (True, [1], False),
        (True, [True], True),
        (1, [1.0], False),
        (1, ["1", 1], True),
        (None, [None], True),
        (None, [], False),
        (False, [0, "", None], False),
        ("x", [["x"], {"x": 1}], False),  # compound elements are ignored
        ("x", [["x"], "x"], True),
    ],
)
def test_event_property_contains_is_type_exact(
    wanted: Any, array: list[Any], expected: bool
) -> None:
    cond = {"kind": "event_property_contains", "key": "content.a", "value": wanted}
    assert matches(cond, event({"a": array})) is expected


@pytest.mark.parametrize("value", [None, "x", "xyz", {"x": 1}, 1])
def test_event_property_contains_needs_an_array(value: Any) -> None:
    cond = {"kind": "event_property_contains", "key": "content.a", "value": "x"}
    assert not matches(cond, event({"a": value}))
    assert not matches(cond, event({}))


# --- contains_display_name ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("Hello Alice!", True),
        ("alice: ping", True),
        ("ALICE", True),
        ("Alicesmith", False),
        ("MalAlice", False),
        ("Alice_", False),
        ("hello", False),
    ],
)
def test_contains_display_name(body: str, expected: bool) -> None:
    assert matches({"kind": "contains_display_name"}, message(body)) is expected


def test_contains_display_name_without_a_name() -> None:
    cond = {"kind": "contains_display_name"}
    assert not matches(cond, message("Alice"), ctx(display_name=None))
    assert not matches(cond, message(""), ctx(display_name=""))
    assert not matches(cond, message("any thing"), ctx(display_name=""))


def test_contains_display_name_is_literal() -> None:
    cond = {"kind": "contains_display_name"}
    assert matches(cond, message("hi A.B."), ctx(display_name="A.B"))
    assert not matches(cond, message("hi AxB"), ctx(display_name="A.B"))
    assert not matches(cond, message("hi Alice"), ctx(display_name="Al*"))
    assert matches(cond, message("hi Al*"), ctx(display_name="Al*"))
    assert matches(cond, message("hey Dr. Who, hi"), ctx(display_name="Dr. Who"))


def test_contains_display_name_needs_a_string_body() -> None:
    cond = {"kind": "contains_display_name"}
    assert not matches(cond, event({"body": ["Alice"]}))
    assert not matches(cond, event({}))


# --- room_member_count -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "count", "expected"),
    [
        ("2", 2, True),
        ("2", 3, False),
        ("==2", 2, True),
        ("==2", 1, False),
        ("<2", 1, True),
        ("<2", 2, False),
        (">2", 3, True),
        (">2", 2, False),
        ("<=2", 2, True),
        ("<=2", 3, False),
        (">=2", 2, True),
        (">=2", 1, False),
        ("0", 0, True),
        ("010", 10, True),
    ],
)
def test_room_member_count(spec: str, count: int, expected: bool) -> None:
    cond = {"kind": "room_member_count", "is": spec}
    assert matches(cond, event(), ctx(members=count)) is expected


@pytest.mark.parametrize(
    "spec", ["", "=2", "!=2", "<>2", "2.0", " 2", "2 ", "two", "-1", "=<2", "٢", None, 2]
)
def test_room_member_count_malformed_never_matches(spec: Any) -> None:
    cond = {"kind": "room_member_count", "is": spec}
    for count in (-1, 0, 1, 2, 3):
        assert not matches(cond, event(), ctx(members=count))


# --- sender_notification_permission -------------------------------------------------------------

ROOM_PERMISSION = {"kind": "sender_notification_permission", "key": "room"}


@pytest.mark.parametrize(
    ("power_levels", "expected"),
    [
        ({"users": {BOB: 50}}, True),
        ({"users": {BOB: 49}}, False),
        ({"users": {BOB: 100}}, True),
        ({}, False),  # users_default 0 < notifications.room 50
        ({"users_default": 50}, True),
        ({"users": {BOB: 10}, "users_default": 50}, False),  # the users entry wins
        ({"notifications": {"room": 0}}, True),
        ({"notifications": {"room": 100}, "users": {BOB: 99}}, False),
        ({"notifications": {"room": 100}, "users": {BOB: 100}}, True),
        ({"users": {BOB: "50"}}, True),  # a stringy level (room versions 1-9)
        ({"users": {BOB: 50.9}}, True),  # a floaty level (room versions 1-5)
        ({"users": {BOB: True}}, False),  # never a level: users_default applies
        ({"notifications": {"room": " 10 "}, "users_default": 10}, True),
        ({"notifications": "nonsense", "users": {BOB: 50}}, True),
        ({"users": "nonsense", "users_default": 60}, True),
    ],
)
def test_sender_notification_permission(power_levels: dict[str, Any], expected: bool) -> None:
    assert matches(ROOM_PERMISSION, event(), ctx(power_levels=power_levels)) is expected


def test_sender_notification_permission_without_power_levels() -> None:
    no_pl = PushContext(ALICE, "Alice", 5, None)
    assert not matches(ROOM_PERMISSION, event(), no_pl)
    creator = PushContext(ALICE, "Alice", 5, None, creators=frozenset({BOB}))
    assert matches(ROOM_PERMISSION, event(), creator)
    # Once there are power levels, a creator of an older room version is a normal user.
    assert not matches(ROOM_PERMISSION, event(), ctx(creators=frozenset({BOB})))


def test_sender_notification_permission_privileged_creators() -> None:
    context = ctx(
        power_levels={"users": {BOB: 0}, "notifications": {"room": 2**53 - 1}},
        creators=frozenset({BOB}),
        privileged_creators=True,
    )
    assert matches(ROOM_PERMISSION, event(), context)
    assert sender_power_level(BOB, context) == float("inf")
    assert sender_power_level("@carol:example.org", context) == 0


def test_sender_notification_permission_other_keys() -> None:
    cond = {"kind": "sender_notification_permission", "key": "custom"}
    # Only "room" has a default required level; an unset key has none.
    assert not matches(cond, event(), ctx(power_levels={"users": {BOB: 100}}))
    pl = {"users": {BOB: 20}, "notifications": {"custom": 20}}
    assert matches(cond, event(), ctx(power_levels=pl))
    assert not matches(cond, event(), ctx(power_levels={**pl, "users": {BOB: 19}}))


def test_sender_notification_permission_needs_a_key() -> None:
    cond = {"kind": "sender_notification_permission"}
    assert not matches(cond, event(), ctx(power_levels={"notifications": {"room": 0}}))


# --- conditions in general -----------------------------------------------------------------------


def test_unknown_condition_kind_never_matches() -> None:
    evaluator = with_override([{"kind": "org.example.future"}])
    assert evaluator.evaluate(message("hi"), ctx()).rule_id == ".m.rule.message"
    # ... even next to conditions that hold.
    evaluator = with_override([match_cond("type", "*"), {"kind": "org.example.future"}])
    assert evaluator.evaluate(message("hi"), ctx()).rule_id == ".m.rule.message"
    # A condition without a kind is unrecognised too.
    evaluator = with_override([{"key": "type", "pattern": "*"}])
    assert evaluator.evaluate(message("hi"), ctx()).rule_id == ".m.rule.message"


@pytest.mark.parametrize(
    "condition",
    [
        {"kind": "event_match", "key": "type"},
        {"kind": "event_match", "pattern": "*"},
        {"kind": "event_property_is", "key": "type"},
        {"kind": "event_property_contains", "key": "content.a"},
        {"kind": "event_property_is", "key": "content.a", "value": ["x"]},
        {"kind": "room_member_count"},
    ],
)
def test_malformed_conditions_never_match(condition: dict[str, Any]) -> None:
    ev = event({"a": ["x"], "body": "x"})
    assert only_rule([condition]).evaluate(ev, ctx(members=1)) == NO_MATCH


def test_all_conditions_must_hold() -> None:
    conditions = [match_cond("type", "m.room.message"), {"kind": "room_member_count", "is": "3"}]
    assert only_rule(conditions).evaluate(message("x"), ctx(members=3)).notify
    assert not only_rule(conditions).evaluate(message("x"), ctx(members=4)).notify
    assert not only_rule(conditions).evaluate(event(type="m.foo"), ctx(members=3)).notify


def test_rule_without_conditions_always_matches() -> None:
    assert only_rule([]).evaluate(event({}, type="org.example.anything"), ctx()).rule_id == "test"


# --- actions ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("actions", "notify", "highlight"),
    [
        ([], False, False),
        (["notify"], True, False),
        (["notify", {"set_tweak": "highlight"}], True, True),
        (["notify", {"set_tweak": "highlight", "value": True}], True, True),
        (["notify", {"set_tweak": "highlight", "value": False}], True, False),
        (["notify", {"set_tweak": "highlight", "value": "yes"}], True, False),
        ([{"set_tweak": "highlight"}], False, False),  # a highlight needs notify
        (["notify", {"set_tweak": "sound", "value": "default"}], True, False),
        (["notify", HIGHLIGHT, {"set_tweak": "highlight", "value": False}], True, False),
        (["dont_notify"], False, False),  # historical actions are ignored
        (["coalesce"], False, False),
        (["dont_notify", "notify"], True, False),
    ],
)
def test_outcome_of_actions(actions: list[Any], notify: bool, highlight: bool) -> None:
    outcome = outcome_of_actions(actions, "r")
    assert (outcome.notify, outcome.highlight) == (notify, highlight)
    assert outcome.actions == tuple(actions)
    assert outcome.rule_id == "r"


def test_legacy_dont_notify_rule_mutes() -> None:
    # The API strips dont_notify; a rule built with it directly still does not notify.
    rule = PushRule("mute", ("dont_notify",), conditions=())
    evaluator = PushEvaluator(defaults().with_rule("override", rule))
    outcome = evaluator.evaluate(message("hi"), ctx())
    assert outcome.rule_id == "mute"
    assert not outcome.notify


# --- the server-default rules end to end -------------------------------------------------------

DEFAULTS = PushEvaluator(defaults())
PL_BOB_50 = {"users": {BOB: 50}}


def test_plain_message_in_one_to_one_room() -> None:
    outcome = DEFAULTS.evaluate(message("hi"), ctx(members=2))
    assert outcome.rule_id == ".m.rule.room_one_to_one"
    assert (outcome.notify, outcome.highlight) == (True, False)


def test_plain_message_in_bigger_room() -> None:
    outcome = DEFAULTS.evaluate(message("hi"), ctx(members=10))
    assert outcome == PushOutcome(True, False, ("notify",), ".m.rule.message")


def test_encrypted_messages() -> None:
    encrypted = event({"algorithm": "m.megolm.v1.aes-sha2"}, type="m.room.encrypted")
    assert (
        DEFAULTS.evaluate(encrypted, ctx(members=2)).rule_id == ".m.rule.encrypted_room_one_to_one"
    )
    outcome = DEFAULTS.evaluate(encrypted, ctx(members=20))
    assert outcome.rule_id == ".m.rule.encrypted"
    assert outcome.notify and not outcome.highlight


def test_user_mention_highlights() -> None:
    ev = message("hey", **{"m.mentions": {"user_ids": ["@carol:example.org", ALICE]}})
    outcome = DEFAULTS.evaluate(ev, ctx(members=20))
    assert outcome.rule_id == ".m.rule.is_user_mention"
    assert outcome.notify and outcome.highlight


def test_mention_of_someone_else_is_a_plain_message() -> None:
    ev = message("hey", **{"m.mentions": {"user_ids": ["@carol:example.org"]}})
    outcome = DEFAULTS.evaluate(ev, ctx(members=20))
    assert outcome.rule_id == ".m.rule.message"
    assert not outcome.highlight


def test_room_mention_needs_permission() -> None:
    ev = message("@room hey", **{"m.mentions": {"room": True}})
    outcome = DEFAULTS.evaluate(ev, ctx(power_levels=PL_BOB_50))
    assert outcome.rule_id == ".m.rule.is_room_mention"
    assert outcome.notify and outcome.highlight
    low = DEFAULTS.evaluate(ev, ctx(power_levels={"users": {BOB: 10}}))
    assert low.rule_id == ".m.rule.message"
    assert low.notify and not low.highlight
    lowered_bar = ctx(power_levels={"users": {BOB: 10}, "notifications": {"room": 10}})
    assert DEFAULTS.evaluate(ev, lowered_bar).highlight


def test_room_mention_needs_the_boolean_true() -> None:
    for value in ("true", 1, False, None):
        ev = message("@room", **{"m.mentions": {"room": value}})
        assert DEFAULTS.evaluate(ev, ctx(power_levels=PL_BOB_50)).rule_id == ".m.rule.message"


def test_body_mentions_no_longer_highlight_by_default() -> None:
    # v1.17 removed .m.rule.contains_display_name, .m.rule.roomnotif and
    # .m.rule.contains_user_name; only m.mentions highlights.
    assert not any(
        r.rule_id == ".m.rule.contains_display_name" for r in defaults().rules("override")
    )
    for body in ("hey Alice", "@room", "@alice:example.org hi"):
        outcome = DEFAULTS.evaluate(message(body), ctx(power_levels=PL_BOB_50))
        assert outcome.rule_id == ".m.rule.message"
        assert not outcome.highlight


def test_user_added_display_name_rule_highlights() -> None:
    evaluator = with_override([{"kind": "contains_display_name"}], rule_id="my_name")
    outcome = evaluator.evaluate(message("hey Alice, look"), ctx())
    assert outcome.rule_id == "my_name"
    assert outcome.highlight
    assert not evaluator.evaluate(message("hey Alicia"), ctx()).highlight


def test_notices_are_suppressed() -> None:
    notice = event({"msgtype": "m.notice", "body": "bot says hi"})
    outcome = DEFAULTS.evaluate(notice, ctx(members=2))
    assert outcome.rule_id == ".m.rule.suppress_notices"
    assert not outcome.notify
    # ... even when they mention the user.
    mention = event({"msgtype": "m.notice", "body": "hi", "m.mentions": {"user_ids": [ALICE]}})
    assert not DEFAULTS.evaluate(mention, ctx()).notify


def test_invite_for_me_notifies() -> None:
    invite = event({"membership": "invite"}, type="m.room.member", state_key=ALICE)
    outcome = DEFAULTS.evaluate(invite, ctx())
    assert outcome.rule_id == ".m.rule.invite_for_me"
    assert outcome.notify and not outcome.highlight


def test_other_member_events_do_not_notify() -> None:
    for membership, target in (("invite", "@carol:example.org"), ("join", BOB), ("leave", BOB)):
        ev = event({"membership": membership}, type="m.room.member", state_key=target)
        outcome = DEFAULTS.evaluate(ev, ctx())
        assert outcome.rule_id == ".m.rule.member_event"
        assert not outcome.notify


def test_the_users_own_events_never_notify() -> None:
    own_join = event({"membership": "join"}, type="m.room.member", state_key=ALICE, sender=ALICE)
    assert DEFAULTS.evaluate(own_join, ctx()) == NO_MATCH
    own_message = event({"body": "hi", "m.mentions": {"user_ids": [ALICE]}}, sender=ALICE)
    assert DEFAULTS.evaluate(own_message, ctx(members=2)) == NO_MATCH


def test_edits_and_reactions_do_not_notify() -> None:
    edit = message("* fixed", **{"m.relates_to": {"rel_type": "m.replace", "event_id": "$e"}})
    assert DEFAULTS.evaluate(edit, ctx(members=2)).rule_id == ".m.rule.suppress_edits"
    assert not DEFAULTS.evaluate(edit, ctx(members=2)).notify
    reply = message("reply", **{"m.relates_to": {"m.in_reply_to": {"event_id": "$e"}}})
    assert DEFAULTS.evaluate(reply, ctx()).rule_id == ".m.rule.message"
    reaction = event(
        {"m.relates_to": {"rel_type": "m.annotation", "event_id": "$e", "key": "👍"}},
        type="m.reaction",
    )
    assert DEFAULTS.evaluate(reaction, ctx(members=2)).rule_id == ".m.rule.reaction"
    assert not DEFAULTS.evaluate(reaction, ctx(members=2)).notify


def test_tombstone_highlights_only_as_state() -> None:
    tomb = event({"body": "moved", "replacement_room": OTHER_ROOM}, type="m.room.tombstone")
    outcome = DEFAULTS.evaluate({**tomb, "state_key": ""}, ctx())
    assert outcome.rule_id == ".m.rule.tombstone"
    assert outcome.notify and outcome.highlight
    assert DEFAULTS.evaluate(tomb, ctx()) == NO_MATCH  # no implicit state_key condition


def test_server_acl_and_call() -> None:
    acl = event({"allow": ["*"]}, type="m.room.server_acl", state_key="")
    assert not DEFAULTS.evaluate(acl, ctx()).notify
    call = event({"call_id": "c"}, type="m.call.invite")
    outcome = DEFAULTS.evaluate(call, ctx())
    assert outcome.rule_id == ".m.rule.call"
    assert outcome.notify


def test_unmatched_events_do_not_notify() -> None:
    for ev in (
        event({"name": "x"}, type="m.room.name", state_key=""),
        event({}, type="org.example.custom"),
        {"content": {"body": "no type"}, "sender": BOB, "room_id": ROOM},
    ):
        assert DEFAULTS.evaluate(ev, ctx(members=2)) == NO_MATCH


# --- user rules --------------------------------------------------------------------------------


def test_muted_room_rule() -> None:
    ruleset = defaults().with_rule("room", PushRule.create("room", ROOM, []))
    evaluator = PushEvaluator(ruleset)
    muted = evaluator.evaluate(message("hi"), ctx(members=2))
    assert muted.rule_id == ROOM
    assert not muted.notify
    assert evaluator.evaluate(message("hi") | {"room_id": OTHER_ROOM}, ctx()).notify
    # Override rules come first: a mention in the muted room still highlights.
    mention = message("hey", **{"m.mentions": {"user_ids": [ALICE]}})
    assert evaluator.evaluate(mention, ctx()).highlight


def test_room_rule_with_notify_beats_underride() -> None:
    rule = PushRule.create("room", ROOM, ["notify", {"set_tweak": "sound", "value": "default"}])
    evaluator = PushEvaluator(defaults().with_rule("room", rule))
    assert evaluator.evaluate(message("hi"), ctx()).rule_id == ROOM
    # A room rule matches any event in the room, not just messages.
    assert evaluator.evaluate(event({}, type="org.example.custom"), ctx()).notify


def test_sender_rule() -> None:
    evaluator = PushEvaluator(defaults().with_rule("sender", PushRule.create("sender", BOB, [])))
    assert not evaluator.evaluate(message("hi"), ctx(members=2)).notify
    carol = message("hi") | {"sender": "@carol:example.org"}
    assert evaluator.evaluate(carol, ctx(members=2)).rule_id == ".m.rule.room_one_to_one"


def test_room_rule_comes_before_sender_rule() -> None:
    ruleset = defaults().with_rule("sender", PushRule.create("sender", BOB, ["notify"]))
    ruleset = ruleset.with_rule("room", PushRule.create("room", ROOM, []))
    assert PushEvaluator(ruleset).evaluate(message("hi"), ctx()).rule_id == ROOM


def test_master_rule_mutes_everything() -> None:
    evaluator = PushEvaluator(defaults().with_enabled("override", ".m.rule.master", True))
    cases = [
        message("hi"),
        message("hey", **{"m.mentions": {"user_ids": [ALICE], "room": True}}),
        event({"membership": "invite"}, type="m.room.member", state_key=ALICE),
        event({"call_id": "c"}, type="m.call.invite"),
    ]
    for ev in cases:
        outcome = evaluator.evaluate(ev, ctx(members=2, power_levels=PL_BOB_50))
        assert outcome.rule_id == ".m.rule.master"
        assert not outcome.notify and not outcome.highlight


def test_master_rule_precedes_user_overrides() -> None:
    ruleset = defaults().with_rule(
        "override", PushRule.create("override", "loud", ["notify", HIGHLIGHT], conditions=[])
    )
    assert PushEvaluator(ruleset).evaluate(message("hi"), ctx()).rule_id == "loud"
    muted = ruleset.with_enabled("override", ".m.rule.master", True)
    assert PushEvaluator(muted).evaluate(message("hi"), ctx()).rule_id == ".m.rule.master"


def test_user_override_precedes_default_overrides() -> None:
    # A user rule that notifies for notices wins over .m.rule.suppress_notices.
    rule = PushRule.create(
        "override", "notices", ["notify"], conditions=[match_cond("content.msgtype", "m.notice")]
    )
    evaluator = PushEvaluator(defaults().with_rule("override", rule))
    notice = event({"msgtype": "m.notice", "body": "bot"})
    assert evaluator.evaluate(notice, ctx()).rule_id == "notices"


def test_disabled_user_rule_is_skipped() -> None:
    rule = PushRule.create("override", "mute_all", [], conditions=[])
    ruleset = defaults().with_rule("override", rule)
    assert not PushEvaluator(ruleset).evaluate(message("hi"), ctx()).notify
    disabled = ruleset.with_enabled("override", "mute_all", False)
    assert PushEvaluator(disabled).evaluate(message("hi"), ctx()).rule_id == ".m.rule.message"
    room_disabled = defaults().with_rule("room", PushRule.create("room", ROOM, []))
    room_disabled = room_disabled.with_enabled("room", ROOM, False)
    assert PushEvaluator(room_disabled).evaluate(message("hi"), ctx()).notify


def test_disabled_default_rule_is_skipped() -> None:
    ruleset = defaults().with_enabled("override", ".m.rule.suppress_notices", False)
    notice = event({"msgtype": "m.notice", "body": "bot"})
    assert PushEvaluator(ruleset).evaluate(notice, ctx()).rule_id == ".m.rule.message"
    no_messages = defaults().with_enabled("underride", ".m.rule.message", False)
    assert PushEvaluator(no_messages).evaluate(message("hi"), ctx(members=10)) == NO_MATCH


def test_default_rule_with_changed_actions() -> None:
    ruleset = defaults().with_actions("underride", ".m.rule.message", ("notify", HIGHLIGHT))
    assert PushEvaluator(ruleset).evaluate(message("hi"), ctx()).highlight


def test_content_rule_pattern() -> None:
    rule = PushRule.create("content", "tea", ["notify", HIGHLIGHT], pattern="tea")
    evaluator = PushEvaluator(defaults().with_rule("content", rule))
    outcome = evaluator.evaluate(message("Time for TEA?"), ctx())
    assert outcome.rule_id == "tea"
    assert outcome.highlight
    assert evaluator.evaluate(message("teapot"), ctx()).rule_id == ".m.rule.message"
    assert not evaluator.evaluate(message("teapot"), ctx()).highlight
    # Content rules read content.body only, and only a string.
    assert (
        evaluator.evaluate(event({"topic": "tea"}, type="m.room.topic", state_key=""), ctx())
        == NO_MATCH
    )
    assert evaluator.evaluate(event({"body": ["tea"]}), ctx()).rule_id == ".m.rule.message"


def test_content_rule_glob_pattern_and_order() -> None:
    ruleset = defaults().with_rule(
        "content", PushRule.create("content", "quiet", [], pattern="t*e")
    )
    ruleset = ruleset.with_rule(
        "content", PushRule.create("content", "loud", ["notify"], pattern="tim?"), after="quiet"
    )
    evaluator = PushEvaluator(ruleset)
    # "time" matches both; the first in order decides.
    assert evaluator.evaluate(message("what time is it"), ctx()).rule_id == "quiet"
    assert evaluator.evaluate(message("timo"), ctx()).rule_id == "loud"


def test_content_rule_precedes_room_rule() -> None:
    ruleset = defaults().with_rule("room", PushRule.create("room", ROOM, []))
    ruleset = ruleset.with_rule(
        "content", PushRule.create("content", "urgent", ["notify"], pattern="urgent")
    )
    evaluator = PushEvaluator(ruleset)
    assert evaluator.evaluate(message("this is urgent"), ctx()).rule_id == "urgent"
    assert evaluator.evaluate(message("not so much"), ctx()).rule_id == ROOM


def test_stored_content_round_trip() -> None:
    ruleset = defaults().with_rule("room", PushRule.create("room", ROOM, []))
    ruleset = ruleset.with_enabled("override", ".m.rule.master", False)
    ruleset = ruleset.with_rule(
        "content", PushRule.create("content", "tea", ["notify", HIGHLIGHT], pattern="tea")
    )
    stored = ruleset.to_content()
    evaluator = PushEvaluator(PushRuleset.from_content(ALICE, stored))
    assert not evaluator.evaluate(message("hi"), ctx()).notify
    assert evaluator.evaluate(message("tea"), ctx()).highlight
    stored["global"]["override"][0]["enabled"] = True  # .m.rule.master
    muted = PushEvaluator(PushRuleset.from_content(ALICE, stored))
    assert muted.evaluate(message("tea"), ctx()).rule_id == ".m.rule.master"


def test_evaluator_is_reusable_across_users_contexts() -> None:
    ev = message("hey", **{"m.mentions": {"user_ids": [ALICE]}})
    first = DEFAULTS.evaluate(ev, ctx())
    DEFAULTS.evaluate(message("other"), ctx(members=2))
    assert DEFAULTS.evaluate(ev, ctx()) == first
    # The rules are the ruleset owner's: Bob's defaults do not highlight Alice's mention.
    bob = PushEvaluator(PushRuleset.defaults(BOB))
    bob_ctx = PushContext(BOB, "Bob", 10, {})
    carol = message("hey", **{"m.mentions": {"user_ids": [ALICE]}}) | {
        "sender": "@carol:example.org"
    }
    assert not bob.evaluate(carol, bob_ctx).highlight


def test_event_may_be_any_mapping() -> None:
    from types import MappingProxyType

    ev = MappingProxyType(
        {
            **message("hey"),
            "content": MappingProxyType({"body": "hey", "m.mentions": {"user_ids": [ALICE]}}),
        }
    )
    assert DEFAULTS.evaluate(ev, ctx()).highlight
