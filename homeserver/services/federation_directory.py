"""Other servers' room aliases and published room lists, asked over federation.

Spec: server-server-api › Querying for information › ``GET /query/directory``, › Public Room
Directory. Implements :class:`~homeserver.services.directory.RemoteDirectory` for the
directory service: ``GET /directory/room/#alias:other.server``, joins by a remote alias and
``/publicRooms?server=other.server`` go through here.

Errors of the other server are never passed on as ours: "not found" there is "not found"
here (``None`` for an alias); an unreachable, refusing or broken server is ``502``
(``M_UNKNOWN``), and the client may try again. Answers are not cached (the spec allows a
cache; every lookup is one request today).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from federation.client import FederationClient
from federation.client.errors import FederationError, RemoteServerError
from federation.core.ids import parse_room_alias
from homeserver.errors import Codes, MatrixError
from homeserver.services.directory import PublicRoomsPage, PublicRoomsQuery, PublishedRoom

__all__ = ["FederatedDirectory"]


def _unavailable(server: str, exc: FederationError) -> MatrixError:
    return MatrixError(502, Codes.UNKNOWN, f"Could not ask {server}: {type(exc).__name__}")


def _room(chunk: Mapping[str, Any]) -> PublishedRoom | None:
    """A remote chunk as ours, or None when it lacks what the spec requires."""
    room_id = chunk.get("room_id")
    members = chunk.get("num_joined_members")
    if not isinstance(room_id, str) or isinstance(members, bool) or not isinstance(members, int):
        return None

    def text(key: str) -> str | None:
        value = chunk.get(key)
        return value if isinstance(value, str) else None

    return PublishedRoom(
        room_id=room_id,
        num_joined_members=members,
        world_readable=chunk.get("world_readable") is True,
        guest_can_join=chunk.get("guest_can_join") is True,
        name=text("name"),
        topic=text("topic"),
        avatar_url=text("avatar_url"),
        canonical_alias=text("canonical_alias"),
        join_rule=text("join_rule"),
        room_type=text("room_type"),
    )


class FederatedDirectory:
    """Remote aliases and directories through the federation client.

    Args:
        client: the federation client.
    """

    def __init__(self, client: FederationClient) -> None:
        self._client = client

    async def query_alias(self, alias: str) -> tuple[str, list[str]] | None:
        """The (room ID, servers) of ``alias`` on its own server, or None when it has none.

        Raises:
            MatrixError: 502, the server could not be asked.
        """
        server = parse_room_alias(alias).server_name
        try:
            found = await self._client.query_directory(server, alias)
        except RemoteServerError as exc:
            if exc.status == 404:
                return None
            raise _unavailable(server, exc) from exc
        except FederationError as exc:
            raise _unavailable(server, exc) from exc
        servers = list(dict.fromkeys([*found.servers, server]))
        return found.room_id, servers

    async def public_rooms(self, server: str, query: PublicRoomsQuery) -> PublicRoomsPage:
        """``server``'s published rooms (its chunks checked; malformed ones left out).

        Raises:
            MatrixError: 502, the server could not be asked.
        """
        try:
            page = await self._client.public_rooms(
                server,
                limit=query.limit,
                since=query.since,
                include_all_networks=query.include_all_networks,
                third_party_instance_id=query.third_party_instance_id,
                search_term=query.generic_search_term,
            )
        except FederationError as exc:
            raise _unavailable(server, exc) from exc
        rooms = [room for room in map(_room, page.chunk) if room is not None]
        return PublicRoomsPage(
            rooms, page.next_batch, page.prev_batch, page.total_room_count_estimate
        )
