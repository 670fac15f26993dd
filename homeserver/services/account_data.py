"""Account data (global and per room) and room tags.

Spec: client-server-api/modules/account_data.md and modules/tags.md.

- Only the owner may read or write their account data (``403 M_FORBIDDEN``).
- ``m.fully_read`` and ``m.push_rules`` are managed by the server: setting them here is
  ``405 M_BAD_JSON`` (spec: "Servers MUST reject setting account data for event types that the
  server manages by using a 405 error response"); reading them works as for any type.
- Room tags live in the room's ``m.tag`` account data as ``{"tags": {tag: {...}}}``; each tag
  change is a read-modify-write of that content in one transaction.
- Every write takes the next ``ACCOUNT_DATA`` stream position in its transaction, so ``/sync``
  can hand out what changed after a token. (The notifier that wakes waiting ``/sync`` requests
  will be called here once it exists.)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from federation.core.errors import InvalidIdentifier
from federation.core.ids import parse_room_id
from homeserver.errors import Codes, Forbidden, InvalidParam, MatrixError, NotFound
from homeserver.services.notifier import Notifier
from homeserver.services.requester import Requester
from homeserver.storage.account_data import GLOBAL, AccountDataStore
from homeserver.streams import StreamName

__all__ = ["SERVER_MANAGED_TYPES", "TAG_TYPE", "AccountDataService", "Tag"]

#: Account data types only the server may set (spec, v1.10).
SERVER_MANAGED_TYPES = frozenset({"m.fully_read", "m.push_rules"})
#: The room account data type that holds tags.
TAG_TYPE = "m.tag"
#: The spec's limit on a tag name, in bytes.
MAX_TAG_BYTES = 255
#: Our limit on an account data type, in bytes (like event types).
MAX_TYPE_BYTES = 255

JsonObject = Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Tag:
    """A tag's data: ``order`` in [0, 1] (or absent), plus any other keys the client sent."""

    order: float | None = None
    extra: JsonObject = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out = dict(self.extra)
        if self.order is not None:
            out["order"] = self.order
        return out


def _check_owner(requester: Requester, user_id: str) -> None:
    if requester.user_id != user_id:
        raise Forbidden("Cannot access account data of other users")


def _check_room_id(room_id: str) -> None:
    try:
        parse_room_id(room_id)
    except InvalidIdentifier:
        raise InvalidParam(f"{room_id!r} is not a valid room ID") from None


def _check_type(data_type: str, *, writing: bool) -> None:
    if not data_type or len(data_type.encode()) > MAX_TYPE_BYTES:
        raise InvalidParam(f"Account data types are 1 to {MAX_TYPE_BYTES} bytes")
    if writing and data_type in SERVER_MANAGED_TYPES:
        raise MatrixError(405, Codes.BAD_JSON, f"Cannot set {data_type} through this API")


class AccountDataService:
    """Read and write account data and tags.

    Args:
        store: the account data store.
        notifier: told after each committed write, so the owner's ``/sync`` wakes.
    """

    def __init__(
        self,
        store: AccountDataStore,
        notifier: Notifier | None = None,
        *,
        on_global_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self._store = store
        self._notifier = notifier
        #: told (user ID, type) after a global entry is written (presence: last-seen privacy)
        self._on_global_change = on_global_change

    def _written(self, user_id: str, position: int | None) -> None:
        if position is not None and self._notifier is not None:
            self._notifier.notify(StreamName.ACCOUNT_DATA, position, user_ids=(user_id,))

    async def get(
        self, requester: Requester, user_id: str, data_type: str, room_id: str | None = None
    ) -> JsonObject:
        """The content of one entry (global when ``room_id`` is None).

        Raises:
            Forbidden: not the requester's data.
            InvalidParam: bad room ID or type.
            NotFound: never set.
        """
        _check_owner(requester, user_id)
        _check_type(data_type, writing=False)
        if room_id is not None:
            _check_room_id(room_id)
        content = await self._store.get(user_id, GLOBAL if room_id is None else room_id, data_type)
        if content is None:
            raise NotFound("Room account data not found" if room_id else "Account data not found")
        return content

    async def put(
        self,
        requester: Requester,
        user_id: str,
        data_type: str,
        content: JsonObject,
        room_id: str | None = None,
    ) -> int:
        """Set one entry; return its ACCOUNT_DATA stream position.

        Raises:
            Forbidden: not the requester's data.
            InvalidParam: bad room ID or type.
            MatrixError: 405 ``M_BAD_JSON`` for a server-managed type.
        """
        _check_owner(requester, user_id)
        _check_type(data_type, writing=True)
        if room_id is not None:
            _check_room_id(room_id)
        position = await self._store.put(
            user_id, GLOBAL if room_id is None else room_id, data_type, content
        )
        self._written(user_id, position)
        if room_id is None and self._on_global_change is not None:
            self._on_global_change(user_id, data_type)
        return position

    # --- tags ------------------------------------------------------------------------------------

    async def get_tags(self, requester: Requester, user_id: str, room_id: str) -> JsonObject:
        """The room's tags: ``{tag: {...}}`` (empty when none)."""
        _check_owner(requester, user_id)
        _check_room_id(room_id)
        content = await self._store.get(user_id, room_id, TAG_TYPE)
        tags = (content or {}).get("tags")
        return tags if isinstance(tags, Mapping) else {}

    async def add_tag(
        self, requester: Requester, user_id: str, room_id: str, tag: str, data: Tag
    ) -> None:
        """Add or replace a tag.

        Raises:
            Forbidden: not the requester's data.
            InvalidParam: bad room ID, tag name over 255 bytes, or ``order`` outside [0, 1].
        """
        _check_owner(requester, user_id)
        _check_room_id(room_id)
        _check_tag(tag)
        if data.order is not None and not 0 <= data.order <= 1:
            raise InvalidParam("order must be a number between 0 and 1")
        value = data.to_json()

        def change(current: JsonObject | None) -> JsonObject:
            tags = _tags_of(current)
            tags[tag] = value
            return {**(current or {}), "tags": tags}

        self._written(user_id, await self._store.modify(user_id, room_id, TAG_TYPE, change))

    async def remove_tag(self, requester: Requester, user_id: str, room_id: str, tag: str) -> None:
        """Remove a tag (removing an absent tag is fine and writes nothing)."""
        _check_owner(requester, user_id)
        _check_room_id(room_id)
        _check_tag(tag)

        def change(current: JsonObject | None) -> JsonObject | None:
            tags = _tags_of(current)
            if tag not in tags:
                return None
            del tags[tag]
            return {**(current or {}), "tags": tags}

        self._written(user_id, await self._store.modify(user_id, room_id, TAG_TYPE, change))


def _check_tag(tag: str) -> None:
    if not tag or len(tag.encode()) > MAX_TAG_BYTES:
        raise InvalidParam(f"Tag names are 1 to {MAX_TAG_BYTES} bytes")


def _tags_of(content: JsonObject | None) -> dict[str, Any]:
    tags = (content or {}).get("tags")
    return dict(tags) if isinstance(tags, Mapping) else {}
