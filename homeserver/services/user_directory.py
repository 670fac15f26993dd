"""The user directory: ``POST /user_directory/search``.

Spec: client-server-api/_index.md › User Directory. The spec lets the server choose which users
are searched as long as those visible through shared and public rooms are included; until rooms
exist this searches every local account that is neither deactivated nor a guest (see
:mod:`homeserver.storage.user_directory` for the query and its cost). Remote users come with
federation.
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
    """

    def __init__(self, store: UserDirectoryStore) -> None:
        self._store = store

    async def search(self, term: str, limit: int = DEFAULT_LIMIT) -> SearchResult:
        """Users whose ID or display name contains ``term``, case-insensitively.

        Raises:
            InvalidParam: ``limit`` is negative.
        """
        if limit < 0:
            raise InvalidParam("limit must not be negative")
        limit = min(limit, MAX_LIMIT)
        term = term.strip()
        if not term:
            return SearchResult((), False)
        entries, limited = await self._store.search(term, limit=limit)
        return SearchResult(tuple(entries), limited)
