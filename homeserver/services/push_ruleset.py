"""One user's push ruleset: the pure model behind the push rules API.

Spec: client-server-api/modules/push.md › Push Rules, Predefined Rules; ``pushrules.yaml``,
``definitions/push_rule.yaml``, ``push_ruleset.yaml``, ``push_condition.yaml``.

A :class:`PushRuleset` is the user's rules of each kind plus the server-default rules (with any
``enabled``/``actions`` the user set on them). Its effective order, the order
``GET /pushrules/`` lists and evaluation will check, is per kind:

- ``override``: ``.m.rule.master``, the user's override rules, the other default overrides
  ("server-default rules ... operate at a lower priority than user-defined rules, except for
  the ``.m.rule.master`` rule which has always a higher priority than any other rule");
- ``content``, ``room``, ``sender``: the user's rules (v1.19 has no default rules of these);
- ``underride``: the user's underride rules, then the default underrides.

Editing returns a new ruleset (nothing here does I/O), so the service can run an edit as the
pure ``change`` of a read-modify-write transaction. The ruleset is stored as what it shows: the
``m.push_rules`` account data content ``{"global": {...}}``. :meth:`PushRuleset.from_content`
reads it back: entries with a user rule ID are the user's rules, in their stored order; for
each current server-default rule the stored ``enabled`` and ``actions`` are kept, its
conditions always come from the current definition; a stored dot-rule the server no longer
defines is dropped, and a default rule missing from what is stored appears with its default
settings. A default whose stored settings equal its definition is thus not told apart from one
the user set to the same values, which is the same thing to every reader.

The ``parse_*`` and ``check_*`` helpers validate request bodies at the API edge (``400
M_BAD_JSON`` for a wrong shape, ``M_INVALID_PARAM`` for a value the spec forbids); the reader
of stored content uses them too, and skips what does not pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from homeserver.errors import BadJson, Codes, InvalidParam, MatrixError, MissingParam, NotFound
from homeserver.services.push_rule_defaults import MASTER_RULE_ID, server_default_rules

__all__ = [
    "KINDS",
    "PUSH_RULES_TYPE",
    "PushRule",
    "PushRuleset",
    "check_kind",
    "check_new_rule_id",
    "default_push_rules_event",
    "parse_actions",
    "parse_conditions",
    "push_rules_event",
]

#: The rule kinds, in the order they are checked.
KINDS: Final = ("override", "content", "room", "sender", "underride")
#: The kinds whose rules carry ``conditions``.
CONDITION_KINDS: Final = frozenset({"override", "underride"})
#: The account data type the ruleset is delivered (and stored) as.
PUSH_RULES_TYPE: Final = "m.push_rules"
#: Actions of older spec versions: "Clients and homeservers MUST ignore these actions, for
#: instance, by stripping them from actions arrays they encounter." Accepted and stored as
#: written (see :func:`parse_actions`); evaluation ignores them.
HISTORICAL_ACTIONS: Final = frozenset({"dont_notify", "coalesce"})
#: Our limit on a rule ID, in bytes (room and user IDs are at most 255 bytes).
MAX_RULE_ID_BYTES: Final = 255

_MEMBER_COUNT = re.compile(r"(==|<|>|>=|<=)?[0-9]+")
_MAX_SAFE_INT = 2**53 - 1

JsonObject = Mapping[str, Any]


class _RuleNotFound(NotFound):
    """The rule does not exist in this kind (the spec's 404 body)."""

    def __init__(self) -> None:
        super().__init__("The push rule was not found.")


# --- parsing at the edge ---------------------------------------------------------------------


def check_kind(kind: str) -> str:
    """``kind`` if it is one of :data:`KINDS`.

    Raises:
        InvalidParam: an unknown kind.
    """
    if kind not in KINDS:
        raise InvalidParam(f"Unknown push rule kind {kind!r}: one of {', '.join(KINDS)}")
    return kind


def check_new_rule_id(kind: str, rule_id: str) -> str:
    """``rule_id`` if a user may create a rule of ``kind`` with it.

    Spec (``PUT /pushrules/global/{kind}/{ruleId}``): "If the string starts with a dot ("."),
    the request MUST be rejected as this is reserved for server-default rules. Slashes ("/")
    and backslashes ("\\") are also not allowed." A room rule's ID "is always the ID of the
    room", a sender rule's "the Matrix user ID"; another ID is accepted all the same (it then
    matches nothing), as Synapse does: SyTest creates room rules named after room aliases.

    Raises:
        InvalidParam: empty, over 255 bytes, starts with ``.``, or has ``/`` or ``\\``.
    """
    if not rule_id or len(rule_id.encode()) > MAX_RULE_ID_BYTES:
        raise InvalidParam(f"Push rule IDs are 1 to {MAX_RULE_ID_BYTES} bytes")
    if rule_id.startswith("."):
        raise InvalidParam("Push rule IDs starting with '.' are reserved for server-default rules")
    if "/" in rule_id or "\\" in rule_id:
        raise InvalidParam("Push rule IDs cannot contain '/' or '\\'")
    return rule_id


def parse_actions(value: Any) -> tuple[Any, ...]:
    """A rule's ``actions``: ``"notify"`` and ``{"set_tweak": ..., ...}`` objects.

    The historical ``dont_notify`` and ``coalesce`` are kept as written, as Synapse does (the
    spec's "Clients and homeservers MUST ignore these actions": evaluation ignores them, and
    a client reading them back sees what it wrote; SyTest sets ``["dont_notify"]`` and reads
    it back).

    Raises:
        BadJson: not an array, or an element is neither a string nor a tweak object.
        InvalidParam: an unknown string action.
    """
    if not isinstance(value, list):
        raise BadJson("'actions' must be an array")
    out: list[Any] = []
    for action in value:
        if isinstance(action, str):
            if action != "notify" and action not in HISTORICAL_ACTIONS:
                raise InvalidParam(f"Unknown push rule action {action!r}")
            out.append(action)
        elif isinstance(action, dict) and isinstance(action.get("set_tweak"), str):
            out.append(dict(action))
        else:
            raise BadJson("Each action is 'notify' or an object with a string 'set_tweak'")
    return tuple(out)


def _is_scalar(value: Any) -> bool:
    if value is None or isinstance(value, (str, bool)):
        return True
    return isinstance(value, int) and -_MAX_SAFE_INT <= value <= _MAX_SAFE_INT


def _check_condition(index: int, cond: Any) -> dict[str, Any]:
    where = f"conditions[{index}]"
    if not isinstance(cond, dict):
        raise BadJson(f"{where} must be an object")
    kind = cond.get("kind")
    if not isinstance(kind, str):
        raise BadJson(f"{where} needs a string 'kind'")
    for key in ("key", "pattern", "is"):
        if key in cond and not isinstance(cond[key], str):
            raise BadJson(f"{where}.{key} must be a string")
    if "value" in cond and not _is_scalar(cond["value"]):
        raise BadJson(f"{where}.value must be a string, an integer, a boolean or null")
    needs: tuple[str, ...] = {
        "event_match": ("key", "pattern"),
        "event_property_is": ("key", "value"),
        "event_property_contains": ("key", "value"),
        "room_member_count": ("is",),
        "sender_notification_permission": ("key",),
    }.get(kind, ())
    for key in needs:
        if key not in cond:
            raise BadJson(f"{where}: a {kind} condition needs {key!r}")
    if kind == "room_member_count" and not _MEMBER_COUNT.fullmatch(cond["is"]):
        raise InvalidParam(f"{where}.is must be a number, optionally after ==, <, >, >= or <=")
    # Unknown kinds are kept: "Unrecognised conditions MUST NOT match any events".
    return dict(cond)


def parse_conditions(value: Any) -> tuple[dict[str, Any], ...]:
    """An override or underride rule's ``conditions`` (``push_condition.yaml``).

    Raises:
        BadJson: not an array of condition objects with their parameters.
        InvalidParam: a ``room_member_count`` whose ``is`` is not a comparison.
    """
    if not isinstance(value, list):
        raise BadJson("'conditions' must be an array")
    return tuple(_check_condition(i, c) for i, c in enumerate(value))


# --- the model ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PushRule:
    """One rule of a known kind.

    ``conditions`` is set for override and underride rules only, ``pattern`` for content rules
    only; room and sender rules match by their ``rule_id``.
    """

    rule_id: str
    actions: tuple[Any, ...]
    enabled: bool = True
    default: bool = False
    conditions: tuple[JsonObject, ...] | None = None
    pattern: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The rule as ``push_rule.yaml`` has it."""
        out: dict[str, Any] = {
            "rule_id": self.rule_id,
            "default": self.default,
            "enabled": self.enabled,
        }
        if self.conditions is not None:
            out["conditions"] = [dict(c) for c in self.conditions]
        if self.pattern is not None:
            out["pattern"] = self.pattern
        out["actions"] = [dict(a) if isinstance(a, Mapping) else a for a in self.actions]
        return out

    @classmethod
    def from_json(cls, kind: str, obj: Any, *, default: bool = False) -> PushRule:
        """Read a rule of ``kind`` (a stored one, or a server default's definition).

        Raises:
            MatrixError: the object is not a valid rule of ``kind``.
        """
        if not isinstance(obj, dict) or not isinstance(obj.get("rule_id"), str):
            raise BadJson("A push rule is an object with a string 'rule_id'")
        enabled = obj.get("enabled", True)
        if not isinstance(enabled, bool):
            raise BadJson("'enabled' must be a boolean")
        return cls.create(
            kind,
            obj["rule_id"],
            obj.get("actions"),
            conditions=obj.get("conditions"),
            pattern=obj.get("pattern"),
            enabled=enabled,
            default=default,
        )

    @classmethod
    def create(
        cls,
        kind: str,
        rule_id: str,
        actions: Any,
        *,
        conditions: Any = None,
        pattern: Any = None,
        enabled: bool = True,
        default: bool = False,
    ) -> PushRule:
        """A rule of ``kind`` from the fields of a ``PUT`` body (or a stored rule).

        ``conditions`` default to none (the rule always matches) and are ignored outside
        override and underride rules; ``pattern`` is required for, and only read from, content
        rules.

        Raises:
            BadJson / MissingParam / InvalidParam: a field is missing or invalid.
        """
        parsed_conditions: tuple[dict[str, Any], ...] | None = None
        parsed_pattern: str | None = None
        if kind in CONDITION_KINDS:
            parsed_conditions = () if conditions is None else parse_conditions(conditions)
        elif kind == "content":
            if pattern is None:
                raise MissingParam("A content rule needs a 'pattern'")
            if not isinstance(pattern, str):
                raise BadJson("'pattern' must be a string")
            parsed_pattern = pattern
        if actions is None:
            raise MissingParam("A push rule needs 'actions'")
        return cls(
            rule_id,
            parse_actions(actions),
            enabled=enabled,
            default=default,
            conditions=parsed_conditions,
            pattern=parsed_pattern,
        )


def _stored_rules(content: JsonObject | None, kind: str) -> list[Any]:
    ruleset = (content or {}).get("global")
    rules = ruleset.get(kind) if isinstance(ruleset, Mapping) else None
    return rules if isinstance(rules, list) else []


class PushRuleset:
    """A user's global ruleset: their own rules and the server defaults, per kind.

    Build one with :meth:`defaults` or :meth:`from_content`; the ``with_*``/``without_*``
    methods return a changed copy.
    """

    __slots__ = ("_defaults", "_user", "user_id")

    def __init__(
        self,
        user_id: str,
        user: Mapping[str, Sequence[PushRule]],
        defaults: Mapping[str, Sequence[PushRule]],
    ) -> None:
        self.user_id = user_id
        self._user = {kind: tuple(user.get(kind, ())) for kind in KINDS}
        self._defaults = {kind: tuple(defaults.get(kind, ())) for kind in KINDS}

    @classmethod
    def defaults(cls, user_id: str) -> PushRuleset:
        """The ruleset of a user who never changed anything."""
        return cls.from_content(user_id, None)

    @classmethod
    def from_content(cls, user_id: str, content: JsonObject | None) -> PushRuleset:
        """Read stored ``m.push_rules`` content (None: never stored) over the current defaults.

        Invalid stored entries are skipped rather than failing the read.
        """
        user: dict[str, list[PushRule]] = {}
        defaults: dict[str, list[PushRule]] = {}
        for kind, definitions in server_default_rules(user_id).items():
            stored = _stored_rules(content, kind)
            by_id = {
                r["rule_id"]: r
                for r in reversed(stored)
                if isinstance(r, dict) and isinstance(r.get("rule_id"), str)
            }
            defaults[kind] = [
                _with_stored_settings(kind, d, by_id.get(d["rule_id"])) for d in definitions
            ]
            seen: set[str] = set()
            own: list[PushRule] = []
            for obj in stored:
                try:
                    rule = PushRule.from_json(kind, obj)
                    check_new_rule_id(kind, rule.rule_id)
                except MatrixError:
                    continue
                if rule.rule_id not in seen:
                    seen.add(rule.rule_id)
                    own.append(rule)
            user[kind] = own
        return cls(user_id, user, defaults)

    # --- reading

    def rules(self, kind: str) -> tuple[PushRule, ...]:
        """The rules of ``kind`` in effective order (most important first)."""
        user, defaults = self._user[kind], self._defaults[kind]
        if kind == "override":
            master = tuple(r for r in defaults if r.rule_id == MASTER_RULE_ID)
            rest = tuple(r for r in defaults if r.rule_id != MASTER_RULE_ID)
            return master + user + rest
        return user + defaults

    def to_json(self) -> dict[str, list[dict[str, Any]]]:
        """The ruleset as ``push_ruleset.yaml`` has it: every kind, effective order."""
        return {kind: [r.to_json() for r in self.rules(kind)] for kind in KINDS}

    def to_content(self) -> dict[str, Any]:
        """The content of the ``m.push_rules`` account data event: ``{"global": ruleset}``."""
        return {"global": self.to_json()}

    def get(self, kind: str, rule_id: str) -> PushRule:
        """The rule ``rule_id`` of ``kind``.

        Raises:
            NotFound: no such rule.
        """
        for rule in (*self._user[kind], *self._defaults[kind]):
            if rule.rule_id == rule_id:
                return rule
        raise _RuleNotFound()

    # --- editing

    def with_rule(
        self, kind: str, rule: PushRule, *, before: str | None = None, after: str | None = None
    ) -> PushRuleset:
        """Add the user rule ``rule`` or update the one with its ID.

        A new rule is enabled and, without ``before``/``after``, becomes the most important
        user rule of its kind; an updated rule keeps its place and its ``enabled``. With
        ``before`` (which wins over ``after``) it becomes the next more important rule than the
        user rule ``before``; with ``after``, the next less important than ``after``.

        Raises:
            MatrixError: ``400 M_UNKNOWN`` ("before/after rule not found: ...") when the
                relative rule is not a user rule of this kind (default rules cannot be used).
        """
        rules = list(self._user[kind])
        index = next((i for i, r in enumerate(rules) if r.rule_id == rule.rule_id), None)
        if index is not None:
            rule = replace(rule, enabled=rules[index].enabled, default=False)
        else:
            rule = replace(rule, enabled=True, default=False)
        relative = before if before is not None else after
        if relative is not None and not (index is not None and relative == rule.rule_id):
            if index is not None:
                del rules[index]
            anchor = next((i for i, r in enumerate(rules) if r.rule_id == relative), None)
            if anchor is None:
                raise MatrixError(400, Codes.UNKNOWN, f"before/after rule not found: {relative}")
            rules.insert(anchor if before is not None else anchor + 1, rule)
        elif index is not None:
            rules[index] = rule
        else:
            rules.insert(0, rule)
        return self._replace_user(kind, rules)

    def without_rule(self, kind: str, rule_id: str) -> PushRuleset:
        """Remove the user rule ``rule_id``.

        Raises:
            NotFound: no such user rule (server-default rules cannot be removed; they can be
                disabled).
        """
        rules = [r for r in self._user[kind] if r.rule_id != rule_id]
        if len(rules) == len(self._user[kind]):
            raise _RuleNotFound()
        return self._replace_user(kind, rules)

    def with_enabled(self, kind: str, rule_id: str, enabled: bool) -> PushRuleset:
        """Enable or disable a user or server-default rule.

        Raises:
            NotFound: no such rule.
        """
        return self._change(kind, rule_id, lambda r: replace(r, enabled=enabled))

    def with_actions(self, kind: str, rule_id: str, actions: tuple[Any, ...]) -> PushRuleset:
        """Set the actions of a user or server-default rule.

        Raises:
            NotFound: no such rule.
        """
        return self._change(kind, rule_id, lambda r: replace(r, actions=actions))

    def with_room_rules_copied(self, old_room_id: str, new_room_id: str) -> PushRuleset:
        """Copy the user's enabled rules about ``old_room_id`` to ``new_room_id`` (a room
        upgrade: "the server should automatically transfer/replicate some of the user's
        personalized settings such as notifications").

        As Synapse does: the room rule ``old_room_id`` becomes the room rule ``new_room_id``,
        and an override or underride rule with an ``event_match`` condition on ``room_id`` for
        the old room is copied with the room ID replaced in its conditions and its rule ID
        (a rule whose ID does not name the old room is not copied: its copy would have the
        same ID). A rule already there for the new room is left as it is; the copies are the
        most important rules of their kind, in their old order.
        """
        user = dict(self._user)
        for kind in KINDS:
            existing = {r.rule_id for r in user[kind]}
            copies: list[PushRule] = []
            for rule in user[kind]:
                if not rule.enabled:
                    continue
                if kind == "room":
                    if (
                        rule.rule_id == old_room_id
                        and new_room_id not in existing
                        and _usable_rule_id(kind, new_room_id)
                    ):
                        copies.append(replace(rule, rule_id=new_room_id))
                    continue
                if rule.conditions is None or not any(
                    _matches_room(c, old_room_id) for c in rule.conditions
                ):
                    continue
                new_id = rule.rule_id.replace(old_room_id, new_room_id)
                if new_id == rule.rule_id or new_id in existing:
                    continue
                if not _usable_rule_id(kind, new_id):
                    continue  # e.g. over 255 bytes: it would not be read back
                conditions = tuple(
                    {**c, "pattern": new_room_id} if _matches_room(c, old_room_id) else c
                    for c in rule.conditions
                )
                copies.append(replace(rule, rule_id=new_id, conditions=conditions))
            if copies:
                user[kind] = (*copies, *user[kind])
        return PushRuleset(self.user_id, user, self._defaults)

    def _change(self, kind: str, rule_id: str, edit: Callable[[PushRule], PushRule]) -> PushRuleset:
        self.get(kind, rule_id)
        user = [edit(r) if r.rule_id == rule_id else r for r in self._user[kind]]
        defaults = [edit(r) if r.rule_id == rule_id else r for r in self._defaults[kind]]
        return PushRuleset(
            self.user_id, {**self._user, kind: user}, {**self._defaults, kind: defaults}
        )

    def _replace_user(self, kind: str, rules: Sequence[PushRule]) -> PushRuleset:
        return PushRuleset(self.user_id, {**self._user, kind: rules}, self._defaults)


def _usable_rule_id(kind: str, rule_id: str) -> bool:
    try:
        check_new_rule_id(kind, rule_id)
    except MatrixError:
        return False
    return True


def _matches_room(condition: JsonObject, room_id: str) -> bool:
    return (
        condition.get("kind") == "event_match"
        and condition.get("key") == "room_id"
        and condition.get("pattern") == room_id
    )


def _with_stored_settings(kind: str, definition: JsonObject, stored: Any) -> PushRule:
    rule = PushRule.from_json(kind, definition, default=True)
    if not isinstance(stored, dict):
        return rule
    enabled = stored.get("enabled")
    if isinstance(enabled, bool):
        rule = replace(rule, enabled=enabled)
    try:
        rule = replace(rule, actions=parse_actions(stored.get("actions")))
    except MatrixError:
        pass
    return rule


def push_rules_event(user_id: str, stored: JsonObject | None) -> dict[str, Any]:
    """The ``m.push_rules`` account data event ``/sync`` shows for ``user_id``.

    Args:
        user_id: the owner.
        stored: the stored ``m.push_rules`` content, or None when the user never changed a rule.
    """
    return {
        "type": PUSH_RULES_TYPE,
        "content": PushRuleset.from_content(user_id, stored).to_content(),
    }


def default_push_rules_event(user_id: str) -> dict[str, Any]:
    """The ``m.push_rules`` event of a user who never changed a rule (for an initial ``/sync``
    when nothing is stored yet)."""
    return push_rules_event(user_id, None)
