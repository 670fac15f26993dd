"""The users each user ignores (``m.ignored_user_list`` global account data).

Spec: client-server-api › Ignoring Users (``modules/ignore_users.md``): "Servers must not send
room invites from ignored users to clients", and events from ignored users are not sent in
``/sync`` timelines. What this module serves is read by ``/sync`` (timelines and invites).

The lists are a cache in front of the account data store: an entry is read on first use and
dropped by :meth:`IgnoredUsers.account_data_changed`, which the account data service calls on
every global account data write of this process (the only process that writes account data).
Malformed content (not an object under ``ignored_users``) ignores nobody.
"""

from __future__ import annotations

from homeserver.storage.account_data import GLOBAL, AccountDataStore

__all__ = ["IGNORED_USER_LIST", "IgnoredUsers"]

IGNORED_USER_LIST = "m.ignored_user_list"
#: Users whose list is kept (the cache is emptied when it is full).
_CACHE_SIZE = 100_000


class IgnoredUsers:
    """Who each user ignores.

    Args:
        account_data: the account data store.
    """

    def __init__(self, account_data: AccountDataStore) -> None:
        self._account_data = account_data
        self._cache: dict[str, frozenset[str]] = {}

    async def ignored_by(self, user_id: str) -> frozenset[str]:
        """The user IDs ``user_id`` ignores."""
        found = self._cache.get(user_id)
        if found is not None:
            return found
        content = await self._account_data.get(user_id, GLOBAL, IGNORED_USER_LIST)
        found = _parse(content)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[user_id] = found
        return found

    def account_data_changed(self, user_id: str, data_type: str) -> None:
        """A global account data write of ``user_id``: drop its entry if it is the list."""
        if data_type == IGNORED_USER_LIST:
            self._cache.pop(user_id, None)


def _parse(content: object) -> frozenset[str]:
    if not isinstance(content, dict):
        return frozenset()
    users = content.get("ignored_users")
    if not isinstance(users, dict):
        return frozenset()
    return frozenset(u for u in users if isinstance(u, str))
