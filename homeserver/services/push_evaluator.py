r"""Evaluate a user's push rules against one event: does it notify, does it highlight?

Spec: client-server-api/modules/push.md › Push Rules (the kinds "in the order that they are
checked", "Disabled rules never match. If no rules match an event, the homeserver MUST NOT
notify"), › Actions (``notify``; the ``highlight`` tweak: "If a ``highlight`` tweak is given
with no value, its value is defined to be ``true``"), › Historical Actions, › Conditions, and
› Receiving notifications ("Notifications are determined by the push rules which apply to an
event"); appendices.md › Glob-style matching, › Dot-separated property paths;
``definitions/push_condition.yaml``, ``push_rule.yaml``.

How each condition reads (all of a rule's conditions must hold; a rule without conditions
always matches; "Unrecognised conditions MUST NOT match any events"):

- ``event_match``: the glob ``pattern`` (``*`` zero or more characters, ``?`` exactly one)
  matches, case-insensitively, "the entire value of the event property given by ``key``"; a
  property that is absent or not a string never matches, "even if ``pattern`` is ``*``". "As
  a special case, if ``key`` is ``content.body``, then ``pattern`` must instead match any
  substring of the value of the property which starts and ends at a word boundary", a word
  boundary being "the start or end of the value, or any character not in the sets ``[A-Z]``,
  ``[a-z]``, ``[0-9]`` or ``_``". Content rules match their ``pattern`` against
  ``content.body`` the same way.
- ``event_property_is``: the property is exactly the scalar ``value`` (string, integer,
  boolean, ``null``), types included: ``true`` is neither ``"true"`` nor ``1``.
- ``event_property_contains``: the property is an array with an element exactly ``value``.
- ``contains_display_name`` (deprecated since v1.17, no default rule uses it): ``content.body``
  contains the owner's display name in the room, taken literally, case-insensitively, between
  word boundaries as above. No (or an empty) display name never matches.
- ``room_member_count``: ``is`` is ``[==|<|>|>=|<=]N`` over the joined member count; any
  other ``is`` never matches.
- ``sender_notification_permission``: the sender's power level is at least
  ``notifications[key]`` of ``m.room.power_levels``. Only ``room`` has a default (50, as the
  ``m.room.power_levels`` schema says); another key the event does not set has no required
  level, and the condition does not match. The sender's level is ``users[sender]``, else
  ``users_default``, else 0; without a power levels event the room's creator has 100 and
  everyone else 0; in room versions with privileged creators (v12) a creator outranks every
  level (see :class:`PushContext`).

Rules are precompiled once per ruleset by :class:`PushEvaluator`: property paths are split
(:func:`federation.core.ids.split_property_path`, so ``content.m\.relates_to`` is the key
``m.relates_to`` of ``content``), globs become regular expressions (shared through a
module-level cache), room and sender rules become lookups by ID, and each rule's actions are
reduced to its :class:`PushOutcome`. Globs are compiled so that matching stays linear in the
value: each ``*`` segment is matched at its leftmost place and committed (an atomic group),
which finds a match whenever there is one because every segment has a fixed length.

"Homeservers MUST NOT notify the Push Gateway for events that the user has sent themselves":
an event whose ``sender`` is the ruleset's owner never notifies, whatever the rules say.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from federation.core.ids import split_property_path
from federation.core.power_levels import CREATOR_POWER_LEVEL, parse_int_power_level
from federation.core.room_versions import KNOWN_ROOM_VERSIONS
from homeserver.services.push_ruleset import PushRule, PushRuleset

__all__ = [
    "PushContext",
    "PushEvaluator",
    "PushOutcome",
    "compile_glob",
    "outcome_of_actions",
    "sender_power_level",
]


@dataclass(frozen=True, slots=True)
class PushContext:
    """What the rules may ask about the room and the owner, besides the event itself."""

    #: Whose rules these are.
    user_id: str
    #: The user's display name in the room (``contains_display_name``).
    display_name: str | None
    #: The number of joined members of the room (``room_member_count``).
    member_count: int
    #: The content of the room's ``m.room.power_levels`` (None: there is no such event).
    power_levels: Mapping[str, Any] | None
    #: The room's creators (:func:`federation.core.power_levels.get_creators`). Without a
    #: power levels event a creator has level 100; with ``privileged_creators`` they outrank
    #: every level. Empty: every sender's level comes from ``power_levels`` alone.
    creators: frozenset[str] = field(default=frozenset())
    #: Whether the room version gives creators infinite power (v12+).
    privileged_creators: bool = False


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """What the deciding rule says about one event for one user."""

    #: The event counts as a notification (the rule's actions have ``notify``).
    notify: bool
    #: It also counts as a highlight (a true ``highlight`` tweak, and ``notify``).
    highlight: bool
    #: The deciding rule's actions; empty when no rule matched.
    actions: tuple[Any, ...] = ()
    #: The deciding rule's ID; None when no rule matched (or the user sent the event).
    rule_id: str | None = None


#: The outcome when no rule matches.
NO_MATCH: Final = PushOutcome(notify=False, highlight=False)

_Event = Mapping[str, Any]
_Check = Callable[[_Event, PushContext], bool]
_Getter = Callable[[_Event], Any]

_MISSING: Final[Any] = object()


# --- actions -----------------------------------------------------------------------------------


def outcome_of_actions(actions: Sequence[Any], rule_id: str | None = None) -> PushOutcome:
    """The :class:`PushOutcome` of a matching rule with ``actions``.

    ``notify`` is the presence of the ``"notify"`` action (the historical ``dont_notify`` and
    ``coalesce`` are ignored). The ``highlight`` tweak is true when it has no ``value`` or
    ``value`` is ``true``; as with a dictionary of tweaks, the last one given wins. A
    highlight without ``notify`` is no highlight.
    """
    notify = False
    highlight = False
    for action in actions:
        if action == "notify":
            notify = True
        elif isinstance(action, Mapping) and action.get("set_tweak") == "highlight":
            highlight = action.get("value", True) is True
    return PushOutcome(notify, notify and highlight, tuple(actions), rule_id)


# --- globs -------------------------------------------------------------------------------------

#: A character that is a word boundary: not ``[A-Za-z0-9_]`` (case-sensitively, so that
#: ``re.IGNORECASE`` does not fold e.g. ``K`` (Kelvin sign) into the word characters).
_BOUNDARY_CHAR: Final = r"(?-i:[^A-Za-z0-9_])"
_STARTS_AT_BOUNDARY: Final = rf"(?:^|(?<={_BOUNDARY_CHAR}))"
_ENDS_AT_BOUNDARY: Final = rf"(?={_BOUNDARY_CHAR}|\Z)"

_GLOB_CACHE: dict[tuple[str, bool], re.Pattern[str]] = {}
_DISPLAY_NAME_CACHE: dict[str, re.Pattern[str]] = {}
#: Cache bound: past it a cache starts over (patterns are user-chosen, so unbounded growth
#: would be a leak; real rulesets hold a handful).
_CACHE_LIMIT: Final = 4096


def _segment(text: str) -> str:
    return "".join("." if ch == "?" else re.escape(ch) for ch in text)


def _glob_regex(pattern: str, *, words: bool, literal: bool = False) -> str:
    """The regular expression (for ``re.match``, DOTALL and IGNORECASE) of a glob.

    ``S0*S1*...*Sk`` (each ``Si`` of literal characters and ``?``) becomes ``S0``, then each
    middle segment at its leftmost place after the previous one, committed, then ``Sk``. With
    ``words`` the match is a substring starting and ending at a word boundary (``S0`` at its
    leftmost boundary place; ``Sk`` anywhere followed by a boundary); otherwise the whole value.
    """
    if literal:
        segments = [re.escape(pattern)]
    else:
        segments = [_segment(s) for s in pattern.split("*")]
    if len(segments) == 1:
        (first,) = segments
        if words:
            return rf"\A.*?{_STARTS_AT_BOUNDARY}{first}{_ENDS_AT_BOUNDARY}"
        return rf"\A{first}\Z"
    first, *middle, last = segments
    middles = "".join(f"(?>.*?{m})" for m in middle)
    if words:
        return rf"\A(?>.*?{_STARTS_AT_BOUNDARY}{first}){middles}.*?{last}{_ENDS_AT_BOUNDARY}"
    return rf"\A{first}{middles}.*{last}\Z"


def compile_glob(pattern: str, *, words: bool = False) -> re.Pattern[str]:
    """The compiled matcher of a glob; use its ``match`` method on the value.

    Args:
        pattern: the glob (``*`` and ``?``; every other character is literal).
        words: match any substring that starts and ends at a word boundary (``content.body``
            and content rules) rather than the entire value.
    """
    key = (pattern, words)
    compiled = _GLOB_CACHE.get(key)
    if compiled is None:
        if len(_GLOB_CACHE) >= _CACHE_LIMIT:
            _GLOB_CACHE.clear()
        compiled = re.compile(_glob_regex(pattern, words=words), re.DOTALL | re.IGNORECASE)
        _GLOB_CACHE[key] = compiled
    return compiled


def _display_name_regex(name: str) -> re.Pattern[str]:
    compiled = _DISPLAY_NAME_CACHE.get(name)
    if compiled is None:
        if len(_DISPLAY_NAME_CACHE) >= _CACHE_LIMIT:
            _DISPLAY_NAME_CACHE.clear()
        source = _glob_regex(name, words=True, literal=True)
        compiled = re.compile(source, re.DOTALL | re.IGNORECASE)
        _DISPLAY_NAME_CACHE[name] = compiled
    return compiled


# --- property paths ----------------------------------------------------------------------------


def _getter(path: str) -> _Getter:
    """A function reading the property at a dot-separated ``path`` (``_MISSING`` if absent)."""
    keys = tuple(split_property_path(path))
    if len(keys) == 1:
        (only,) = keys
        return lambda event: event.get(only, _MISSING)
    if len(keys) == 2:
        outer, inner = keys

        def get2(event: _Event) -> Any:
            obj = event.get(outer)
            if isinstance(obj, dict) or isinstance(obj, Mapping):
                return obj.get(inner, _MISSING)
            return _MISSING

        return get2

    def get(event: _Event) -> Any:
        obj: Any = event
        for key in keys:
            if not (isinstance(obj, dict) or isinstance(obj, Mapping)):
                return _MISSING
            obj = obj.get(key, _MISSING)
            if obj is _MISSING:
                return _MISSING
        return obj

    return get


_BODY_PATH: Final = ("content", "body")
_get_body: Final = _getter("content.body")


# --- conditions --------------------------------------------------------------------------------


def _never(event: _Event, ctx: PushContext) -> bool:
    return False


def _compile_event_match(cond: Mapping[str, Any]) -> _Check:
    key, pattern = cond.get("key"), cond.get("pattern")
    if not isinstance(key, str) or not isinstance(pattern, str):
        return _never
    get = _getter(key)
    words = tuple(split_property_path(key)) == _BODY_PATH
    match = compile_glob(pattern, words=words).match

    if not words and pattern.isascii() and "*" not in pattern and "?" not in pattern:
        # The common case (``type`` is ``m.room.message``): for an ASCII value, comparing
        # lower-cased strings is what the case-insensitive regex does, and faster.
        lowered = pattern.lower()

        def event_match_literal(event: _Event, ctx: PushContext) -> bool:
            value = get(event)
            if not isinstance(value, str):
                return False
            if value.isascii():
                return value.lower() == lowered
            return match(value) is not None

        return event_match_literal

    def event_match(event: _Event, ctx: PushContext) -> bool:
        value = get(event)
        return isinstance(value, str) and match(value) is not None

    return event_match


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, bool, int))


def _key_and_scalar(cond: Mapping[str, Any]) -> tuple[_Getter, Any] | None:
    """The getter of ``key`` and the scalar ``value`` of an ``event_property_*`` condition
    (None: malformed, the rule never matches)."""
    key = cond.get("key")
    if not isinstance(key, str) or "value" not in cond or not _is_scalar(cond["value"]):
        return None
    return _getter(key), cond["value"]


def _compile_property_is(cond: Mapping[str, Any]) -> _Check:
    parsed = _key_and_scalar(cond)
    if parsed is None:
        return _never
    get, wanted = parsed
    wanted_type = type(wanted)

    def event_property_is(event: _Event, ctx: PushContext) -> bool:
        value = get(event)
        return type(value) is wanted_type and value == wanted

    return event_property_is


def _compile_property_contains(cond: Mapping[str, Any]) -> _Check:
    parsed = _key_and_scalar(cond)
    if parsed is None:
        return _never
    get, wanted = parsed
    wanted_type = type(wanted)

    if wanted_type is str:
        # Only a str equals a str, so plain membership is exact.
        def contains_str(event: _Event, ctx: PushContext) -> bool:
            value = get(event)
            return isinstance(value, (list, tuple)) and wanted in value

        return contains_str

    def event_property_contains(event: _Event, ctx: PushContext) -> bool:
        value = get(event)
        if not isinstance(value, (list, tuple)):
            return False
        return any(type(item) is wanted_type and item == wanted for item in value)

    return event_property_contains


def _contains_display_name(event: _Event, ctx: PushContext) -> bool:
    name = ctx.display_name
    if not name:
        return False
    body = _get_body(event)
    return isinstance(body, str) and _display_name_regex(name).match(body) is not None


_MEMBER_COUNT: Final = re.compile(r"(==|<=|>=|<|>)?([0-9]+)")
_COMPARISONS: Final[dict[str, Callable[[int, int], bool]]] = {
    "==": operator.eq,
    "<": operator.lt,
    ">": operator.gt,
    "<=": operator.le,
    ">=": operator.ge,
}


def _compile_member_count(cond: Mapping[str, Any]) -> _Check:
    spec = cond.get("is")
    parsed = _MEMBER_COUNT.fullmatch(spec) if isinstance(spec, str) else None
    if parsed is None:
        return _never
    compare = _COMPARISONS[parsed.group(1) or "=="]
    bound = int(parsed.group(2))

    def room_member_count(event: _Event, ctx: PushContext) -> bool:
        return compare(ctx.member_count, bound)

    return room_member_count


#: Levels already in room state passed the auth rules of their room version; read them with
#: the most lenient format (v1: integers, numeric strings, floats) so every version's parse.
_LENIENT_VERSION: Final = KNOWN_ROOM_VERSIONS["1"]


def _level(value: Any) -> int | None:
    return parse_int_power_level(_LENIENT_VERSION, value)


def sender_power_level(sender: Any, ctx: PushContext) -> int | float:
    """The power level of ``sender`` in the room ``ctx`` describes (``math.inf`` for a
    privileged creator)."""
    if ctx.privileged_creators and sender in ctx.creators:
        return CREATOR_POWER_LEVEL
    content = ctx.power_levels
    if content is None:
        return 100 if sender in ctx.creators else 0
    users = content.get("users")
    if isinstance(users, Mapping) and isinstance(sender, str) and sender in users:
        level = _level(users[sender])
        if level is not None:
            return level
    default = _level(content.get("users_default", 0))
    return 0 if default is None else default


def _required_notification_level(key: str, ctx: PushContext) -> int | None:
    content = ctx.power_levels
    if content is not None:
        notifications = content.get("notifications")
        if isinstance(notifications, Mapping) and key in notifications:
            level = _level(notifications[key])
            if level is not None:
                return level
    return 50 if key == "room" else None


def _compile_notification_permission(cond: Mapping[str, Any]) -> _Check:
    key = cond.get("key")
    if not isinstance(key, str):
        return _never

    def sender_notification_permission(event: _Event, ctx: PushContext) -> bool:
        required = _required_notification_level(key, ctx)
        return required is not None and sender_power_level(event.get("sender"), ctx) >= required

    return sender_notification_permission


_CONDITION_COMPILERS: Final[dict[str, Callable[[Mapping[str, Any]], _Check]]] = {
    "event_match": _compile_event_match,
    "event_property_is": _compile_property_is,
    "event_property_contains": _compile_property_contains,
    "contains_display_name": lambda cond: _contains_display_name,
    "room_member_count": _compile_member_count,
    "sender_notification_permission": _compile_notification_permission,
}


def _compile_condition(cond: Mapping[str, Any]) -> _Check:
    kind = cond.get("kind")
    compiler = _CONDITION_COMPILERS.get(kind) if isinstance(kind, str) else None
    return _never if compiler is None else compiler(cond)


def _compile_content_pattern(pattern: str) -> _Check:
    match = compile_glob(pattern, words=True).match

    def content_pattern(event: _Event, ctx: PushContext) -> bool:
        body = _get_body(event)
        return isinstance(body, str) and match(body) is not None

    return content_pattern


# --- the evaluator -----------------------------------------------------------------------------

_CompiledRule = tuple[tuple[_Check, ...], PushOutcome]


def _compile_conditional(rules: Sequence[PushRule]) -> tuple[_CompiledRule, ...]:
    out: list[_CompiledRule] = []
    for rule in rules:
        if not rule.enabled:
            continue
        checks = tuple(_compile_condition(c) for c in rule.conditions or ())
        if _never in checks:
            continue  # an unrecognised or malformed condition: the rule never matches
        out.append((checks, outcome_of_actions(rule.actions, rule.rule_id)))
    return tuple(out)


def _compile_content(rules: Sequence[PushRule]) -> tuple[_CompiledRule, ...]:
    return tuple(
        ((_compile_content_pattern(rule.pattern),), outcome_of_actions(rule.actions, rule.rule_id))
        for rule in rules
        if rule.enabled and rule.pattern is not None
    )


def _compile_by_id(rules: Sequence[PushRule]) -> dict[str, PushOutcome]:
    by_id: dict[str, PushOutcome] = {}
    for rule in rules:
        if rule.enabled and rule.rule_id not in by_id:
            by_id[rule.rule_id] = outcome_of_actions(rule.actions, rule.rule_id)
    return by_id


class PushEvaluator:
    """One user's ruleset, compiled; :meth:`evaluate` it for each event the user sees.

    Build one per ruleset (it keeps no per-event state, so it may be shared and reused).
    """

    __slots__ = ("_content", "_override", "_room", "_sender", "_underride", "user_id")

    def __init__(self, ruleset: PushRuleset) -> None:
        self.user_id = ruleset.user_id
        self._override = _compile_conditional(ruleset.rules("override"))
        self._content = _compile_content(ruleset.rules("content"))
        self._room = _compile_by_id(ruleset.rules("room"))
        self._sender = _compile_by_id(ruleset.rules("sender"))
        self._underride = _compile_conditional(ruleset.rules("underride"))

    def evaluate(self, event: Mapping[str, Any], ctx: PushContext) -> PushOutcome:
        """The outcome of the first enabled rule that matches ``event`` (override, content,
        room, sender, underride), or :data:`NO_MATCH`.

        Args:
            event: the event in client/federation format (``type``, ``content``, ``sender``,
                ``room_id``, ``state_key`` when a state event, ...).
            ctx: the owner and the room as they are at the event.
        """
        sender = event.get("sender")
        if sender == ctx.user_id:
            return NO_MATCH
        for checks, outcome in self._override:
            for check in checks:
                if not check(event, ctx):
                    break
            else:
                return outcome
        for checks, outcome in self._content:
            for check in checks:
                if not check(event, ctx):
                    break
            else:
                return outcome
        if self._room:
            room_id = event.get("room_id")
            if isinstance(room_id, str) and room_id in self._room:
                return self._room[room_id]
        if self._sender and isinstance(sender, str) and sender in self._sender:
            return self._sender[sender]
        for checks, outcome in self._underride:
            for check in checks:
                if not check(event, ctx):
                    break
            else:
                return outcome
        return NO_MATCH
