"""History visibility, forgotten rooms, knocks, restricted joins, aliases at creation and
profile propagation, on SQLite and PostgreSQL (services over real stores)."""

from __future__ import annotations

from typing import Any

import pytest
import trio

from federation.core.signing import SigningKey
from homeserver.clock import FakeClock
from homeserver.errors import MatrixError
from homeserver.services.events import EventCreationService
from homeserver.services.notifier import InProcessNotifier
from homeserver.services.profile_propagation import ProfilePropagator
from homeserver.services.requester import Requester
from homeserver.services.rooms import CreateRoomRequest, RoomService, StateEventSpec
from homeserver.services.visibility import HistoryVisibility, can_see
from homeserver.storage import Stores
from homeserver.storage.events import StoredEvent
from homeserver.storage.room_access import MemberState

SERVER = "test.local"
ALICE = Requester("@alice:test.local", "ADEV")
BOB = Requester("@bob:test.local", "BDEV")
CAROL = Requester("@carol:test.local", "CDEV")
DAVE = Requester("@dave:test.local", "DDEV")


class FakeAliases:
    """An in-memory :class:`~homeserver.services.rooms.RoomAliases`."""

    def __init__(self) -> None:
        self.aliases: dict[str, tuple[str, str]] = {}
        self.public: set[str] = set()

    async def resolve_alias(self, alias: str) -> tuple[str, list[str]] | None:
        found = self.aliases.get(alias)
        return None if found is None else (found[0], [SERVER])

    async def create_alias(self, alias: str, room_id: str, creator: str) -> None:
        assert alias not in self.aliases
        self.aliases[alias] = (room_id, creator)

    async def alias_available(self, alias: str) -> bool:
        return alias not in self.aliases

    async def set_room_visibility(self, room_id: str, public: bool) -> None:
        if public:
            self.public.add(room_id)
        else:
            self.public.discard(room_id)


class Env:
    def __init__(self, stores: Stores) -> None:
        self.clock = FakeClock()
        self.creator = EventCreationService(
            stores.events,
            SigningKey.generate("v1"),
            self.clock,
            InProcessNotifier(),
            server_name=SERVER,
        )
        self.visibility = HistoryVisibility(stores.room_access)
        self.aliases = FakeAliases()
        self.rooms = RoomService(
            stores.events,
            self.creator,
            visibility=self.visibility,
            clock=self.clock,
            server_name=SERVER,
            default_room_version="12",
            aliases=self.aliases,
        )
        self.events = stores.events
        self.access = stores.room_access

    async def say(self, who: Requester, room_id: str, body: str) -> str:
        sent = await self.rooms.send(who, room_id, "m.room.message", {"body": body}, txn_id=body)
        return sent.event_id

    async def timeline(self, room_id: str) -> list[StoredEvent]:
        return await self.events.paginate(room_id, (0, 0), "f", 1000)

    async def visible_bodies(self, who: Requester, room_id: str) -> list[str]:
        shown = await self.visibility.filter_events_for_user(
            who.user_id, await self.timeline(room_id)
        )
        return [e.event.content["body"] for e in shown if e.event.type == "m.room.message"]


@pytest.fixture
def env(stores: Stores) -> Env:
    return Env(stores)


async def _room(env: Env, visibility: str, **kwargs: Any) -> str:
    return await env.rooms.create_room(
        ALICE,
        CreateRoomRequest(
            preset="private_chat",
            initial_state=[
                StateEventSpec("m.room.history_visibility", "", {"history_visibility": visibility})
            ],
            **kwargs,
        ),
    )


def test_rule_table() -> None:
    def see(m: str | None, hv: str | None, later: bool = False, forgot: bool = False) -> bool:
        return can_see(MemberState(m, hv), joined_later=later, forgotten=forgot)

    assert see(None, "world_readable") and see("leave", "world_readable", forgot=True)
    assert see("join", "joined") and not see("join", "joined", forgot=True)
    assert see(None, "shared", later=True) and not see(None, "shared")
    assert see(None, None, later=True) and see(None, "unknown-value", later=True)
    assert see("invite", "invited") and not see("invite", "joined")
    assert not see("invite", "shared") and not see("leave", "invited")


@pytest.mark.parametrize(
    ("visibility", "bob_sees"),
    [
        ("world_readable", ["m1", "m2", "m3", "m4"]),
        ("shared", ["m1", "m2", "m3"]),
        ("invited", ["m2", "m3"]),
        ("joined", ["m3"]),
    ],
)
async def test_each_visibility_for_invited_joined_and_left(
    env: Env, visibility: str, bob_sees: list[str]
) -> None:
    room_id = await _room(env, visibility)
    await env.say(ALICE, room_id, "m1")
    await env.rooms.set_membership(ALICE, room_id, BOB.user_id, "invite")
    await env.say(ALICE, room_id, "m2")
    # invited, not joined: world_readable shows everything so far, "invited" shows m2
    invited_view = await env.visible_bodies(BOB, room_id)
    assert (
        invited_view
        == {
            "world_readable": ["m1", "m2"],
            "shared": [],
            "invited": ["m2"],
            "joined": [],
        }[visibility]
    )
    await env.rooms.join(BOB, room_id)
    await env.say(ALICE, room_id, "m3")
    await env.rooms.set_membership(BOB, room_id, BOB.user_id, "leave")
    await env.say(ALICE, room_id, "m4")
    assert await env.visible_bodies(BOB, room_id) == bob_sees
    # a user who was never in the room
    never = ["m1", "m2", "m3", "m4"] if visibility == "world_readable" else []
    assert await env.visible_bodies(DAVE, room_id) == never
    # the creator saw everything
    assert await env.visible_bodies(ALICE, room_id) == ["m1", "m2", "m3", "m4"]
    # bob always sees his own join and the leave that removed him
    shown = await env.visibility.filter_events_for_user(BOB.user_id, await env.timeline(room_id))
    own = [
        e.event.content["membership"]
        for e in shown
        if e.event.type == "m.room.member" and e.event.state_key == BOB.user_id
    ]
    assert "join" in own and "leave" in own


async def test_visibility_change_is_applied_per_event(env: Env) -> None:
    room_id = await _room(env, "joined")
    await env.say(ALICE, room_id, "hidden")
    await env.rooms.send(
        ALICE,
        room_id,
        "m.room.history_visibility",
        {"history_visibility": "world_readable"},
        state_key="",
    )
    await env.say(ALICE, room_id, "open")
    await env.rooms.send(
        ALICE, room_id, "m.room.history_visibility", {"history_visibility": "joined"}, state_key=""
    )
    await env.say(ALICE, room_id, "closed again")
    assert await env.visible_bodies(DAVE, room_id) == ["open"]
    shown = await env.visibility.filter_events_for_user(DAVE.user_id, await env.timeline(room_id))
    changes = [e for e in shown if e.event.type == "m.room.history_visibility"]
    # both boundary events are visible (before or after allows)
    assert [c.event.content["history_visibility"] for c in changes] == [
        "world_readable",
        "joined",
    ]


async def test_shared_history_for_a_later_joiner_and_the_fast_path(env: Env) -> None:
    room_id = await env.rooms.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    await env.say(ALICE, room_id, "before")
    assert await env.visible_bodies(BOB, room_id) == []  # shared, never joined
    await env.rooms.join(BOB, room_id)
    await env.say(ALICE, room_id, "after")
    assert await env.visible_bodies(BOB, room_id) == ["before", "after"]
    # joined since before the range: answered from the current member event alone
    tail = [e for e in await env.timeline(room_id) if e.event.type == "m.room.message"][-1:]
    facts = await env.access.get_visibility_facts(
        room_id, BOB.user_id, groups=[], since_stream=tail[0].stream_ordering
    )
    assert facts.joined_throughout and not facts.at_groups
    facts = await env.access.get_visibility_facts(
        room_id, BOB.user_id, groups=[tail[0].state_group or 0], since_stream=0
    )
    assert not facts.joined_throughout and len(facts.joins) == 1
    shown = await env.visibility.filter_events_for_user(BOB.user_id, tail)
    assert [e.event.content["body"] for e in shown] == ["after"]


async def test_read_paths_for_members_leavers_and_strangers(env: Env) -> None:
    room_id = await _room(env, "joined", invite=[BOB.user_id, CAROL.user_id])
    secret = await env.say(ALICE, room_id, "before bob")
    await env.rooms.join(BOB, room_id)
    seen = await env.say(ALICE, room_id, "while bob")
    await env.rooms.set_membership(BOB, room_id, BOB.user_id, "leave")
    await env.rooms.send(ALICE, room_id, "m.room.topic", {"topic": "after"}, state_key="")
    later = await env.say(ALICE, room_id, "after bob")

    # bob (left): reads what he could see, and the state as it was when he left
    page = await env.rooms.history.messages(
        BOB, room_id, direction="f", from_token=None, to_token=None, limit=100
    )
    bodies = [e["content"].get("body") for e in page.chunk if e["type"] == "m.room.message"]
    assert bodies == ["while bob"]
    assert (await env.rooms.history.get_event(BOB, room_id, seen))["content"]["body"] == "while bob"
    for hidden in (secret, later):
        with pytest.raises(MatrixError) as e:
            await env.rooms.history.get_event(BOB, room_id, hidden)
        assert e.value.status == 404
    state = {(s["type"], s["state_key"]) for s in await env.rooms.history.get_state(BOB, room_id)}
    assert ("m.room.topic", "") not in state
    with pytest.raises(MatrixError) as e:
        await env.rooms.history.get_state_event(BOB, room_id, "m.room.topic", "")
    assert e.value.status == 404
    members = await env.rooms.history.members(BOB, room_id, membership="leave")
    assert [m["state_key"] for m in members] == [BOB.user_id]
    with pytest.raises(MatrixError) as e:
        await env.rooms.history.joined_members(BOB, room_id)
    assert e.value.status == 403
    context = await env.rooms.history.context(BOB, room_id, seen, limit=10)
    assert context.event["event_id"] == seen
    assert all(e["event_id"] not in (secret, later) for e in context.events_after)
    with pytest.raises(MatrixError) as e:
        await env.rooms.history.context(BOB, room_id, later, limit=10)
    assert e.value.status == 404
    found = await env.rooms.history.timestamp_to_event(BOB, room_id, 2**50, "b")
    assert found.event.event_id != later  # the newest event bob may see, not the newest

    # carol (invited, never joined) and dave (never there): every read path is forbidden
    for who in (CAROL, DAVE):
        for call in (
            env.rooms.history.messages(
                who, room_id, direction="b", from_token=None, to_token=None, limit=10
            ),
            env.rooms.history.get_event(who, room_id, seen),
            env.rooms.history.get_state(who, room_id),
            env.rooms.history.get_state_event(who, room_id, "m.room.create", ""),
            env.rooms.history.members(who, room_id),
            env.rooms.history.joined_members(who, room_id),
            env.rooms.history.context(who, room_id, seen, limit=5),
            env.rooms.history.timestamp_to_event(who, room_id, 0, "f"),
        ):
            with pytest.raises(MatrixError) as e:
                await call
            assert e.value.status == 403, e.value.msg


async def test_forget(env: Env) -> None:
    room_id = await _room(env, "shared", invite=[BOB.user_id])
    await env.rooms.join(BOB, room_id)
    await env.say(ALICE, room_id, "hello")
    with pytest.raises(MatrixError) as e:
        await env.rooms.forget(BOB, room_id)
    assert (e.value.status, e.value.errcode) == (400, "M_UNKNOWN")
    with pytest.raises(MatrixError) as e:
        await env.rooms.forget(DAVE, room_id)
    assert e.value.status == 404
    await env.rooms.set_membership(BOB, room_id, BOB.user_id, "leave")
    assert await env.visible_bodies(BOB, room_id) == ["hello"]
    await env.rooms.forget(BOB, room_id)
    assert await env.visible_bodies(BOB, room_id) == []
    with pytest.raises(MatrixError) as e:
        await env.rooms.history.messages(
            BOB, room_id, direction="b", from_token=None, to_token=None, limit=10
        )
    assert e.value.status == 403
    # a new invite un-forgets the room
    await env.rooms.set_membership(ALICE, room_id, BOB.user_id, "invite")
    await env.rooms.join(BOB, room_id)
    assert await env.visible_bodies(BOB, room_id) == ["hello"]


async def test_knock_and_accept(env: Env) -> None:
    room_id = await env.rooms.create_room(
        ALICE,
        CreateRoomRequest(
            room_version="7",
            initial_state=[StateEventSpec("m.room.join_rules", "", {"join_rule": "knock"})],
        ),
    )
    with pytest.raises(MatrixError) as e:
        await env.rooms.join(BOB, room_id)
    assert e.value.status == 403
    await env.rooms.knock(BOB, room_id, reason="let me in")
    knock = await env.events.get_current_state_event(room_id, "m.room.member", BOB.user_id)
    assert knock is not None
    assert knock.event.content == {"membership": "knock", "reason": "let me in"}
    with pytest.raises(MatrixError) as e:  # already in the room
        await env.rooms.knock(ALICE, room_id)
    assert e.value.status == 403
    await env.rooms.set_membership(ALICE, room_id, BOB.user_id, "invite", reason="welcome")
    await env.rooms.join(BOB, room_id)
    assert await env.rooms.history.joined_rooms(BOB) == [room_id]
    # knocking is not possible before v7, nor on an invite-only room
    old = await env.rooms.create_room(ALICE, CreateRoomRequest(room_version="6"))
    invite_only = await env.rooms.create_room(ALICE, CreateRoomRequest(room_version="7"))
    for other in (old, invite_only):
        with pytest.raises(MatrixError) as e:
            await env.rooms.knock(CAROL, other)
        assert e.value.status == 403


@pytest.mark.parametrize("join_rule", ["restricted", "knock_restricted"])
async def test_restricted_join(env: Env, join_rule: str) -> None:
    space = await env.rooms.create_room(ALICE, CreateRoomRequest(preset="private_chat"))
    await env.rooms.set_membership(ALICE, space, BOB.user_id, "invite")
    await env.rooms.join(BOB, space)
    rules = {
        "join_rule": join_rule,
        "allow": [{"type": "m.room_membership", "room_id": space}],
    }
    room_id = await env.rooms.create_room(
        ALICE,
        CreateRoomRequest(
            room_version="10", initial_state=[StateEventSpec("m.room.join_rules", "", rules)]
        ),
    )
    await env.rooms.join(BOB, room_id)
    member = await env.events.get_current_state_event(room_id, "m.room.member", BOB.user_id)
    assert member is not None
    assert member.event.content["join_authorised_via_users_server"] == ALICE.user_id
    # carol is in none of the allowed rooms
    with pytest.raises(MatrixError) as e:
        await env.rooms.join(CAROL, room_id)
    assert (e.value.status, e.value.errcode) == (403, "M_FORBIDDEN")
    if join_rule == "knock_restricted":
        await env.rooms.knock(CAROL, room_id)


async def test_restricted_join_errors(env: Env) -> None:
    space = await env.rooms.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    await env.rooms.join(BOB, space)
    unknown = {
        "join_rule": "restricted",
        "allow": [{"type": "m.room_membership", "room_id": "!nowhere:elsewhere"}],
    }
    room_id = await env.rooms.create_room(
        ALICE,
        CreateRoomRequest(
            room_version="9", initial_state=[StateEventSpec("m.room.join_rules", "", unknown)]
        ),
    )
    with pytest.raises(MatrixError) as e:
        await env.rooms.join(BOB, room_id)
    assert (e.value.status, e.value.errcode) == (400, "M_UNABLE_TO_AUTHORISE_JOIN")
    # nobody local can invite: the invite level is above everyone's
    rules = {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": space}]}
    room_id = await env.rooms.create_room(
        ALICE,
        CreateRoomRequest(
            room_version="9",
            initial_state=[StateEventSpec("m.room.join_rules", "", rules)],
            power_level_content_override={"invite": 1000},
        ),
    )
    with pytest.raises(MatrixError) as e:
        await env.rooms.join(BOB, room_id)
    assert (e.value.status, e.value.errcode) == (400, "M_UNABLE_TO_GRANT_JOIN")


async def test_alias_at_creation_and_join_by_alias(env: Env) -> None:
    room_id = await env.rooms.create_room(
        ALICE,
        CreateRoomRequest(preset="public_chat", room_alias_name="lobby", visibility="public"),
    )
    assert env.aliases.aliases["#lobby:test.local"] == (room_id, ALICE.user_id)
    assert env.aliases.public == {room_id}
    canonical = await env.events.get_current_state_event(room_id, "m.room.canonical_alias", "")
    assert canonical is not None and canonical.event.content == {"alias": "#lobby:test.local"}
    before = await env.rooms.history.joined_rooms(ALICE)
    with pytest.raises(MatrixError) as e:
        await env.rooms.create_room(ALICE, CreateRoomRequest(room_alias_name="lobby"))
    assert (e.value.status, e.value.errcode) == (400, "M_ROOM_IN_USE")
    assert await env.rooms.history.joined_rooms(ALICE) == before  # checked before creating anything
    for bad in ("a:b", "", "with space"):
        with pytest.raises(MatrixError) as e:
            await env.rooms.create_room(ALICE, CreateRoomRequest(room_alias_name=bad))
        assert e.value.errcode == "M_INVALID_PARAM"
    assert await env.rooms.join(BOB, "#lobby:test.local") == room_id
    with pytest.raises(MatrixError) as e:
        await env.rooms.join(BOB, "#missing:test.local")
    assert e.value.status == 404
    with pytest.raises(MatrixError) as e:
        await env.rooms.join(BOB, "not-a-room")
    assert e.value.errcode == "M_INVALID_PARAM"


async def test_profile_propagation(env: Env) -> None:
    rooms = [
        await env.rooms.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
        for _ in range(2)
    ]
    left = await env.rooms.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    await env.rooms.join(BOB, left)
    await env.rooms.set_membership(BOB, left, BOB.user_id, "leave")
    for room_id in rooms:
        await env.rooms.join(BOB, room_id)
    propagator = ProfilePropagator(env.rooms)
    async with trio.open_nursery() as nursery:
        await nursery.start(propagator.run)
        await propagator.profile_changed(BOB.user_id, "displayname", "Bobby")
        await propagator.profile_changed(BOB.user_id, "avatar_url", "mxc://test.local/abc")
        await propagator.profile_changed(BOB.user_id, "m.tz", "Europe/Paris")  # ignored
        await propagator.wait_idle()
        nursery.cancel_scope.cancel()
    for room_id in rooms:
        member = await env.events.get_current_state_event(room_id, "m.room.member", BOB.user_id)
        assert member is not None
        assert member.event.content == {
            "membership": "join",
            "displayname": "Bobby",
            "avatar_url": "mxc://test.local/abc",
        }
    gone = await env.events.get_current_state_event(left, "m.room.member", BOB.user_id)
    assert gone is not None and gone.event.content == {"membership": "leave"}
    # without the worker the change applies inline; removing a field removes it
    await propagator.profile_changed(BOB.user_id, "displayname", None)
    member = await env.events.get_current_state_event(rooms[0], "m.room.member", BOB.user_id)
    assert member is not None and "displayname" not in member.event.content


async def test_profile_propagation_failures_are_not_raised(env: Env) -> None:
    class Broken:
        async def update_member_profile(self, user_id: str, field: str, value: Any) -> int:
            raise RuntimeError("database down")

    await ProfilePropagator(Broken()).profile_changed(BOB.user_id, "displayname", "x")


async def test_transaction_id_and_age_only_for_the_sending_device(env: Env) -> None:
    room_id = await env.rooms.create_room(ALICE, CreateRoomRequest(preset="public_chat"))
    await env.rooms.send(ALICE, room_id, "m.room.message", {"body": "x"}, txn_id="my-txn")
    env.clock.advance(2.5)
    other_device = Requester(ALICE.user_id, "OTHER")
    for who, expected in ((ALICE, "my-txn"), (other_device, None), (BOB, None)):
        if who is BOB:
            await env.rooms.join(BOB, room_id)
        page = await env.rooms.history.messages(
            who, room_id, direction="b", from_token=None, to_token=None, limit=1
        )
        event = page.chunk[0] if who is not BOB else None
        if event is None:
            page = await env.rooms.history.messages(
                who, room_id, direction="b", from_token=None, to_token=None, limit=2
            )
            event = page.chunk[1]
        assert event["content"] == {"body": "x"}
        assert event["unsigned"].get("transaction_id") == expected
        assert event["unsigned"]["age"] >= 2500
