"""UserDirectoryStore.search_visible with members of other servers (their member events give
name and avatar), on SQLite and PostgreSQL. Rooms are made through the real event path."""

from __future__ import annotations

import pytest

from federation.core.signing import SigningKey
from homeserver.clock import FakeClock
from homeserver.services.events import EventCreationService
from homeserver.services.notifier import InProcessNotifier
from homeserver.services.requester import Requester
from homeserver.services.rooms import CreateRoomRequest, RoomService
from homeserver.services.visibility import HistoryVisibility
from homeserver.storage import Stores

SERVER = "test.local"
ALICE = Requester("@alice:test.local", "A")
BOB = Requester("@bob:test.local", "B")
REMOTE = "@rem:remote.example"
HIDDEN = "@hidden:remote.example"


@pytest.fixture
def rooms(stores: Stores) -> RoomService:
    creator = EventCreationService(
        stores.events,
        SigningKey.generate("v1"),
        FakeClock(),
        InProcessNotifier(),
        server_name=SERVER,
    )
    return RoomService(
        stores.events,
        creator,
        visibility=HistoryVisibility(stores.room_access),
        clock=FakeClock(),
        server_name=SERVER,
        default_room_version="10",
    )


async def _remote_join(rooms: RoomService, room_id: str, user_id: str, **content: str) -> None:
    await rooms.creator.create_event(
        room_id,
        sender=user_id,
        event_type="m.room.member",
        content={"membership": "join", **content},
        state_key=user_id,
    )


async def test_remote_members_of_shared_and_public_rooms(
    stores: Stores, rooms: RoomService
) -> None:
    for user in (ALICE, BOB):
        await stores.users.create_user(user.user_id, password_hash=None, created_ts=0)
    public = await rooms.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    await _remote_join(rooms, public, REMOTE, displayname="Remote Ärger", avatar_url="mxc://r/a")
    private = await rooms.create_room(BOB, CreateRoomRequest(preset="private_chat"))
    await rooms.set_membership(BOB, private, HIDDEN, "invite")
    await _remote_join(rooms, private, HIDDEN, displayname="Hidden Remote")

    directory = stores.user_directory
    found, limited = await directory.search_visible(ALICE.user_id, "remote", limit=10)
    assert [e.user_id for e in found] == [REMOTE] and not limited
    assert found[0].display_name == "Remote Ärger" and found[0].avatar_url == "mxc://r/a"
    # bob shares the private room with the hidden user, and sees the public room's member
    found, _ = await directory.search_visible(BOB.user_id, "REMOTE", limit=10)
    assert [e.user_id for e in found] == [HIDDEN, REMOTE]
    # by display name, non-ASCII too
    found, _ = await directory.search_visible(ALICE.user_id, "ärger", limit=10)
    assert [e.user_id for e in found] == [REMOTE]
    found, _ = await directory.search_visible(ALICE.user_id, "hidden", limit=10)
    assert found == []
    # merged with local users in user ID order, under one limit
    found, limited = await directory.search_visible(BOB.user_id, "e", limit=2)
    assert [e.user_id for e in found] == [ALICE.user_id, HIDDEN] and limited
    # a remote member who left is not found
    await rooms.creator.create_event(
        public,
        sender=REMOTE,
        event_type="m.room.member",
        content={"membership": "leave"},
        state_key=REMOTE,
    )
    found, _ = await directory.search_visible(ALICE.user_id, "remote", limit=10)
    assert found == []
