"""Room aliases and the published room directory.

Spec: client-server-api/_index.md › Room aliases (``directory.yaml``: ``PUT/GET/DELETE
/directory/room/{roomAlias}``, ``GET /rooms/{roomId}/aliases``), › Published room directory
(``list_public_rooms.yaml``: ``GET/PUT /directory/list/room/{roomId}``, ``GET/POST
/publicRooms``), and ``PUT /rooms/{roomId}/state/m.room.canonical_alias`` (``M_BAD_ALIAS``,
``room_state.yaml``).

Who may do what (the spec leaves these to the server; we follow Synapse):

- create an alias: anyone joined to the room (``require_membership_for_aliases``), or a
  server admin; only on our own server name.
- delete an alias: its creator, a server admin, or a joined member who may send
  ``m.room.canonical_alias`` in the room.
- publish a room or take it out of the directory: a server admin, or (``publish:
  room_moderators``) a joined member who may send ``m.room.canonical_alias``.
- list a room's local aliases: its joined members, anyone if it is ``world_readable``, and
  server admins.

``GET /publicRooms`` lists published rooms whose join rule lets people in (``public``,
``knock``, ``knock_restricted``) or that are ``world_readable``, largest first; pages are
addressed by opaque tokens holding the (members, room ID) key of the page's edge, so paging
is stable while rooms come and go. Filters (``generic_search_term``, ``room_types``) are
applied while scanning the ordered list in batches.

Deleting an alias also takes it out of the room's ``m.room.canonical_alias`` (``alias`` and
``alt_aliases``), sent as the deleting user, as Synapse does; if they may not send it, the
alias is still deleted.

Other servers' aliases and directories need federation queries: :class:`RemoteDirectory` is
that port; without it a remote alias is not found and a remote directory is ``502``.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from federation.core.errors import InvalidIdentifier
from federation.core.events import Event, StateKey
from federation.core.ids import (
    RoomAlias,
    is_valid_server_name,
    parse_room_alias,
    parse_room_id,
    parse_user_id,
)
from federation.core.power_levels import get_power_level, get_required_power_level
from federation.core.room_versions import get_room_version
from homeserver.clock import Clock
from homeserver.config import RoomDirectoryConfig
from homeserver.errors import Codes, Forbidden, InvalidParam, MatrixError, NotFound
from homeserver.services.requester import Requester
from homeserver.storage.events import EventStore
from homeserver.storage.room_aliases import AliasExists, RoomAliasStore
from homeserver.storage.room_directory import (
    FIRST,
    DirectoryKey,
    RoomDirectoryStore,
    RoomSummaryRow,
)

__all__ = [
    "BAD_ALIAS",
    "DirectoryService",
    "PublicRoomsPage",
    "PublicRoomsQuery",
    "PublishedRoom",
    "RemoteDirectory",
    "StateSender",
]

logger = logging.getLogger(__name__)

#: Spec (``room_state.yaml``): an alias in ``m.room.canonical_alias`` does not point to the room.
BAD_ALIAS = "M_BAD_ALIAS"

#: Join rules under which a published room is listed (besides ``world_readable`` rooms).
_LISTED_JOIN_RULES = frozenset({"public", "knock", "knock_restricted"})
_DEFAULT_LIMIT = 100
_MAX_LIMIT = 500
_MAX_BATCH = 200


class StateSender(Protocol):
    """Sends a state event as a user (the event creation path)."""

    async def create_event(
        self,
        room_id: str,
        *,
        sender: str,
        event_type: str,
        content: Mapping[str, Any],
        state_key: str | None = None,
    ) -> object:
        """Build, authorise and persist the event.

        Raises:
            MatrixError: refused (e.g. ``403`` by the auth rules).
        """
        ...


@dataclass(frozen=True, slots=True)
class PublicRoomsQuery:
    """The parameters of ``GET/POST /publicRooms``."""

    limit: int | None = None
    since: str | None = None
    server: str | None = None
    generic_search_term: str | None = None
    #: None: every room type; else the room types wanted (None in it: rooms without a type)
    room_types: tuple[str | None, ...] | None = None
    include_all_networks: bool = False
    third_party_instance_id: str | None = None


@dataclass(frozen=True, slots=True)
class PublishedRoom:
    """One ``PublishedRoomsChunk``: the spec's fields only (None: omitted)."""

    room_id: str
    num_joined_members: int
    world_readable: bool
    guest_can_join: bool
    name: str | None = None
    topic: str | None = None
    avatar_url: str | None = None
    canonical_alias: str | None = None
    join_rule: str | None = None
    room_type: str | None = None


@dataclass(frozen=True, slots=True)
class PublicRoomsPage:
    chunk: list[PublishedRoom]
    next_batch: str | None
    prev_batch: str | None
    total_room_count_estimate: int | None


class RemoteDirectory(Protocol):
    """Federation queries about other servers' aliases and directories (the federation client
    implements it: ``GET /_matrix/federation/v1/query/directory``, ``/publicRooms``)."""

    async def query_alias(self, alias: str) -> tuple[str, list[str]] | None:
        """The (room ID, servers) ``alias`` points to on its server, or None."""
        ...

    async def public_rooms(self, server: str, query: PublicRoomsQuery) -> PublicRoomsPage:
        """``server``'s published rooms.

        Raises:
            MatrixError: the server could not be asked (``502``).
        """
        ...


def _string(content: Mapping[str, Any] | None, key: str) -> str | None:
    value = None if content is None else content.get(key)
    return value if isinstance(value, str) and value else None


def published_room(key: DirectoryKey, summary: RoomSummaryRow) -> PublishedRoom:
    """A directory entry from the room's current state."""
    state = summary.state
    history = _string(state.get("m.room.history_visibility"), "history_visibility")
    guests = _string(state.get("m.room.guest_access"), "guest_access")
    return PublishedRoom(
        room_id=key.room_id,
        num_joined_members=key.joined_members,
        world_readable=history == "world_readable",
        guest_can_join=guests == "can_join",
        name=_string(state.get("m.room.name"), "name"),
        topic=_string(state.get("m.room.topic"), "topic"),
        avatar_url=_string(state.get("m.room.avatar"), "url"),
        canonical_alias=_string(state.get("m.room.canonical_alias"), "alias"),
        join_rule=_string(state.get("m.room.join_rules"), "join_rule"),
        room_type=_string(state.get("m.room.create"), "type"),
    )


def _listed(room: PublishedRoom) -> bool:
    return room.world_readable or (room.join_rule or "public") in _LISTED_JOIN_RULES


def _matcher(query: PublicRoomsQuery) -> Callable[[PublishedRoom], bool]:
    term = (query.generic_search_term or "").strip().casefold()
    types = None if query.room_types is None else frozenset(query.room_types)

    def matches(room: PublishedRoom) -> bool:
        if not _listed(room):
            return False
        if types is not None and room.room_type not in types:
            return False
        if term:
            fields = (room.name, room.topic, room.canonical_alias)
            return any(f is not None and term in f.casefold() for f in fields)
        return True

    return matches


def _encode_token(direction: str, key: DirectoryKey) -> str:
    raw = json.dumps([direction, key.joined_members, key.room_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_token(token: str) -> tuple[bool, DirectoryKey]:
    """``since`` → (backwards, key).

    Raises:
        InvalidParam: not a token of ours.
    """
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        direction, joined, room_id = json.loads(raw)
        if direction not in ("n", "p") or not isinstance(room_id, str):
            raise ValueError(token)
        if not isinstance(joined, int) or isinstance(joined, bool):
            raise ValueError(token)
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidParam("Invalid pagination token in 'since'") from None
    return direction == "p", DirectoryKey(joined, room_id)


class DirectoryService:
    """Room aliases, directory visibility and the published room list.

    Args:
        aliases: the alias store.
        directory: visibility and the published-rooms listing.
        events: room state (membership, power levels) for permission checks.
        clock: alias creation times.
        server_name: our server name; only aliases on it are hosted here.
        config: ``room_directory`` configuration.
        remote: federation queries for other servers (None until federation exists).
    """

    def __init__(
        self,
        aliases: RoomAliasStore,
        directory: RoomDirectoryStore,
        events: EventStore,
        clock: Clock,
        *,
        server_name: str,
        config: RoomDirectoryConfig,
        remote: RemoteDirectory | None = None,
    ) -> None:
        self._aliases = aliases
        self._directory = directory
        self._events = events
        self._clock = clock
        self._server_name = server_name
        self._config = config
        self._remote = remote
        self._state_sender: StateSender | None = None

    def set_state_sender(self, sender: StateSender) -> None:
        """Send ``m.room.canonical_alias`` updates through ``sender`` (the event creation
        path; wired once by the composition root, which builds it after this service)."""
        self._state_sender = sender

    # --- aliases: the protocol the room service uses ----------------------------------------------

    async def resolve_alias(self, alias: str) -> tuple[str, list[str]] | None:
        """The room ``alias`` points to and servers that know the room; None if unknown.

        Raises:
            InvalidParam: ``alias`` is not a room alias.
        """
        parsed = _parse_alias(alias)
        if parsed.server_name != self._server_name:
            if self._remote is None:
                return None
            return await self._remote.query_alias(alias)
        row = await self._aliases.get_alias(alias)
        if row is None:
            return None
        return row.room_id, await self._servers_in_room(row.room_id)

    async def create_alias(self, alias: str, room_id: str, creator: str) -> None:
        """Point the local ``alias`` to ``room_id`` (no permission check: the caller's).

        Raises:
            InvalidParam: ``alias`` is malformed, not on our server, or its localpart has
                whitespace or control characters.
            MatrixError: ``409 M_UNKNOWN`` when the alias is taken.
        """
        self._new_local_alias(alias)
        try:
            await self._aliases.create_alias(alias, room_id, creator, self._clock.time_ms())
        except AliasExists:
            raise MatrixError(409, Codes.UNKNOWN, f"Room alias {alias} already exists.") from None

    async def alias_available(self, alias: str) -> bool:
        """True when the local ``alias`` is free.

        Raises:
            InvalidParam: ``alias`` is malformed or not on our server, or could not be made.
        """
        self._new_local_alias(alias)
        return await self._aliases.get_alias(alias) is None

    async def set_room_visibility(self, room_id: str, public: bool) -> None:
        """Publish the room in the directory or take it out (no permission check).

        Raises:
            NotFound: the room is unknown.
        """
        if not await self._directory.set_visibility(room_id, public):
            raise NotFound("Room not found")

    # --- aliases: the client API ------------------------------------------------------------------

    async def get_alias(self, alias: str) -> tuple[str, list[str]]:
        """``GET /directory/room/{roomAlias}``.

        Raises:
            InvalidParam: malformed alias.
            NotFound: no room for the alias.
        """
        found = await self.resolve_alias(alias)
        if found is None:
            raise NotFound(f"Room alias {alias} not found.")
        return found

    async def put_alias(self, requester: Requester, alias: str, room_id: str) -> None:
        """``PUT /directory/room/{roomAlias}``.

        Raises:
            InvalidParam: malformed or remote alias, or a malformed room ID.
            Forbidden: not joined to the room (``require_membership_for_aliases``).
            NotFound: unknown room.
            MatrixError: ``409 M_UNKNOWN``: the alias is taken.
        """
        self._local_alias(alias)
        try:
            parse_room_id(room_id)
        except InvalidIdentifier:
            raise InvalidParam(f"Invalid room ID {room_id!r}") from None
        if not requester.is_admin and self._config.require_membership_for_aliases:
            if await self._membership(room_id, requester.user_id) != "join":
                raise Forbidden("You must be in the room to create an alias for it")
        if await self._events.get_room(room_id) is None:
            raise NotFound("Room not found")
        await self.create_alias(alias, room_id, requester.user_id)

    async def delete_alias(self, requester: Requester, alias: str) -> None:
        """``DELETE /directory/room/{roomAlias}``: by its creator, a server admin, or a member
        who may send ``m.room.canonical_alias`` in the room.

        Raises:
            InvalidParam: malformed or remote alias.
            NotFound: no such alias.
            Forbidden: none of the above.
        """
        self._local_alias(alias)
        row = await self._aliases.get_alias(alias)
        if row is None:
            raise NotFound(f"Room alias {alias} not found.")
        if row.creator != requester.user_id and not await self._may_edit_room_directory(
            requester, row.room_id, admins_only=False
        ):
            raise Forbidden("You don't have permission to delete the alias.")
        if not await self._aliases.delete_alias(alias):
            raise NotFound(f"Room alias {alias} not found.")
        await self._drop_from_canonical_alias(requester.user_id, row.room_id, alias)

    async def _drop_from_canonical_alias(self, sender: str, room_id: str, alias: str) -> None:
        """Take a deleted ``alias`` out of the room's ``m.room.canonical_alias``, if it is
        there; a refusal (the sender may not send it) leaves the event as it is."""
        if self._state_sender is None:
            return
        current = await self._events.get_current_state_event(room_id, "m.room.canonical_alias", "")
        if current is None:
            return
        content = dict(current.event.content)
        changed = False
        if content.get("alias") == alias:
            del content["alias"]
            changed = True
        alt = content.get("alt_aliases")
        if isinstance(alt, list) and alias in alt:
            content["alt_aliases"] = [a for a in alt if a != alias]
            changed = True
        if not changed:
            return
        try:
            await self._state_sender.create_event(
                room_id,
                sender=sender,
                event_type="m.room.canonical_alias",
                content=content,
                state_key="",
            )
        except MatrixError as e:
            logger.info("alias %s deleted but m.room.canonical_alias kept: %s", alias, e.msg)

    async def local_aliases(self, requester: Requester, room_id: str) -> list[str]:
        """``GET /rooms/{roomId}/aliases``: members, anyone when world-readable, server admins.

        Raises:
            Forbidden: none of those (also for unknown rooms: existence is not revealed).
        """
        if not requester.is_admin and not await self._may_peek(requester.user_id, room_id):
            raise Forbidden("You are not a member of the room.")
        return await self._aliases.aliases_for_room(room_id)

    async def move_aliases(self, old_room_id: str, new_room_id: str) -> list[str]:
        """Point every local alias of ``old_room_id`` to ``new_room_id`` (room upgrades)."""
        return await self._aliases.move_aliases(old_room_id, new_room_id)

    async def check_canonical_alias(self, room_id: str, content: Mapping[str, Any]) -> None:
        """Validate a new ``m.room.canonical_alias`` content before it is sent.

        Aliases that the previous event of the room did not list must exist and point to
        ``room_id``; ones already listed are not re-checked (aliases drift, and an edit of
        ``alt_aliases`` must not fail because the main alias was deleted since).

        Raises:
            InvalidParam: ``alias`` is not a string or ``alt_aliases`` not a list of strings,
                or one is not a valid alias.
            MatrixError: ``400 M_BAD_ALIAS``: an alias does not point to the room.
        """
        previous = await self._events.get_current_state_event(room_id, "m.room.canonical_alias", "")
        old: Mapping[str, Any] = previous.event.content if previous is not None else {}
        added: list[str] = []
        alias = content.get("alias")
        if alias is not None:
            if not isinstance(alias, str):
                raise InvalidParam("'alias' must be a string")
            if alias and alias != old.get("alias"):
                added.append(alias)
        alt = content.get("alt_aliases")
        if alt is not None:
            if not isinstance(alt, list) or not all(isinstance(a, str) for a in alt):
                raise InvalidParam("'alt_aliases' must be a list of strings")
            old_alt = old.get("alt_aliases")
            known = set(old_alt) if isinstance(old_alt, list) else set()
            added.extend(a for a in alt if a not in known)
        for new_alias in dict.fromkeys(added):
            found = await self.resolve_alias(new_alias)
            if found is None or found[0] != room_id:
                raise MatrixError(
                    400, BAD_ALIAS, f"The alias {new_alias!r} does not point to this room."
                )

    # --- directory visibility ---------------------------------------------------------------------

    async def get_visibility(self, room_id: str) -> bool:
        """``GET /directory/list/room/{roomId}``: whether the room is published.

        Raises:
            NotFound: the room is unknown.
        """
        public = await self._directory.get_visibility(room_id)
        if public is None:
            raise NotFound("Room not found")
        return public

    async def put_visibility(self, requester: Requester, room_id: str, public: bool) -> None:
        """``PUT /directory/list/room/{roomId}``.

        Raises:
            NotFound: the room is unknown.
            Forbidden: see :meth:`check_may_publish`.
        """
        if await self._directory.get_visibility(room_id) is None:
            raise NotFound("Room not found")
        await self.check_may_publish(requester, room_id)
        await self.set_room_visibility(room_id, public)

    async def check_may_publish(self, requester: Requester, room_id: str) -> None:
        """Whether ``requester`` may change the room's directory visibility: a server admin,
        or with ``publish: room_moderators`` a joined member who may send
        ``m.room.canonical_alias`` (the room service asks this for ``createRoom``).

        Raises:
            Forbidden: may not.
        """
        admins_only = self._config.publish == "server_admins"
        if not await self._may_edit_room_directory(requester, room_id, admins_only=admins_only):
            raise Forbidden("You are not allowed to publish this room to the room directory")

    # --- the published room list ------------------------------------------------------------------

    async def public_rooms(self, query: PublicRoomsQuery) -> PublicRoomsPage:
        """``GET/POST /publicRooms``: a page of the published room list.

        Raises:
            InvalidParam: bad ``limit``, ``since``, ``server``, or ``third_party_instance_id``
                together with ``include_all_networks``.
            MatrixError: ``502`` for another server's directory while it cannot be asked.
        """
        if query.limit is not None and query.limit < 0:
            raise InvalidParam("'limit' must not be negative")
        if query.include_all_networks and query.third_party_instance_id is not None:
            raise InvalidParam("Cannot use include_all_networks with a third_party_instance_id")
        if query.server is not None and query.server != self._server_name:
            if not is_valid_server_name(query.server):
                raise InvalidParam(f"Invalid server name {query.server!r}")
            if self._remote is None:
                raise MatrixError(
                    502,
                    Codes.UNKNOWN,
                    f"Cannot fetch the room directory of {query.server}: "
                    "federation is not available",
                )
            return await self._remote.public_rooms(query.server, query)
        backwards, key = (False, FIRST) if query.since is None else _decode_token(query.since)
        total = await self._directory.count_published()
        if query.third_party_instance_id is not None:
            return PublicRoomsPage([], None, None, 0)  # no application service networks here
        limit = min(query.limit or _DEFAULT_LIMIT, _MAX_LIMIT)
        found, more = await self._scan(key, backwards, limit, _matcher(query))
        next_batch = prev_batch = None
        if backwards:
            found.reverse()
            if found:
                next_batch = _encode_token("n", _key(found[-1]))
                if more:
                    prev_batch = _encode_token("p", _key(found[0]))
        elif found:
            if more:
                next_batch = _encode_token("n", _key(found[-1]))
            if query.since is not None:
                prev_batch = _encode_token("p", _key(found[0]))
        return PublicRoomsPage(found, next_batch, prev_batch, total)

    async def _scan(
        self,
        start: DirectoryKey,
        backwards: bool,
        want: int,
        matches: Callable[[PublishedRoom], bool],
    ) -> tuple[list[PublishedRoom], bool]:
        """Up to ``want`` matching rooms from ``start`` in directory order (reverse order when
        ``backwards``), and whether more match beyond them."""
        found: list[PublishedRoom] = []
        key = start
        batch_size = min(want + 1, _MAX_BATCH)
        while True:
            batch = await self._directory.list_published(key, backwards=backwards, limit=batch_size)
            summaries = await self._directory.get_summaries([k.room_id for k in batch])
            for k in batch:
                summary = summaries.get(k.room_id)
                if summary is None:
                    continue
                room = published_room(k, summary)
                if matches(room):
                    if len(found) == want:
                        return found, True
                    found.append(room)
            if len(batch) < batch_size:
                return found, False
            key = batch[-1]

    # --- helpers ----------------------------------------------------------------------------------

    def _local_alias(self, alias: str) -> RoomAlias:
        parsed = _parse_alias(alias)
        if not parsed.localpart:
            raise InvalidParam("Room alias invalid: empty localpart")
        if parsed.server_name != self._server_name:
            raise InvalidParam(f"Room alias must be on this server ({self._server_name})")
        return parsed

    def _new_local_alias(self, alias: str) -> RoomAlias:
        """A local alias this server makes: the grammar allows any code point but ``:`` and
        NUL in the localpart, but a new one may not hold whitespace or control characters
        (``#name\n:server`` would look like ``#name:server``), as ``room_alias_name`` may not.
        """
        parsed = self._local_alias(alias)
        if any(c.isspace() or not c.isprintable() for c in parsed.localpart):
            raise InvalidParam("Room alias invalid: whitespace or control characters")
        return parsed

    async def _servers_in_room(self, room_id: str) -> list[str]:
        """Our server first, then the other servers of joined members, sorted."""
        others: set[str] = set()
        for user_id, membership, _ in await self._events.get_members(room_id):
            if membership == "join":
                try:
                    others.add(parse_user_id(user_id).server_name)
                except InvalidIdentifier:
                    continue
        others.discard(self._server_name)
        return [self._server_name, *sorted(others)]

    async def _membership(self, room_id: str, user_id: str) -> str | None:
        event = await self._events.get_current_state_event(room_id, "m.room.member", user_id)
        if event is None:
            return None
        value = event.event.content.get("membership")
        return value if isinstance(value, str) else None

    async def _may_peek(self, user_id: str, room_id: str) -> bool:
        if await self._membership(room_id, user_id) == "join":
            return True
        hv = await self._events.get_current_state_event(room_id, "m.room.history_visibility", "")
        return hv is not None and hv.event.content.get("history_visibility") == "world_readable"

    async def _may_edit_room_directory(
        self, requester: Requester, room_id: str, *, admins_only: bool
    ) -> bool:
        """A server admin; else (unless ``admins_only``) a joined member whose power level
        allows sending ``m.room.canonical_alias`` (Synapse: ``check_can_change_room_list``)."""
        if requester.is_admin:
            return True
        if admins_only:
            return False
        room = await self._events.get_room(room_id)
        if room is None or await self._membership(room_id, requester.user_id) != "join":
            return False
        room_version = get_room_version(room.room_version)
        state: dict[StateKey, Event] = {}
        for key in (("m.room.create", ""), ("m.room.power_levels", "")):
            stored = await self._events.get_current_state_event(room_id, *key)
            if stored is not None:
                state[key] = stored.event
        needed = get_required_power_level(room_version, state, "m.room.canonical_alias", "")
        return get_power_level(room_version, state, requester.user_id) >= needed


def _key(room: PublishedRoom) -> DirectoryKey:
    return DirectoryKey(room.num_joined_members, room.room_id)


def _parse_alias(alias: str) -> RoomAlias:
    try:
        return parse_room_alias(alias)
    except InvalidIdentifier:
        raise InvalidParam("Room alias invalid") from None
