"""Auth rules 6-10: sender joined, third-party invites, required power level, @ state keys,
m.room.power_levels; the power level helpers."""

from __future__ import annotations

import math
from typing import Any

import pytest

from federation.core.auth_rules import (
    CREATOR_POWER_LEVEL,
    get_creators,
    get_named_level,
    get_power_level,
    get_required_power_level,
    parse_int_power_level,
)
from federation.core.power_levels import get_notification_level
from federation.core.room_versions import KNOWN_ROOM_VERSIONS
from tests.federation._auth_rooms import ALICE, BOB, CAROL, DAVE, MOD, VERSIONS, Room

PL = "m.room.power_levels"
MEMBER = "m.room.member"


# ------------------------------------------------------------------------ rule 6


@pytest.mark.parametrize("version", VERSIONS)
def test_sender_must_be_joined(version: str) -> None:
    room = Room(version)
    room.allowed("m.room.message", BOB, {"body": "hi"})
    room.rejected("sender_not_joined", "m.room.message", CAROL, {"body": "hi"})
    room.member(BOB, CAROL, "invite")
    room.rejected("sender_not_joined", "m.room.message", CAROL, {"body": "hi"})
    room.rejected("sender_not_joined", "m.room.topic", CAROL, {"topic": "x"}, "")


# ------------------------------------------------------------------------ rule 7


@pytest.mark.parametrize("version", VERSIONS)
def test_third_party_invite_event(version: str) -> None:
    room = Room(version)
    content = {"display_name": "c", "public_key": "AAAA"}
    # Invite level 0 beats state_default 50.
    room.allowed("m.room.third_party_invite", BOB, content, "tok")
    room.set_power_levels(invite=50, events={"m.room.third_party_invite": 0})
    room.rejected(
        "third_party_invite.insufficient_power", "m.room.third_party_invite", BOB, content, "tok"
    )
    room.allowed("m.room.third_party_invite", MOD, content, "tok")
    room.rejected("sender_not_joined", "m.room.third_party_invite", CAROL, content, "tok")


# ------------------------------------------------------------------------ rule 8


@pytest.mark.parametrize("version", VERSIONS)
def test_required_power_level(version: str) -> None:
    room = Room(version)
    room.allowed("m.room.topic", MOD, {"topic": "x"}, "")
    room.rejected("required_power_level", "m.room.topic", BOB, {"topic": "x"}, "")
    events = {"m.room.topic": 0, "m.room.message": 10, PL: 100}
    room.set_power_levels(events=events, events_default=5)
    room.allowed("m.room.topic", BOB, {"topic": "x"}, "")
    room.rejected("required_power_level", "m.room.message", BOB, {"body": "x"})
    room.rejected("required_power_level", "m.custom", BOB, {})
    room.allowed("m.custom", MOD, {})
    room.rejected("required_power_level", PL, MOD, room.power_levels(events=events), "")


@pytest.mark.parametrize("version", VERSIONS)
def test_required_power_level_without_power_levels_event(version: str) -> None:
    room = Room(version, setup=False)
    room.member(ALICE, ALICE, "join")
    room.allowed("m.room.topic", ALICE, {"topic": "x"}, "")
    room.send("m.room.join_rules", ALICE, {"join_rule": "public"}, "")
    room.member(BOB, BOB, "join")
    room.allowed("m.room.message", BOB, {"body": "x"})
    room.rejected("required_power_level", "m.room.topic", BOB, {"topic": "x"}, "")


@pytest.mark.parametrize("version", VERSIONS)
def test_redaction_is_an_ordinary_event(version: str) -> None:
    room = Room(version)
    target = room.state[(MEMBER, MOD)].event_id
    room.set_power_levels(events={"m.room.redaction": 50})
    room.rejected("required_power_level", "m.room.redaction", BOB, {}, redacts=target)


# ------------------------------------------------------------------------ rule 9


@pytest.mark.parametrize("version", VERSIONS)
def test_state_key_starting_with_at(version: str) -> None:
    room = Room(version)
    room.set_power_levels(state_default=0)
    room.allowed("m.custom", BOB, {}, BOB)
    room.allowed("m.custom", BOB, {}, "bob")
    room.rejected("state_key.not_sender", "m.custom", BOB, {}, MOD)
    room.rejected("state_key.not_sender", "m.custom", ALICE, {}, BOB)
    room.rejected("state_key.not_sender", "m.custom", BOB, {}, BOB + "_suffix")


# ----------------------------------------------------------------------- rule 10


def pl_rule(room: Room, sender: str, content: dict[str, Any]) -> None:
    room.allowed(PL, sender, content, "")


@pytest.mark.parametrize("version", VERSIONS)
def test_power_levels_invalid_level(version: str) -> None:
    room = Room(version)
    stringy = room.power_levels(ban=" +050 ")
    if room.rv.enforce_int_power_levels:
        room.rejected("power_levels.invalid_level", PL, ALICE, stringy, "")
    else:
        room.allowed(PL, ALICE, stringy, "")
    for bad in ("fifty", "5.0", "1_0", True, None, [50], {"x": 1}):
        room.rejected("power_levels.invalid_level", PL, ALICE, room.power_levels(kick=bad), "")


@pytest.mark.parametrize("version", ["1", "5", "6", "10"])
def test_power_levels_floats(version: str) -> None:
    room = Room(version)
    content = room.power_levels(kick=50.7, users={BOB: 10.2})
    if room.rv.strict_canonical_json:
        room.rejected("power_levels.invalid_level", PL, ALICE, content, "")
    else:
        room.allowed(PL, ALICE, content, "")
        room.rejected("power_levels.invalid_level", PL, ALICE, room.power_levels(ban=math.inf), "")


@pytest.mark.parametrize("version", VERSIONS)
def test_power_levels_invalid_level_map(version: str) -> None:
    room = Room(version)
    for key in ("events", "notifications"):
        bads: list[object] = [[], "x", {"m.room.name": "lots"}, {"m.room.name": None}]
        for bad in bads:
            content = room.power_levels(**{key: bad})
            room.rejected("power_levels.invalid_level_map", PL, ALICE, content, "")
        stringy = room.power_levels(**{key: {"room": "50"}})
        if room.rv.enforce_int_power_levels:
            room.rejected("power_levels.invalid_level_map", PL, ALICE, stringy, "")
        else:
            room.allowed(PL, ALICE, stringy, "")


@pytest.mark.parametrize("version", VERSIONS)
def test_power_levels_invalid_users(version: str) -> None:
    room = Room(version)
    room.rejected("power_levels.invalid_users", PL, ALICE, {"users": []}, "")
    room.rejected("power_levels.invalid_users", PL, ALICE, room.power_levels(users={"bob": 1}), "")
    room.rejected("power_levels.invalid_users", PL, ALICE, room.power_levels(users={"@bob": 1}), "")
    room.rejected("power_levels.invalid_users", PL, ALICE, room.power_levels(users={BOB: "x"}), "")
    stringy = room.power_levels(users={BOB: "10"})
    if room.rv.enforce_int_power_levels:
        room.rejected("power_levels.invalid_users", PL, ALICE, stringy, "")
    else:
        room.allowed(PL, ALICE, stringy, "")


def test_power_levels_creator_in_users_v12() -> None:
    room = Room("12", create_content={"additional_creators": [CAROL]})
    room.rejected(
        "power_levels.creator_in_users", PL, ALICE, room.power_levels(users={ALICE: 100}), ""
    )
    room.rejected(
        "power_levels.creator_in_users", PL, ALICE, room.power_levels(users={CAROL: 1}), ""
    )
    room.allowed(PL, ALICE, room.power_levels(users={BOB: 100}), "")


@pytest.mark.parametrize("version", ["10", "11"])
def test_power_levels_creator_may_be_listed_before_v12(version: str) -> None:
    room = Room(version)
    room.allowed(PL, ALICE, room.power_levels(users={ALICE: 100}), "")


@pytest.mark.parametrize("version", VERSIONS)
def test_power_levels_first_event_is_allowed(version: str) -> None:
    room = Room(version, setup=False)
    room.member(ALICE, ALICE, "join")
    # No previous power levels: anything well-formed goes, even levels above the sender.
    users = {BOB: 1000} if room.rv.privileged_creators else {ALICE: 1, BOB: 1000}
    room.allowed(PL, ALICE, {"users": users, "ban": 9000, "events": {"x": 9000}}, "")


@pytest.mark.parametrize("version", VERSIONS)
def test_power_levels_named_levels(version: str) -> None:
    room = Room(version)
    rule = "power_levels.named_level_above_sender"
    room.allowed(PL, MOD, room.power_levels(kick=40), "")
    room.allowed(PL, MOD, room.power_levels(kick=50), "")  # unchanged default
    room.allowed(PL, MOD, room.power_levels(users_default=50), "")
    room.rejected(rule, PL, MOD, room.power_levels(ban=51), "")
    room.rejected(rule, PL, MOD, room.power_levels(state_default=51), "")
    room.set_power_levels(redact=75, events={PL: 50})
    # Changing or removing a level above the sender.
    room.rejected(rule, PL, MOD, room.power_levels(redact=10, events={PL: 50}), "")
    room.rejected(rule, PL, MOD, room.power_levels(events={PL: 50}), "")
    room.allowed(PL, MOD, room.power_levels(redact=75, events={PL: 50}, invite=50), "")


@pytest.mark.parametrize("version", VERSIONS)
def test_power_levels_same_value_other_spelling(version: str) -> None:
    room = Room(version)
    room.set_power_levels(ban=75, events={PL: 50})
    if not room.rv.enforce_int_power_levels:
        room.allowed(PL, MOD, room.power_levels(ban="75", events={PL: "050"}), "")


@pytest.mark.parametrize("version", VERSIONS)
def test_power_levels_events(version: str) -> None:
    room = Room(version)
    rule = "power_levels.event_level_above_sender"
    room.allowed(PL, MOD, room.power_levels(events={"m.room.topic": 50}), "")
    room.rejected(rule, PL, MOD, room.power_levels(events={"m.room.topic": 51}), "")
    room.set_power_levels(events={PL: 50, "m.room.tombstone": 100})
    room.rejected(rule, PL, MOD, room.power_levels(events={PL: 50}), "")
    room.rejected(rule, PL, MOD, room.power_levels(events={PL: 50, "m.room.tombstone": 0}), "")
    room.allowed(PL, MOD, room.power_levels(events={PL: 50, "m.room.tombstone": 100, "x": 3}), "")


@pytest.mark.parametrize("version", VERSIONS)
def test_power_levels_notifications(version: str) -> None:
    room = Room(version)
    room.set_power_levels(events={PL: 50}, notifications={"room": 100})
    rule = "power_levels.notification_level_above_sender"
    lowered = room.power_levels(events={PL: 50}, notifications={"room": 0})
    raised = room.power_levels(events={PL: 50}, notifications={"room": 100, "x": 60})
    if room.rv.limit_notifications_power_levels:
        room.rejected(rule, PL, MOD, lowered, "")
        room.rejected(rule, PL, MOD, raised, "")
    else:
        room.allowed(PL, MOD, lowered, "")
        room.allowed(PL, MOD, raised, "")
    room.allowed(
        PL, MOD, room.power_levels(events={PL: 50}, notifications={"room": 100, "x": 1}), ""
    )


@pytest.mark.parametrize("version", VERSIONS)
def test_power_levels_users(version: str) -> None:
    room = Room(version)
    room.set_power_levels(users={BOB: 10, DAVE: 50}, events={PL: 50})
    base = {"events": {PL: 50}}
    # Lowering or raising users below the sender, up to the sender's level.
    room.allowed(PL, MOD, room.power_levels(users={BOB: 0, DAVE: 50}, **base), "")
    room.allowed(PL, MOD, room.power_levels(users={BOB: 50, DAVE: 50}, **base), "")
    room.allowed(PL, MOD, room.power_levels(users={DAVE: 50}, **base), "")  # BOB removed
    room.allowed(PL, MOD, room.power_levels(users={BOB: 10, DAVE: 50, CAROL: 50}, **base), "")
    # The sender may demote (or remove) themselves.
    room.allowed(PL, MOD, room.power_levels(users={MOD: 0, BOB: 10, DAVE: 50}, **base), "")
    # Peers are untouchable.
    rule = "power_levels.user_at_or_above_sender"
    room.rejected(rule, PL, MOD, room.power_levels(users={BOB: 10, DAVE: 0}, **base), "")
    room.rejected(rule, PL, MOD, room.power_levels(users={BOB: 10}, **base), "")
    # Nobody may be raised above the sender.
    rule = "power_levels.user_level_above_sender"
    room.rejected(rule, PL, MOD, room.power_levels(users={BOB: 51, DAVE: 50}, **base), "")
    room.rejected(rule, PL, MOD, room.power_levels(users={MOD: 51, BOB: 10, DAVE: 50}, **base), "")


@pytest.mark.parametrize("version", VERSIONS)
def test_power_levels_top_user(version: str) -> None:
    room = Room(version)
    # ALICE (100, or a v12 creator) can give anyone up to her own level.
    room.allowed(PL, ALICE, room.power_levels(users={MOD: 100}), "")
    if not room.rv.privileged_creators:
        room.rejected(
            "power_levels.user_level_above_sender",
            PL,
            ALICE,
            room.power_levels(users={MOD: 101}),
            "",
        )
    else:
        room.allowed(PL, ALICE, room.power_levels(users={MOD: 2**53 - 1}), "")


# ------------------------------------------------------------------ v12 creators


def test_additional_creators_are_privileged_v12() -> None:
    room = Room("12", create_content={"additional_creators": [CAROL]})
    room.member(CAROL, CAROL, "join")
    room.allowed(PL, CAROL, room.power_levels(users={MOD: 1000}), "")
    room.allowed(MEMBER, CAROL, {"membership": "ban"}, MOD)
    # Creators cannot kick or ban each other, and nobody else can touch them.
    room.rejected("member.ban.target_too_powerful", MEMBER, CAROL, {"membership": "ban"}, ALICE)
    room.rejected(
        "member.leave.kick_target_too_powerful", MEMBER, ALICE, {"membership": "leave"}, CAROL
    )
    room.set_power_levels(users={MOD: 1000})
    room.rejected("member.ban.target_too_powerful", MEMBER, MOD, {"membership": "ban"}, CAROL)


@pytest.mark.parametrize("version", ["10", "11"])
def test_additional_creators_mean_nothing_before_v12(version: str) -> None:
    room = Room(version, create_content={"additional_creators": [CAROL]})
    room.member(CAROL, CAROL, "join")
    room.rejected("required_power_level", PL, CAROL, room.power_levels(), "")


# --------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("value", "v1", "v6", "v10"),
    [
        (50, 50, 50, 50),
        (-3, -3, -3, -3),
        ("50", 50, 50, None),
        (" +0100 ", 100, 100, None),
        ("-7", -7, -7, None),
        ("\t12\n", 12, 12, None),
        ("1_0", None, None, None),
        ("1.5", None, None, None),
        ("", None, None, None),
        ("+-1", None, None, None),
        (50.9, 50, None, None),
        (-50.9, -50, None, None),
        (5.114698e4, 51146, None, None),
        (math.nan, None, None, None),
        (math.inf, None, None, None),
        (True, None, None, None),
        (None, None, None, None),
        ([1], None, None, None),
    ],
)
def test_parse_int_power_level(
    value: object, v1: int | None, v6: int | None, v10: int | None
) -> None:
    assert parse_int_power_level(KNOWN_ROOM_VERSIONS["1"], value) == v1
    assert parse_int_power_level(KNOWN_ROOM_VERSIONS["6"], value) == v6
    assert parse_int_power_level(KNOWN_ROOM_VERSIONS["10"], value) == v10


@pytest.mark.parametrize("version", VERSIONS)
def test_get_power_level(version: str) -> None:
    room = Room(version, setup=False)
    rv = room.rv
    creator_level = CREATOR_POWER_LEVEL if rv.privileged_creators else 100
    assert get_power_level(rv, room.state, ALICE) == creator_level
    assert get_power_level(rv, room.state, BOB) == 0
    room.add(
        room.build(
            PL, ALICE, {"users": {BOB: "7" if version == "1" else 7}, "users_default": 3}, ""
        )
    )
    assert get_power_level(rv, room.state, BOB) == 7
    assert get_power_level(rv, room.state, CAROL) == 3
    assert get_power_level(rv, room.state, ALICE) == (
        CREATOR_POWER_LEVEL if rv.privileged_creators else 3
    )
    # Unreadable values fall back to the defaults.
    room.add(room.build(PL, ALICE, {"users": {BOB: "x"}, "users_default": "y"}, ""))
    assert get_power_level(rv, room.state, BOB) == 0
    room.add(room.build(PL, ALICE, {"users": [BOB]}, ""))
    assert get_power_level(rv, room.state, BOB) == 0


@pytest.mark.parametrize("version", VERSIONS)
def test_named_and_required_levels(version: str) -> None:
    room = Room(version, setup=False)
    rv, state = room.rv, room.state
    assert [get_named_level(rv, state, n) for n in ("invite", "kick", "ban", "redact")] == [
        0,
        50,
        50,
        50,
    ]
    assert get_named_level(rv, state, "kick", 7) == 7
    assert get_required_power_level(rv, state, "m.room.message", None) == 0
    assert get_required_power_level(rv, state, "m.room.topic", "") == 50
    assert get_notification_level(rv, state) == 50
    content = {
        "kick": 10,
        "events_default": 20,
        "state_default": 30,
        "events": {"m.room.topic": 5},
        "notifications": {"room": 1},
    }
    room.add(room.build(PL, ALICE, content, ""))
    assert get_named_level(rv, state, "kick") == 10
    assert get_named_level(rv, state, "ban") == 50
    assert get_required_power_level(rv, state, "m.room.message", None) == 20
    assert get_required_power_level(rv, state, "m.room.name", "") == 30
    assert get_required_power_level(rv, state, "m.room.topic", "") == 5
    assert get_notification_level(rv, state) == 1


@pytest.mark.parametrize("version", VERSIONS)
def test_get_creators(version: str) -> None:
    room = Room(version, setup=False, create_content={"additional_creators": [CAROL, 5]})
    rv = room.rv
    expected = {ALICE, CAROL} if rv.privileged_creators else {ALICE}
    assert get_creators(rv, room.create) == expected
    assert get_creators(rv, None) == frozenset()
