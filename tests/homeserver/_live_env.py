"""Rooms to run the live layer (typing, receipts, presence) against: real events in a real store.

:class:`RoomsEnv` creates rooms and sends events through the real event creation path, so
receipts point at stored events and membership is real ``current_state``.
"""

from __future__ import annotations

from federation.core.signing import SigningKey
from homeserver.clock import FakeClock
from homeserver.services.events import EventCreationService
from homeserver.services.notifier import InProcessNotifier
from homeserver.services.requester import Requester
from homeserver.services.rooms import CreateRoomRequest, RoomService
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage import Stores

SERVER = "test.local"


def uid(localpart: str) -> str:
    return f"@{localpart}:{SERVER}"


class RoomsEnv:
    """Rooms, members and messages through the real services."""

    def __init__(
        self,
        stores: Stores,
        notifier: InProcessNotifier | None = None,
        clock: FakeClock | None = None,
    ) -> None:
        self.notifier = notifier or InProcessNotifier()
        self.clock = clock or FakeClock()
        creator = EventCreationService(
            stores.events, SigningKey.generate("v1"), self.clock, self.notifier, server_name=SERVER
        )
        self.rooms = RoomService(
            stores.events,
            creator,
            visibility=HistoryVisibility(stores.room_access),
            clock=self.clock,
            server_name=SERVER,
            default_room_version="12",
        )

    async def room(self, creator: str, *members: str) -> str:
        """A public room created by ``creator`` that ``members`` joined."""
        room_id = await self.rooms.create_room(
            Requester(creator, "DEV"), CreateRoomRequest(preset="public_chat")
        )
        for member in members:
            await self.join(member, room_id)
        return room_id

    async def join(self, user_id: str, room_id: str) -> None:
        await self.rooms.set_membership(Requester(user_id, "DEV"), room_id, user_id, "join")

    async def leave(self, user_id: str, room_id: str) -> None:
        await self.rooms.set_membership(Requester(user_id, "DEV"), room_id, user_id, "leave")

    async def send(self, user_id: str, room_id: str, body: str = "hi") -> str:
        sent = await self.rooms.send(
            Requester(user_id, "DEV"),
            room_id,
            "m.room.message",
            {"msgtype": "m.text", "body": body},
        )
        return sent.event_id
