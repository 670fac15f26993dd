"""Push rules: the user's global ruleset.

Spec: https://spec.matrix.org/v1.19/client-server-api/#push-rules-api (``pushrules.yaml``).

Only the ``global`` scope exists. ``GET /pushrules/`` and ``GET /pushrules/global/`` are also
served without their trailing slash (the spec writes the slash; matrix-js-sdk 37.5 requests
``/pushrules/`` with it, and a redirect would not help any client). Errors:

- an unknown ``kind``: ``400 M_INVALID_PARAM``;
- an unknown rule: ``404 M_NOT_FOUND`` ("The push rule was not found.");
- ``PUT`` of a rule ID starting with ``.`` or holding ``/`` or ``\\``, or a room (sender) rule
  whose ID is not a room (user) ID: ``400 M_INVALID_PARAM``;
- ``before``/``after`` naming no user rule of that kind: ``400 M_UNKNOWN``, as the spec's
  example ("before/after rule not found: someRuleId");
- bodies: ``M_NOT_JSON`` / ``M_BAD_JSON`` / ``M_MISSING_PARAM`` / ``M_INVALID_PARAM``.
"""

from __future__ import annotations

from quart import request

from homeserver.api._http import JsonDict, read_json_body, route
from homeserver.errors import BadJson, MissingParam
from homeserver.services.push_rules import PushRulesService
from homeserver.services.push_ruleset import (
    PushRule,
    check_kind,
    check_new_rule_id,
    parse_actions,
)
from homeserver.services.requester import Requester

__all__ = ["PushRulesApi"]

_RULE = "/_matrix/client/v3/pushrules/global/{kind}/{rule_id}"
#: ``{rule_id:path}`` lets a rule ID with a ``/`` (``%2F``) reach ``PUT``, to be refused as the
#: spec asks (``400 M_INVALID_PARAM``) instead of ``404 M_UNRECOGNIZED``.
_ANY_RULE = "/_matrix/client/v3/pushrules/global/{kind}/{rule_id:path}"


def _query(name: str) -> str | None:
    """A query parameter; empty counts as absent."""
    return request.args.get(name) or None


class PushRulesApi:
    """``/pushrules/`` and ``/pushrules/global/...``.

    Args:
        push_rules: the push rules service.
        max_body_bytes: the body limit of ``PUT``.
    """

    def __init__(self, push_rules: PushRulesService, max_body_bytes: int) -> None:
        self._push_rules = push_rules
        self._max_body = max_body_bytes

    @route("GET", "/_matrix/client/v3/pushrules/", auth="user")
    @route("GET", "/_matrix/client/v3/pushrules", auth="user")
    async def get_push_rules(self, requester: Requester) -> JsonDict:
        """GET /_matrix/client/v3/pushrules/.

        Spec: client-server-api/#get_matrixclientv3pushrules. "Retrieve all push rulesets for
        this user. Currently the only push ruleset defined is ``global``."
        """
        return {"global": await self._push_rules.ruleset(requester)}

    @route("GET", "/_matrix/client/v3/pushrules/global/", auth="user")
    @route("GET", "/_matrix/client/v3/pushrules/global", auth="user")
    async def get_global_push_rules(self, requester: Requester) -> JsonDict:
        """GET /_matrix/client/v3/pushrules/global/.

        Spec: client-server-api/#get_matrixclientv3pushrulesglobal. "Retrieve all push rules
        for this user."
        """
        return await self._push_rules.ruleset(requester)

    @route("GET", _ANY_RULE, auth="user")
    async def get_push_rule(self, requester: Requester, kind: str, rule_id: str) -> JsonDict:
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.

        Spec: client-server-api/#get_matrixclientv3pushrulesglobalkindruleid. "Retrieve a
        single specified push rule."
        """
        rule = await self._push_rules.get_rule(requester, check_kind(kind), rule_id)
        return rule.to_json()

    @route("PUT", _ANY_RULE, auth="user", rate_limit="client_default")
    async def put_push_rule(self, requester: Requester, kind: str, rule_id: str) -> JsonDict:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.

        Spec: client-server-api/#put_matrixclientv3pushrulesglobalkindruleid. "This endpoint
        allows the creation and modification of user defined push rules. If a rule with the
        same ``rule_id`` already exists among rules of the same kind, it is updated with the
        new parameters, otherwise a new rule is created." ``before`` wins over ``after``; a
        new rule without either becomes the most important user rule of its kind.
        """
        check_kind(kind)
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

    @route("DELETE", _ANY_RULE, auth="user", rate_limit="client_default")
    async def delete_push_rule(self, requester: Requester, kind: str, rule_id: str) -> JsonDict:
        """DELETE /_matrix/client/v3/pushrules/global/{kind}/{ruleId}.

        Spec: client-server-api/#delete_matrixclientv3pushrulesglobalkindruleid. "This
        endpoint removes the push rule defined in the path." Server-default rules cannot be
        removed (404, as for any rule the user does not have).
        """
        await self._push_rules.delete_rule(requester, check_kind(kind), rule_id)
        return {}

    @route("GET", _RULE + "/enabled", auth="user")
    async def get_enabled(self, requester: Requester, kind: str, rule_id: str) -> JsonDict:
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled.

        Spec: client-server-api/#get_matrixclientv3pushrulesglobalkindruleidenabled. "This
        endpoint gets whether the specified push rule is enabled."
        """
        rule = await self._push_rules.get_rule(requester, check_kind(kind), rule_id)
        return {"enabled": rule.enabled}

    @route("PUT", _RULE + "/enabled", auth="user", rate_limit="client_default")
    async def put_enabled(self, requester: Requester, kind: str, rule_id: str) -> JsonDict:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/enabled.

        Spec: client-server-api/#put_matrixclientv3pushrulesglobalkindruleidenabled. "This
        endpoint allows clients to enable or disable the specified push rule."
        """
        check_kind(kind)
        body = await read_json_body(self._max_body)
        if "enabled" not in body:
            raise MissingParam("'enabled' is required")
        enabled = body["enabled"]
        if not isinstance(enabled, bool):
            raise BadJson("'enabled' must be a boolean")
        await self._push_rules.set_enabled(requester, kind, rule_id, enabled)
        return {}

    @route("GET", _RULE + "/actions", auth="user")
    async def get_actions(self, requester: Requester, kind: str, rule_id: str) -> JsonDict:
        """GET /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions.

        Spec: client-server-api/#get_matrixclientv3pushrulesglobalkindruleidactions. "This
        endpoint get the actions for the specified push rule."
        """
        rule = await self._push_rules.get_rule(requester, check_kind(kind), rule_id)
        return {"actions": rule.to_json()["actions"]}

    @route("PUT", _RULE + "/actions", auth="user", rate_limit="client_default")
    async def put_actions(self, requester: Requester, kind: str, rule_id: str) -> JsonDict:
        """PUT /_matrix/client/v3/pushrules/global/{kind}/{ruleId}/actions.

        Spec: client-server-api/#put_matrixclientv3pushrulesglobalkindruleidactions. "This
        endpoint allows clients to change the actions of a push rule. This can be used to
        change the actions of builtin rules."
        """
        check_kind(kind)
        body = await read_json_body(self._max_body)
        if "actions" not in body:
            raise MissingParam("'actions' is required")
        actions = parse_actions(body["actions"])
        await self._push_rules.set_actions(requester, kind, rule_id, actions)
        return {}
