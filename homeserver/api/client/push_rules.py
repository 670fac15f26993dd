"""Push rules: the user's global ruleset.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules-api (``pushrules.yaml``).

Only the ``global`` scope exists. Every ``/pushrules/...`` path goes through one parser of its
segments (as Synapse's push rules servlet does), so that each malformed path gets a Matrix
error rather than a routing 404/405. The segments are read from the raw, still percent-encoded
path, so a rule ID holding ``%2F`` stays one segment (and is refused as the spec asks). The
paths, and what a path that does not fit answers:

- ``GET /pushrules/`` (all rulesets); ``/pushrules`` without its slash: ``404 M_UNRECOGNIZED``
  (the spec writes the slash; matrix-js-sdk requests it with the slash; Synapse and SyTest
  refuse the bare form);
- ``GET /pushrules/global/`` (the ruleset) and ``GET /pushrules/global/{kind}/`` (the rules of
  one kind, in effective order, as Synapse serves them); either without its trailing slash:
  ``400 M_UNRECOGNIZED``;
- ``GET|PUT|DELETE /pushrules/global/{kind}/{ruleId}``, ``GET|PUT .../{ruleId}/enabled`` and
  ``.../actions``. Any other attribute, a missing scope, kind or rule ID, or extra segments:
  ``400 M_UNRECOGNIZED`` (a ``GET`` of an unknown rule answers 404 before its attribute is
  looked at, as Synapse does).

Other errors:

- an unknown scope or ``kind``: ``400 M_INVALID_PARAM``;
- an unknown rule: ``404 M_NOT_FOUND`` ("The push rule was not found.");
- ``PUT`` of a rule ID starting with ``.`` or holding ``/`` or ``\\``: ``400 M_INVALID_PARAM``.
  A room (sender) rule's ID is the room (user) ID it matches, but any other ID is stored (it
  matches nothing), as Synapse does and SyTest expects (it uses room aliases);
- ``before``/``after`` naming no user rule of that kind: ``400 M_UNKNOWN``, as the spec's
  example ("before/after rule not found: someRuleId");
- bodies: ``M_NOT_JSON`` / ``M_BAD_JSON`` / ``M_MISSING_PARAM`` / ``M_INVALID_PARAM``.
"""

from __future__ import annotations

from typing import Any, Final
from urllib.parse import unquote

from quart import request

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.errors import BadJson, InvalidParam, MatrixError, MissingParam, Unrecognized
from homeserver.services.push_rules import PushRulesService
from homeserver.services.push_ruleset import (
    PushRule,
    check_kind,
    check_new_rule_id,
    parse_actions,
)
from homeserver.services.requester import Requester

__all__ = ["PushRulesApi"]

_PREFIX: Final = "/_matrix/client/v3/pushrules/"
#: The attributes of a rule with their own endpoints.
_ATTRIBUTES: Final = ("enabled", "actions")


def _query(name: str) -> str | None:
    """A query parameter; empty counts as absent."""
    return request.args.get(name) or None


def _bad_path(why: str) -> MatrixError:
    return Unrecognized(400, why)


def _segments() -> list[str]:
    """The percent-decoded segments of the path after ``/pushrules/`` (``[]`` for none).

    ``"global/room/"`` gives ``["global", "room", ""]``: a trailing slash is an empty last
    segment.
    """
    raw = request.scope.get("raw_path")
    path = raw.decode("ascii", "replace").split("?", 1)[0] if isinstance(raw, bytes) else None
    if path is None or not path.startswith(_PREFIX):
        path = request.path  # already decoded: a %2F would split a segment
    rest = path[len(_PREFIX) :]
    if not rest:
        return []
    try:
        return [unquote(part, errors="strict") for part in rest.split("/")]
    except UnicodeDecodeError:
        raise InvalidParam("The push rules path is not UTF-8") from None


def _scope(segments: list[str]) -> list[str]:
    """The segments after the scope, which must be ``global``."""
    if not segments or not segments[0]:
        raise _bad_path("A push rules path needs a scope: /pushrules/global/")
    if segments[0] != "global":
        raise InvalidParam(f"Unknown push rules scope {segments[0]!r}: only 'global' exists")
    return segments[1:]


def _rule_path(segments: list[str]) -> tuple[str, str, str | None]:
    """``(kind, rule_id, attribute)`` of a path naming one rule (for ``PUT`` and ``DELETE``)."""
    rest = _scope(segments)
    if not rest or not rest[0]:
        raise _bad_path("A push rule path needs a kind: /pushrules/global/{kind}/{ruleId}")
    kind = check_kind(rest[0])
    if len(rest) < 2 or not rest[1]:
        raise _bad_path("A push rule path needs a rule ID: /pushrules/global/{kind}/{ruleId}")
    if len(rest) > 3:
        raise _bad_path("Unknown push rules path")
    attr = rest[2] if len(rest) == 3 and rest[2] else None
    if attr is not None and attr not in _ATTRIBUTES:
        raise _bad_path(f"Unknown push rule attribute {attr!r}: one of enabled, actions")
    return kind, rest[1], attr


class PushRulesApi:
    """``/pushrules/`` and ``/pushrules/global/...``.

    Args:
        push_rules: the push rules service.
        max_body_bytes: the body limit of ``PUT``.
    """

    def __init__(self, push_rules: PushRulesService, max_body_bytes: int) -> None:
        self._push_rules = push_rules
        self._max_body = max_body_bytes

    @route("GET", "/_matrix/client/v3/pushrules", auth="user")
    async def get_push_rules_without_slash(self, requester: Requester) -> JsonDict:
        """GET /_matrix/client/v3/pushrules (no trailing slash): not an endpoint.

        The spec's path is ``/pushrules/``; registered only so that the bare form answers
        ``404 M_UNRECOGNIZED`` (as Synapse, and SyTest checks) instead of a redirect.
        """
        raise Unrecognized(404)

    @route("GET", "/_matrix/client/v3/pushrules/", auth="user")
    async def get_push_rules(self, requester: Requester) -> JsonDict:
        """GET /_matrix/client/v3/pushrules/.

        Spec: client-server-api/#get_matrixclientv3pushrules. "Retrieve all push rulesets for
        this user. Currently the only push ruleset defined is ``global``."
        """
        return {"global": await self._push_rules.ruleset(requester)}

    @route("GET", "/_matrix/client/v3/pushrules/{path:path}", auth="user")
    async def get_push_rules_path(self, requester: Requester, path: str) -> Any:
        """GET /_matrix/client/v3/pushrules/global/[{kind}/[{ruleId}[/enabled|/actions]]].

        Spec: client-server-api/#get_matrixclientv3pushrulesglobal ("Retrieve all push rules
        for this user"), #get_matrixclientv3pushrulesglobalkindruleid ("Retrieve a single
        specified push rule"), #get_matrixclientv3pushrulesglobalkindruleidenabled ("This
        endpoint gets whether the specified push rule is enabled") and
        #get_matrixclientv3pushrulesglobalkindruleidactions ("This endpoint get the actions
        for the specified push rule"). ``/pushrules/global/{kind}/`` lists one kind's rules.
        """
        rest = _scope(_segments())
        if not rest:
            raise _bad_path("The ruleset is at /pushrules/global/ (with the trailing slash)")
        if rest == [""]:
            return await self._push_rules.ruleset(requester)
        kind = check_kind(rest[0])
        if len(rest) == 1:
            raise _bad_path(f"The {kind} rules are at /pushrules/global/{kind}/")
        if rest[1:] == [""]:
            return (await self._push_rules.ruleset(requester))[kind]
        if len(rest) > 3 or not rest[1]:
            raise _bad_path("Unknown push rules path")
        rule = (await self._push_rules.get_rule(requester, kind, rest[1])).to_json()
        attr = rest[2] if len(rest) == 3 and rest[2] else None
        if attr is None:
            return rule
        if attr not in _ATTRIBUTES:
            raise _bad_path(f"Unknown push rule attribute {attr!r}: one of enabled, actions")
        return {attr: rule[attr]}

    @route("PUT", "/_matrix/client/v3/pushrules/", auth="user", rate_limit="client_default")
    @route(
        "PUT", "/_matrix/client/v3/pushrules/{path:path}", auth="user", rate_limit="client_default"
    )
    async def put_push_rules_path(self, requester: Requester, path: str = "") -> JsonDict:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}[/enabled|/actions].

        Spec: client-server-api/#put_matrixclientv3pushrulesglobalkindruleid. "This endpoint
        allows the creation and modification of user defined push rules. If a rule with the
        same ``rule_id`` already exists among rules of the same kind, it is updated with the
        new parameters, otherwise a new rule is created." ``before`` wins over ``after``; a
        new rule without either becomes the most important user rule of its kind.

        #put_matrixclientv3pushrulesglobalkindruleidenabled: "This endpoint allows clients to
        enable or disable the specified push rule."
        #put_matrixclientv3pushrulesglobalkindruleidactions: "This endpoint allows clients to
        change the actions of a push rule. This can be used to change the actions of builtin
        rules."
        """
        kind, rule_id, attr = _rule_path(_segments())
        if attr == "enabled":
            body = await read_json_body(self._max_body)
            if "enabled" not in body:
                raise MissingParam("'enabled' is required")
            enabled = body["enabled"]
            if not isinstance(enabled, bool):
                raise BadJson("'enabled' must be a boolean")
            await self._push_rules.set_enabled(requester, kind, rule_id, enabled)
            return {}
        if attr == "actions":
            body = await read_json_body(self._max_body)
            if "actions" not in body:
                raise MissingParam("'actions' is required")
            actions = parse_actions(body["actions"])
            await self._push_rules.set_actions(requester, kind, rule_id, actions)
            return {}
        check_new_rule_id(kind, rule_id)
        body = await read_json_body(self._max_body)
        rule = PushRule.create(
            kind,
            rule_id,
            body.get("actions"),
            conditions=body.get("conditions"),
            pattern=body.get("pattern"),
        )
        await self._push_rules.put_rule(
            requester, kind, rule, before=_query("before"), after=_query("after")
        )
        return {}

    @route("DELETE", "/_matrix/client/v3/pushrules/", auth="user", rate_limit="client_default")
    @route(
        "DELETE",
        "/_matrix/client/v3/pushrules/{path:path}",
        auth="user",
        rate_limit="client_default",
    )
    async def delete_push_rule(self, requester: Requester, path: str = "") -> JsonDict:
        """DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.

        Spec: client-server-api/#delete_matrixclientv3pushrulesglobalkindruleid. "This
        endpoint removes the push rule defined in the path." Server-default rules cannot be
        removed (404, as for any rule the user does not have).
        """
        kind, rule_id, attr = _rule_path(_segments())
        if attr is not None:
            raise _bad_path(f"The {attr} of a push rule cannot be deleted")
        await self._push_rules.delete_rule(requester, kind, rule_id)
        return {}
