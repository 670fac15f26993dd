"""The user directory: ``POST /user_directory/search``.

Spec: ``users.yaml`` (``POST /user_directory/search``): "The homeserver may determine which
subset of users are searched. However, the homeserver MUST at a minimum consider users who are
visible to the requester based on their membership in rooms known to the homeserver": users
that share a room with the requester, and users joined to rooms with a ``public`` join rule or
``world_readable`` history visibility. That is what is searched: local accounts,
neither deactivated nor guests, joined to a room the searcher has joined or to a public room
(join rule ``public`` or history visibility ``world_readable``). ``user_directory.
search_all_users`` searches every local account instead. Users of other servers joined to
those rooms are found by their member events. See :mod:`homeserver.storage.user_directory` for
the queries and their cost.
"""

from __future__ import annotations

from dataclasses import dataclass

from homeserver.errors import InvalidParam
from homeserver.storage.user_directory import DirectoryEntry, UserDirectoryStore

__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "DirectoryEntry", "SearchResult", "UserDirectoryService"]

#: The spec's default number of results.
DEFAULT_LIMIT = 10
#: The most results one search returns, whatever the client asks.
MAX_LIMIT = 50


@dataclass(frozen=True, slots=True)
class SearchResult:
    """The matching users and whether there were more than the limit."""

    results: tuple[DirectoryEntry, ...]
    limited: bool


class UserDirectoryService:
    """Search users.

    Args:
        store: the directory query.
        search_all_users: ``user_directory.search_all_users``: every local user is found, not
            only those sharing a room with the searcher or in a public room.
    """

    def __init__(self, store: UserDirectoryStore, *, search_all_users: bool = False) -> None:
        self._store = store
        self._search_all = search_all_users

    async def search(self, searcher: str, term: str, limit: int = DEFAULT_LIMIT) -> SearchResult:
        """Users ``searcher`` may find whose ID or display name contains ``term``,
        case-insensitively.

        Raises:
            InvalidParam: ``limit`` is negative.
        """
        if limit < 0:
            raise InvalidParam("limit must not be negative")
        limit = min(limit, MAX_LIMIT)
        term = term.strip()
        if not term:
            return SearchResult((), False)
        if self._search_all:
            entries, limited = await self._store.search(term, limit=limit)
        else:
            entries, limited = await self._store.search_visible(searcher, term, limit=limit)
        return SearchResult(tuple(entries), limited)
