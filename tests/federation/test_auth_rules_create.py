"""Auth rules 1-3: m.room.create, the room ID (v12) and auth events; auth events selection."""

from __future__ import annotations

from typing import Any

import pytest

from federation.core.auth_rules import (
    auth_types_for_event,
    check_state_dependent_auth_rules,
    check_state_independent_auth_rules,
)
from federation.core.errors import AuthError
from federation.core.room_versions import KNOWN_ROOM_VERSIONS
from tests.federation._auth_rooms import (
    ALICE,
    BOB,
    CAROL,
    CREATE,
    MOD,
    VERSIONS,
    Room,
)

ALL_VERSIONS = list(KNOWN_ROOM_VERSIONS)


def _create_rule(room: Room, **kwargs: Any) -> str | None:
    content = kwargs.pop("content", None)
    event = room.build(
        "m.room.create",
        ALICE,
        content if content is not None else dict(room.create.content),
        "",
        prev=kwargs.pop("prev", []),
        **kwargs,
    )
    try:
        check_state_independent_auth_rules(room.rv, event)
    except AuthError as e:
        return e.rule
    return None


# ------------------------------------------------------------------------- rule 1


@pytest.mark.parametrize("version", ALL_VERSIONS)
def test_create_event_allowed(version: str) -> None:
    room = Room(version, setup=False)
    check_state_independent_auth_rules(room.rv, room.create)
    check_state_independent_auth_rules(room.rv, room.create, room.events)
    check_state_dependent_auth_rules(room.rv, room.create, {})
    assert _create_rule(room) is None


@pytest.mark.parametrize("version", VERSIONS)
def test_create_with_prev_events(version: str) -> None:
    room = Room(version, setup=False)
    assert _create_rule(room, prev=[room.create.event_id]) == "create.has_prev_events"


@pytest.mark.parametrize("version", [v for v in VERSIONS if v != "12"])
def test_create_room_id_domain(version: str) -> None:
    room = Room(version, setup=False)
    assert _create_rule(room, room_id="!room:a.example") is None
    assert _create_rule(room, room_id="!room:elsewhere.example") == "create.room_id_domain"
    assert _create_rule(room, room_id=None) == "create.room_id_domain"  # removes room_id


def test_create_has_room_id_v12() -> None:
    room = Room("12", setup=False)
    assert _create_rule(room) is None
    assert _create_rule(room, room_id="!room:a.example") == "create.has_room_id"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("bad", ["999", 12, None])
def test_create_unknown_room_version(version: str, bad: object) -> None:
    room = Room(version, setup=False)
    content = {**room.create.content, "room_version": bad}
    assert _create_rule(room, content=content) == "create.unknown_room_version"
    # An absent room_version means "1", which is known.
    content.pop("room_version")
    assert _create_rule(room, content=content) is None


@pytest.mark.parametrize("version", VERSIONS)
def test_create_creator(version: str) -> None:
    room = Room(version, setup=False)
    content = {"room_version": version}
    if room.rv.implicit_room_creator:
        assert _create_rule(room, content=content) is None
    else:
        assert _create_rule(room, content=content) == "create.no_creator"
        assert _create_rule(room, content={**content, "creator": ALICE}) is None


@pytest.mark.parametrize(
    "additional",
    ["@bob:b.example", [5], ["bob"], ["@bob"], ["@bob:b.example", None], {"@bob:b.example": 1}],
)
def test_create_additional_creators_invalid_v12(additional: object) -> None:
    room = Room("12", setup=False)
    content = {"room_version": "12", "additional_creators": additional}
    assert _create_rule(room, content=content) == "create.invalid_additional_creators"


@pytest.mark.parametrize("version", ["11", "12"])
def test_create_additional_creators_valid(version: str) -> None:
    room = Room(version, setup=False)
    for additional in ([], [BOB, CAROL], ["@:historical.example"]):
        assert _create_rule(room, content={"additional_creators": additional}) is None
    # Before v12 the key means nothing, so nothing is checked.
    if version == "11":
        assert _create_rule(room, content={"additional_creators": 5}) is None


# ------------------------------------------------------------------- rules 2 and 3


@pytest.mark.parametrize("version", VERSIONS)
def test_auth_events_allowed(version: str) -> None:
    room = Room(version)
    event = room.build("m.room.message", BOB, {"body": "hi"})
    check_state_independent_auth_rules(room.rv, event, room.events)
    # Without the auth events only the create rules run.
    check_state_independent_auth_rules(room.rv, event)


@pytest.mark.parametrize("version", VERSIONS)
def test_auth_events_rejected_or_unknown(version: str) -> None:
    room = Room(version)
    event = room.build("m.room.message", BOB, {"body": "hi"})
    known = {
        k: v for k, v in room.events.items() if k != room.state[("m.room.member", BOB)].event_id
    }
    with pytest.raises(AuthError) as info:
        check_state_independent_auth_rules(room.rv, event, known)
    assert info.value.rule == "auth_events.rejected"


@pytest.mark.parametrize("version", VERSIONS)
def test_auth_events_wrong_room(version: str) -> None:
    room = Room(version)
    other_room = "!other:a.example" if room.rv.create_event_in_auth_events else "!" + "B" * 43
    foreign_pl = room.build("m.room.power_levels", ALICE, {}, "", room_id=other_room)
    room.events[foreign_pl.event_id] = foreign_pl
    auth = [e.event_id for k, e in room.state.items() if k in {("m.room.member", BOB)}]
    if room.rv.create_event_in_auth_events:
        auth.append(room.create.event_id)
    event = room.build("m.room.message", BOB, {"body": "hi"}, auth=[*auth, foreign_pl.event_id])
    with pytest.raises(AuthError) as info:
        check_state_independent_auth_rules(room.rv, event, room.events)
    assert info.value.rule == "auth_events.wrong_room"


@pytest.mark.parametrize("version", VERSIONS)
def test_auth_events_duplicate(version: str) -> None:
    room = Room(version)
    old_join = room.state[("m.room.member", BOB)]
    room.member(BOB, BOB, "join", displayname="Bob")
    event = room.build("m.room.message", BOB, {"body": "hi"})
    with pytest.raises(AuthError) as info:
        check_state_independent_auth_rules(
            room.rv,
            room.build(
                "m.room.message",
                BOB,
                {"body": "hi"},
                auth=[*event.auth_event_ids, old_join.event_id],
            ),
            room.events,
        )
    assert info.value.rule == "auth_events.duplicate"


@pytest.mark.parametrize("version", VERSIONS)
def test_auth_events_unexpected(version: str) -> None:
    room = Room(version)
    event = room.build("m.room.message", BOB, {"body": "hi"})
    join_rules = room.state[("m.room.join_rules", "")].event_id
    mod_join = room.state[("m.room.member", MOD)].event_id
    for extra in (join_rules, mod_join):
        bad = room.build("m.room.message", BOB, {"body": "hi"}, auth=[*event.auth_event_ids, extra])
        with pytest.raises(AuthError) as info:
            check_state_independent_auth_rules(room.rv, bad, room.events)
        assert info.value.rule == "auth_events.unexpected"
    # A join lists the join rules.
    join = room.build("m.room.member", CAROL, {"membership": "join"}, CAROL)
    assert ("m.room.join_rules", "") in {room.events[i].state_tuple for i in join.auth_event_ids}
    check_state_independent_auth_rules(room.rv, join, room.events)


@pytest.mark.parametrize("version", [v for v in VERSIONS if v != "12"])
def test_auth_events_no_create(version: str) -> None:
    room = Room(version)
    event = room.build("m.room.message", BOB, {"body": "hi"})
    auth = [i for i in event.auth_event_ids if i != room.create.event_id]
    with pytest.raises(AuthError) as info:
        check_state_independent_auth_rules(
            room.rv, room.build("m.room.message", BOB, {"body": "hi"}, auth=auth), room.events
        )
    assert info.value.rule == "auth_events.no_create"


def test_auth_events_create_listed_v12() -> None:
    room = Room("12")
    event = room.build("m.room.message", BOB, {"body": "hi"})
    assert room.create.event_id not in event.auth_event_ids
    bad = room.build(
        "m.room.message", BOB, {"body": "hi"}, auth=[*event.auth_event_ids, room.create.event_id]
    )
    with pytest.raises(AuthError) as info:
        check_state_independent_auth_rules(room.rv, bad, room.events)
    assert info.value.rule == "auth_events.unexpected"


def test_room_id_names_create_event_v12() -> None:
    room = Room("12")
    event = room.build("m.room.message", BOB, {"body": "hi"})
    without_create = {k: v for k, v in room.events.items() if k != room.create.event_id}
    with pytest.raises(AuthError) as info:
        check_state_independent_auth_rules(room.rv, event, without_create)
    assert info.value.rule == "room_id.no_create_event"
    # A room ID naming an event that is not a create event.
    bob_join = room.state[("m.room.member", BOB)]
    wrong = room.build("m.room.message", BOB, {"body": "hi"}, room_id="!" + bob_join.event_id[1:])
    with pytest.raises(AuthError) as info:
        check_state_independent_auth_rules(room.rv, wrong, room.events)
    assert info.value.rule == "room_id.no_create_event"


# --------------------------------------------------------------- auth events selection


@pytest.mark.parametrize("version", VERSIONS)
def test_auth_types_basic(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    create = [CREATE] if rv.create_event_in_auth_events else []
    assert auth_types_for_event(rv, "m.room.create", "", ALICE, {}) == []
    assert auth_types_for_event(rv, "m.room.message", None, BOB, {}) == [
        *create,
        ("m.room.power_levels", ""),
        ("m.room.member", BOB),
    ]
    # Own membership: the sender's and the target's member events are one key.
    assert auth_types_for_event(rv, "m.room.member", BOB, BOB, {"membership": "join"}) == [
        *create,
        ("m.room.power_levels", ""),
        ("m.room.member", BOB),
        ("m.room.join_rules", ""),
    ]
    assert auth_types_for_event(rv, "m.room.member", BOB, ALICE, {"membership": "ban"}) == [
        *create,
        ("m.room.power_levels", ""),
        ("m.room.member", ALICE),
        ("m.room.member", BOB),
    ]


@pytest.mark.parametrize("version", VERSIONS)
def test_auth_types_third_party_invite(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    content = {"membership": "invite", "third_party_invite": {"signed": {"token": "tok"}}}
    keys = auth_types_for_event(rv, "m.room.member", BOB, ALICE, content)
    assert ("m.room.third_party_invite", "tok") in keys
    assert ("m.room.join_rules", "") in keys
    malformed = {"membership": "invite", "third_party_invite": {"signed": "x"}}
    keys = auth_types_for_event(rv, "m.room.member", BOB, ALICE, malformed)
    assert not any(k[0] == "m.room.third_party_invite" for k in keys)


@pytest.mark.parametrize("version", VERSIONS)
def test_auth_types_restricted_join(version: str) -> None:
    rv = KNOWN_ROOM_VERSIONS[version]
    content = {"membership": "join", "join_authorised_via_users_server": MOD}
    keys = auth_types_for_event(rv, "m.room.member", CAROL, CAROL, content)
    assert (("m.room.member", MOD) in keys) is rv.restricted_join_rule
    leave = {"membership": "leave", "join_authorised_via_users_server": MOD}
    assert ("m.room.member", MOD) not in auth_types_for_event(
        rv, "m.room.member", CAROL, CAROL, leave
    )


@pytest.mark.parametrize("membership", ["knock", "invite", "join"])
def test_auth_types_join_rules(membership: str) -> None:
    rv = KNOWN_ROOM_VERSIONS["10"]
    keys = auth_types_for_event(rv, "m.room.member", CAROL, CAROL, {"membership": membership})
    assert ("m.room.join_rules", "") in keys
    keys = auth_types_for_event(rv, "m.room.member", CAROL, CAROL, {"membership": "leave"})
    assert ("m.room.join_rules", "") not in keys
