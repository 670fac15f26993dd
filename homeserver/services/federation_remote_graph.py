"""The inbound pipeline's reads of other servers' room graphs, over the federation client.

Adapts :class:`federation.client.FederationClient` to
:class:`~homeserver.services.federation_inbound.RemoteRoomGraph` (its errors propagate: the
pipeline treats any failure as "could not get it").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from federation.client import FederationClient

__all__ = ["ClientRoomGraph"]


class ClientRoomGraph:
    """:class:`~homeserver.services.federation_inbound.RemoteRoomGraph` over ``client``."""

    def __init__(self, client: FederationClient) -> None:
        self._client = client

    async def get_event(self, destination: str, event_id: str) -> Mapping[str, Any] | None:
        return await self._client.get_event(destination, event_id)

    async def get_missing_events(
        self,
        destination: str,
        room_id: str,
        *,
        earliest_events: Sequence[str],
        latest_events: Sequence[str],
        limit: int,
        min_depth: int,
    ) -> list[Mapping[str, Any]]:
        events = await self._client.get_missing_events(
            destination, room_id, earliest_events, latest_events, limit=limit, min_depth=min_depth
        )
        return list(events)

    async def get_state_ids(
        self, destination: str, room_id: str, event_id: str
    ) -> tuple[list[str], list[str]]:
        found = await self._client.state_ids(destination, room_id, event_id)
        return list(found.pdu_ids), list(found.auth_chain_ids)

    async def get_event_auth(
        self, destination: str, room_id: str, event_id: str
    ) -> list[Mapping[str, Any]]:
        found = await self._client.event_auth(destination, room_id, event_id)
        return list(found.auth_chain)
