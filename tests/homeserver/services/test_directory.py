"""The directory service and its stores on SQLite and PostgreSQL: aliases, canonical alias
validation, visibility, the published room list (order, keyset paging both ways, filters)."""

from __future__ import annotations

from typing import Any

import pytest

from federation.core.room_versions import get_room_version
from federation.core.signing import SigningKey
from homeserver.clock import FakeClock
from homeserver.config import RoomDirectoryConfig
from homeserver.errors import MatrixError
from homeserver.services.directory import DirectoryService, PublicRoomsQuery
from homeserver.services.events import EventCreationService
from homeserver.services.notifier import InProcessNotifier
from homeserver.services.requester import Requester
from homeserver.storage import Stores
from homeserver.storage.room_aliases import AliasExists
from homeserver.storage.room_directory import FIRST, DirectoryKey

SERVER = "test.local"
ALICE = Requester("@alice:test.local", "A")
BOB = Requester("@bob:test.local", "B")
ADMIN = Requester("@root:test.local", "R", is_admin=True)


class World:
    def __init__(self, stores: Stores, **config: Any) -> None:
        self.stores = stores
        self.clock = FakeClock()
        self.creator = EventCreationService(
            stores.events,
            SigningKey.generate("v1"),
            self.clock,
            InProcessNotifier(),
            server_name=SERVER,
        )
        self.directory = DirectoryService(
            stores.room_aliases,
            stores.room_directory,
            stores.events,
            self.clock,
            server_name=SERVER,
            config=RoomDirectoryConfig(**config),
        )
        self.creator.add_state_check("m.room.canonical_alias", self.directory.check_canonical_alias)

    async def room(
        self,
        *,
        members: int = 1,
        public: bool = True,
        join_rule: str = "public",
        version: str = "11",
        state: dict[str, dict[str, Any]] | None = None,
    ) -> str:
        """A room created by alice with ``members`` joined users and extra state by type."""
        created = await self.creator.create_room_event(
            get_room_version(version),
            sender=ALICE.user_id,
            content={"room_version": version},
            is_public=public,
        )
        room_id = created.room_id

        async def send(
            t: str, content: dict[str, Any], key: str = "", sender: str = ALICE.user_id
        ) -> None:
            await self.creator.create_event(
                room_id, sender=sender, event_type=t, content=content, state_key=key
            )

        await send("m.room.member", {"membership": "join"}, ALICE.user_id)
        await send("m.room.power_levels", {"users": {ALICE.user_id: 100}})
        await send("m.room.join_rules", {"join_rule": join_rule})
        for i in range(1, members):
            user = f"@u{i}:test.local" if i > 1 else BOB.user_id
            if join_rule != "public":
                await send("m.room.member", {"membership": "invite"}, user)
            await send("m.room.member", {"membership": "join"}, user, sender=user)
        for event_type, content in (state or {}).items():
            await send(event_type, content)
        return room_id


@pytest.fixture
def world(stores: Stores) -> World:
    return World(stores)


async def test_alias_store(stores: Stores) -> None:
    aliases = stores.room_aliases
    await aliases.create_alias("#a:test.local", "!r1:test.local", "@x:test.local", 5)
    with pytest.raises(AliasExists):
        await aliases.create_alias("#a:test.local", "!r2:test.local", "@y:test.local", 6)
    row = await aliases.get_alias("#a:test.local")
    assert row is not None and (row.room_id, row.creator, row.created_ts) == (
        "!r1:test.local",
        "@x:test.local",
        5,
    )
    await aliases.create_alias("#b:test.local", "!r1:test.local", "@x:test.local", 7)
    assert await aliases.aliases_for_room("!r1:test.local") == ["#a:test.local", "#b:test.local"]
    assert await aliases.move_aliases("!r1:test.local", "!r3:test.local") == [
        "#a:test.local",
        "#b:test.local",
    ]
    assert await aliases.aliases_for_room("!r1:test.local") == []
    assert await aliases.move_aliases("!r1:test.local", "!r3:test.local") == []
    assert await aliases.delete_alias("#a:test.local") is True
    assert await aliases.delete_alias("#a:test.local") is False
    assert await aliases.get_alias("#a:test.local") is None


async def test_visibility_and_listing_order(world: World) -> None:
    store = world.stores.room_directory
    assert await store.get_visibility("!nope:test.local") is None
    assert await store.set_visibility("!nope:test.local", True) is False
    small = await world.room(members=1)
    big = await world.room(members=3)
    hidden = await world.room(members=5, public=False)
    assert await store.get_visibility(hidden) is False
    assert await store.count_published() == 2
    keys = await store.list_published(FIRST, backwards=False, limit=10)
    assert keys == [DirectoryKey(3, big), DirectoryKey(1, small)]
    assert await store.list_published(keys[0], backwards=False, limit=10) == keys[1:]
    assert await store.list_published(keys[1], backwards=True, limit=10) == keys[:1]
    await world.directory.set_room_visibility(hidden, True)
    assert (await store.list_published(FIRST, backwards=False, limit=1))[0].room_id == hidden
    with pytest.raises(MatrixError) as e:
        await world.directory.set_room_visibility("!nope:test.local", True)
    assert e.value.status == 404


async def test_public_rooms_pages_filters_and_fields(world: World) -> None:
    rooms = []
    for i in range(5):
        rooms.append(await world.room(members=1, state={"m.room.name": {"name": f"Room {i}"}}))
    space = await world.room(members=2, state={"m.room.topic": {"topic": "A Space of things"}})
    await world.room(
        members=2, join_rule="invite", state={"m.room.name": {"name": "secret"}}
    )  # not listed
    readable = await world.room(
        members=1,
        join_rule="invite",
        state={"m.room.history_visibility": {"history_visibility": "world_readable"}},
    )
    d = world.directory

    # forward, one at a time: every listed room exactly once, largest first
    seen: list[str] = []
    page = await d.public_rooms(PublicRoomsQuery(limit=2))
    assert page.prev_batch is None and page.total_room_count_estimate == 8
    while True:
        seen += [r.room_id for r in page.chunk]
        if page.next_batch is None:
            break
        page = await d.public_rooms(PublicRoomsQuery(limit=2, since=page.next_batch))
        assert page.prev_batch is not None
    assert seen[0] == space and len(seen) == 7 and len(set(seen)) == 7
    assert set(seen) == {*rooms, space, readable}
    # backwards from the last page gives the previous page again
    back = await d.public_rooms(PublicRoomsQuery(limit=2, since=page.prev_batch))
    assert [r.room_id for r in back.chunk] == seen[-3:-1]
    assert back.next_batch is not None and back.prev_batch is not None
    again = await d.public_rooms(PublicRoomsQuery(limit=2, since=back.next_batch))
    assert [r.room_id for r in again.chunk] == seen[-1:]

    entry = next(r for r in (await d.public_rooms(PublicRoomsQuery())).chunk if r.room_id == space)
    assert (
        entry.topic == "A Space of things" and entry.name is None and entry.num_joined_members == 2
    )
    assert entry.join_rule == "public" and not entry.world_readable and not entry.guest_can_join

    found = await d.public_rooms(PublicRoomsQuery(generic_search_term="space OF"))
    assert [r.room_id for r in found.chunk] == [space]
    found = await d.public_rooms(PublicRoomsQuery(generic_search_term="room 3"))
    assert [r.name for r in found.chunk] == ["Room 3"]
    assert (await d.public_rooms(PublicRoomsQuery(room_types=("m.space",)))).chunk == []
    assert len((await d.public_rooms(PublicRoomsQuery(room_types=(None,)))).chunk) == 7
    tp = await d.public_rooms(PublicRoomsQuery(third_party_instance_id="irc"))
    assert tp.chunk == []

    for bad in (
        PublicRoomsQuery(since="garbage!"),
        PublicRoomsQuery(limit=-1),
        PublicRoomsQuery(include_all_networks=True, third_party_instance_id="irc"),
        PublicRoomsQuery(server="bad server"),
    ):
        with pytest.raises(MatrixError) as e:
            await d.public_rooms(bad)
        assert (e.value.status, e.value.errcode) == (400, "M_INVALID_PARAM"), bad
    with pytest.raises(MatrixError) as e:
        await d.public_rooms(PublicRoomsQuery(server="other.example"))
    assert e.value.status == 502
    local = await d.public_rooms(PublicRoomsQuery(server=SERVER, limit=1))
    assert [r.room_id for r in local.chunk] == [space]


async def test_aliases_and_permissions(world: World) -> None:
    d = world.directory
    room = await world.room(members=2)  # alice (100) and bob (0)
    await d.put_alias(BOB, "#bobs:test.local", room)
    assert await d.get_alias("#bobs:test.local") == (room, [SERVER])
    assert await d.resolve_alias("#nope:test.local") is None
    assert await d.resolve_alias("#x:other.example") is None  # no federation yet
    assert not await d.alias_available("#bobs:test.local")
    assert await d.alias_available("#free:test.local")
    carol = Requester("@carol:test.local", "C")
    for requester, alias, room_id, status in (
        (ALICE, "#bobs:test.local", room, 409),
        (ALICE, "#x:other.example", room, 400),
        (ALICE, "#:test.local", room, 400),
        (ALICE, "nohash", room, 400),
        (ALICE, "#ok:test.local", "not-a-room", 400),
        (carol, "#c:test.local", room, 403),
        (ADMIN, "#c:test.local", "!unknown:test.local", 404),
    ):
        with pytest.raises(MatrixError) as e:
            await d.put_alias(requester, alias, room_id)
        assert e.value.status == status, (alias, requester)

    # only the creator, a moderator of the room or an admin may delete
    await d.put_alias(ALICE, "#alices:test.local", room)
    with pytest.raises(MatrixError) as e:
        await d.delete_alias(BOB, "#alices:test.local")
    assert e.value.status == 403
    await d.delete_alias(ALICE, "#bobs:test.local")  # alice may send m.room.canonical_alias
    await d.delete_alias(ADMIN, "#alices:test.local")
    with pytest.raises(MatrixError) as e:
        await d.delete_alias(ALICE, "#alices:test.local")
    assert e.value.status == 404

    await d.put_alias(ALICE, "#main:test.local", room)
    assert await d.local_aliases(BOB, room) == ["#main:test.local"]
    with pytest.raises(MatrixError) as e:
        await d.local_aliases(carol, room)
    assert e.value.status == 403
    assert await d.local_aliases(ADMIN, room) == ["#main:test.local"]


async def test_canonical_alias_validation(world: World) -> None:
    room = await world.room()
    other = await world.room()
    await world.directory.put_alias(ALICE, "#here:test.local", room)
    await world.directory.put_alias(ALICE, "#there:test.local", other)

    async def send(content: dict[str, Any]) -> None:
        await world.creator.create_event(
            room,
            sender=ALICE.user_id,
            event_type="m.room.canonical_alias",
            content=content,
            state_key="",
        )

    await send({"alias": "#here:test.local", "alt_aliases": ["#here:test.local"]})
    await send({"alias": None})
    await send({})
    for content, errcode in (
        ({"alias": "#there:test.local"}, "M_BAD_ALIAS"),
        ({"alias": "#missing:test.local"}, "M_BAD_ALIAS"),
        ({"alt_aliases": ["#here:test.local", "#there:test.local"]}, "M_BAD_ALIAS"),
        ({"alias": "#remote:other.example"}, "M_BAD_ALIAS"),
        ({"alias": "not an alias"}, "M_INVALID_PARAM"),
        ({"alias": 5}, "M_INVALID_PARAM"),
        ({"alt_aliases": "#here:test.local"}, "M_INVALID_PARAM"),
        ({"alt_aliases": [1]}, "M_INVALID_PARAM"),
    ):
        with pytest.raises(MatrixError) as e:
            await send(content)
        assert (e.value.status, e.value.errcode) == (400, errcode), content
    # an alias already listed is not checked again after it was deleted
    await send({"alias": "#here:test.local"})
    await world.directory.delete_alias(ALICE, "#here:test.local")
    await send({"alias": "#here:test.local", "alt_aliases": []})


async def test_publish_policy(stores: Stores) -> None:
    world = World(stores, publish="server_admins")
    room = await world.room(members=2, public=False)
    with pytest.raises(MatrixError) as e:
        await world.directory.put_visibility(ALICE, room, True)
    assert e.value.status == 403
    await world.directory.put_visibility(ADMIN, room, True)
    assert await world.directory.get_visibility(room) is True

    open_world = World(stores)
    with pytest.raises(MatrixError) as e:
        await open_world.directory.put_visibility(BOB, room, False)  # level 0 < 50
    assert e.value.status == 403
    await open_world.directory.put_visibility(ALICE, room, False)
    assert await open_world.directory.get_visibility(room) is False
    with pytest.raises(MatrixError) as e:
        await open_world.directory.get_visibility("!nope:test.local")
    assert e.value.status == 404
