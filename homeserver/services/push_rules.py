"""Push rules: read and edit a user's global ruleset.

Spec: client-server-api/modules/push.md › Push Rules: API and Push Rules: Events;
``pushrules.yaml``.

Storage is the ``m.push_rules`` global account data entry itself: its content is the user's
whole effective ruleset ``{"global": {...}}`` (:mod:`homeserver.services.push_ruleset` reads
the user's rules and their changes to default rules back out of it). Every edit is one
read-modify-write transaction of that entry (:meth:`AccountDataStore.modify`, which takes the
next ``ACCOUNT_DATA`` stream position), so concurrent edits cannot lose each other, and the
owner's ``/sync`` is woken with that position: "When a user changes their push rules a
``m.push_rules`` event is sent to all clients in the ``account_data`` section of their next
``/sync`` request." An edit that changes nothing writes nothing.

A user who never changed a rule has nothing stored: reads compute the defaults on the fly, and
``/sync`` shows :func:`default_push_rules_event` on an initial sync. Clients cannot write
``m.push_rules`` through the account data API (405: :mod:`homeserver.services.account_data`).

Guests have no push rules API (it is not on the spec's list of endpoints guests may use):
``403 M_GUEST_ACCESS_FORBIDDEN``.

Evaluating the rules: :mod:`homeserver.services.push_evaluator`, used for the unread counts
in ``/sync`` (:mod:`homeserver.services.notification_counts`). Not here yet: pushers.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from homeserver.errors import Codes, MatrixError
from homeserver.services.notifier import Notifier
from homeserver.services.push_ruleset import (
    PUSH_RULES_TYPE,
    PushRule,
    PushRuleset,
    default_push_rules_event,
    push_rules_event,
)
from homeserver.services.requester import Requester
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.streams import StreamName

__all__ = ["PushRulesService", "default_push_rules_event", "push_rules_event"]

JsonDict = dict[str, Any]


def _check_not_guest(requester: Requester) -> None:
    if requester.is_guest:
        raise MatrixError(403, Codes.GUEST_ACCESS_FORBIDDEN, "Guest accounts cannot use push rules")


class PushRulesService:
    """The requester's own push rules (only the global ruleset exists).

    Args:
        account_data: where the ruleset is stored (``m.push_rules`` global account data).
        notifier: told the ``ACCOUNT_DATA`` position of each committed change, for the owner.
    """

    def __init__(
        self,
        account_data: AccountDataStore,
        notifier: Notifier | None = None,
        on_change: Callable[[str], None] | None = None,
    ) -> None:
        self._store = account_data
        self._notifier = notifier
        self._on_change = on_change

    async def _load(self, requester: Requester) -> PushRuleset:
        _check_not_guest(requester)
        stored = await self._store.get(requester.user_id, GLOBAL, PUSH_RULES_TYPE)
        return PushRuleset.from_content(requester.user_id, stored)

    async def _edit(self, requester: Requester, edit: Callable[[PushRuleset], PushRuleset]) -> None:
        """Apply ``edit`` (pure; may run more than once) in one transaction, then notify."""
        _check_not_guest(requester)
        await self._edit_user(requester.user_id, edit)

    async def _edit_user(self, user_id: str, edit: Callable[[PushRuleset], PushRuleset]) -> None:

        def change(current: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
            before = PushRuleset.from_content(user_id, current)
            after = edit(before).to_content()
            if current is not None and after == current:
                return None
            if current is None and after == before.to_content():
                return None
            return after

        position = await self._store.modify(user_id, GLOBAL, PUSH_RULES_TYPE, change)
        if position is not None and self._on_change is not None:
            self._on_change(user_id)
        if position is not None and self._notifier is not None:
            self._notifier.notify(StreamName.ACCOUNT_DATA, position, user_ids=(user_id,))

    # --- reading

    async def ruleset(self, requester: Requester) -> JsonDict:
        """The global ruleset (``push_ruleset.yaml``), every kind in effective order."""
        return (await self._load(requester)).to_json()

    async def get_rule(self, requester: Requester, kind: str, rule_id: str) -> PushRule:
        """One rule.

        Raises:
            NotFound: no rule ``rule_id`` of ``kind``.
        """
        return (await self._load(requester)).get(kind, rule_id)

    # --- editing

    async def put_rule(
        self,
        requester: Requester,
        kind: str,
        rule: PushRule,
        *,
        before: str | None = None,
        after: str | None = None,
    ) -> None:
        """Create or update a user rule (its ID checked by the caller).

        Raises:
            MatrixError: ``400 M_UNKNOWN`` when ``before``/``after`` is not a user rule of
                ``kind``.
        """
        await self._edit(requester, lambda rs: rs.with_rule(kind, rule, before=before, after=after))

    async def delete_rule(self, requester: Requester, kind: str, rule_id: str) -> None:
        """Remove a user rule.

        Raises:
            NotFound: no such user rule (server-default rules cannot be removed).
        """
        await self._edit(requester, lambda rs: rs.without_rule(kind, rule_id))

    async def set_enabled(
        self, requester: Requester, kind: str, rule_id: str, enabled: bool
    ) -> None:
        """Enable or disable a user or server-default rule.

        Raises:
            NotFound: no such rule.
        """
        await self._edit(requester, lambda rs: rs.with_enabled(kind, rule_id, enabled))

    async def set_actions(
        self, requester: Requester, kind: str, rule_id: str, actions: tuple[Any, ...]
    ) -> None:
        """Set the actions of a user or server-default rule.

        Raises:
            NotFound: no such rule.
        """
        await self._edit(requester, lambda rs: rs.with_actions(kind, rule_id, actions))

    async def copy_room_rules(self, user_id: str, old_room_id: str, new_room_id: str) -> None:
        """Copy ``user_id``'s rules about ``old_room_id`` to ``new_room_id`` (a room upgrade;
        :meth:`PushRuleset.with_room_rules_copied`). Writes nothing when there is none."""
        await self._edit_user(
            user_id, lambda rs: rs.with_room_rules_copied(old_room_id, new_room_id)
        )
