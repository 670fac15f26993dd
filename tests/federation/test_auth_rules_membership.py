"""Auth rule 5: m.room.member (join, invite, leave, kick, ban, knock, restricted joins)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from nacl.signing import SigningKey

from federation.core.auth_rules import check_state_dependent_auth_rules
from tests.federation._auth_rooms import (
    ALICE,
    BOB,
    CAROL,
    DAVE,
    KNOCK_RESTRICTED_VERSIONS,
    KNOCK_VERSIONS,
    MOD,
    RESTRICTED_VERSIONS,
    VERSIONS,
    Room,
)

MEMBER = "m.room.member"


# ---------------------------------------------------------------------- rule 5.1


@pytest.mark.parametrize("version", VERSIONS)
def test_member_without_state_key_or_membership(version: str) -> None:
    room = Room(version)
    room.rejected("member.no_state_key", MEMBER, CAROL, {"membership": "join"})
    room.rejected("member.no_membership", MEMBER, CAROL, {}, CAROL)
    room.rejected("member.no_membership", MEMBER, CAROL, {"membership": 1}, CAROL)
    room.allowed(MEMBER, CAROL, {"membership": "join"}, CAROL)


@pytest.mark.parametrize("version", VERSIONS)
def test_unknown_membership(version: str) -> None:
    room = Room(version)
    room.rejected("member.unknown_membership", MEMBER, BOB, {"membership": "foo"}, BOB)
    room.rejected("member.unknown_membership", MEMBER, BOB, {"membership": "Join"}, BOB)


# ---------------------------------------------------------------------- rule 5.3 join


@pytest.mark.parametrize("version", VERSIONS)
def test_creator_first_join(version: str) -> None:
    room = Room(version, setup=False)
    # Right after the create event the creator may join: no join rules or power levels.
    room.allowed(MEMBER, ALICE, {"membership": "join"}, ALICE)
    # Anyone else meets the (default: invite) join rule.
    room.rejected("member.join.not_invited", MEMBER, BOB, {"membership": "join"}, BOB)
    # After another event, the creator is an ordinary user.
    room.add(room.build("m.room.topic", ALICE, {"topic": "x"}, ""))
    room.rejected("member.join.not_invited", MEMBER, ALICE, {"membership": "join"}, ALICE)


@pytest.mark.parametrize("version", VERSIONS)
def test_creator_first_join_uses_content_creator_before_v11(version: str) -> None:
    # ALICE sends the create event naming BOB as creator (ignored from v11).
    room = Room(version, setup=False, create_content={"creator": BOB})
    if room.rv.implicit_room_creator:
        room.allowed(MEMBER, ALICE, {"membership": "join"}, ALICE)
        room.rejected("member.join.not_invited", MEMBER, BOB, {"membership": "join"}, BOB)
    else:
        room.allowed(MEMBER, BOB, {"membership": "join"}, BOB)
        room.rejected("member.join.not_invited", MEMBER, ALICE, {"membership": "join"}, ALICE)


def test_additional_creator_has_no_first_join_v12() -> None:
    room = Room("12", setup=False, create_content={"additional_creators": [BOB]})
    room.rejected("member.join.not_invited", MEMBER, BOB, {"membership": "join"}, BOB)


@pytest.mark.parametrize("version", VERSIONS)
def test_join_for_someone_else(version: str) -> None:
    room = Room(version)
    room.rejected("member.join.not_sender", MEMBER, ALICE, {"membership": "join"}, CAROL)


@pytest.mark.parametrize("version", VERSIONS)
def test_join_banned(version: str) -> None:
    room = Room(version)
    room.member(MOD, CAROL, "ban")
    room.rejected("member.join.banned", MEMBER, CAROL, {"membership": "join"}, CAROL)
    room.allowed(MEMBER, DAVE, {"membership": "join"}, DAVE)


@pytest.mark.parametrize("version", VERSIONS)
def test_join_public(version: str) -> None:
    room = Room(version)
    room.allowed(MEMBER, CAROL, {"membership": "join"}, CAROL)
    # Already joined: a profile change.
    room.allowed(MEMBER, BOB, {"membership": "join", "displayname": "Bob"}, BOB)


@pytest.mark.parametrize("version", VERSIONS)
def test_join_invite_only(version: str) -> None:
    room = Room(version, join_rule="invite")
    room.rejected("member.join.not_invited", MEMBER, CAROL, {"membership": "join"}, CAROL)
    room.member(BOB, CAROL, "invite")
    room.allowed(MEMBER, CAROL, {"membership": "join"}, CAROL)
    room.allowed(MEMBER, BOB, {"membership": "join"}, BOB)


@pytest.mark.parametrize("version", VERSIONS)
def test_join_without_join_rules_event_is_invite_only(version: str) -> None:
    room = Room(version, setup=False)
    room.member(ALICE, ALICE, "join")
    room.rejected("member.join.not_invited", MEMBER, CAROL, {"membership": "join"}, CAROL)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("join_rule", ["private", "nonsense"])
def test_join_other_join_rule(version: str, join_rule: str) -> None:
    room = Room(version, join_rule=join_rule)
    room.rejected("member.join.join_rule", MEMBER, CAROL, {"membership": "join"}, CAROL)
    # Even an invite does not help.
    room.member(BOB, CAROL, "invite")
    room.rejected("member.join.join_rule", MEMBER, CAROL, {"membership": "join"}, CAROL)


@pytest.mark.parametrize("version", VERSIONS)
def test_join_knock_join_rule(version: str) -> None:
    room = Room(version, join_rule="knock")
    if not room.rv.knock_join_rule:
        room.rejected("member.join.join_rule", MEMBER, CAROL, {"membership": "join"}, CAROL)
        return
    room.rejected("member.join.not_invited", MEMBER, CAROL, {"membership": "join"}, CAROL)
    room.member(BOB, CAROL, "invite")
    room.allowed(MEMBER, CAROL, {"membership": "join"}, CAROL)


# ------------------------------------------------------------- rule 5.3.5 restricted


def restricted_join(authoriser: str | None) -> dict[str, Any]:
    content: dict[str, Any] = {"membership": "join"}
    if authoriser is not None:
        content["join_authorised_via_users_server"] = authoriser
    return content


def _signers(authoriser: str) -> list[str]:
    return ["c.example", authoriser.partition(":")[2]]


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("join_rule", ["restricted", "knock_restricted"])
def test_restricted_join(version: str, join_rule: str) -> None:
    room = Room(version, join_rule=join_rule)
    supported = (
        room.rv.knock_restricted_join_rule
        if join_rule == "knock_restricted"
        else room.rv.restricted_join_rule
    )
    content = restricted_join(MOD)
    if not supported:
        room.rejected("member.join.join_rule", MEMBER, CAROL, content, CAROL, signers=_signers(MOD))
        return
    room.allowed(MEMBER, CAROL, content, CAROL, signers=_signers(MOD))
    # BOB has power 0, which meets the default invite level 0.
    room.allowed(MEMBER, CAROL, restricted_join(BOB), CAROL, signers=_signers(BOB))
    room.rejected("member.join.authoriser_not_joined", MEMBER, CAROL, restricted_join(None), CAROL)
    room.rejected(
        "member.join.authoriser_not_joined",
        MEMBER,
        CAROL,
        restricted_join(DAVE),
        CAROL,
        signers=_signers(DAVE),
    )
    # Invited (or joined) users need no authoriser.
    room.member(BOB, CAROL, "invite")
    room.allowed(MEMBER, CAROL, restricted_join(None), CAROL)


@pytest.mark.parametrize("version", RESTRICTED_VERSIONS)
def test_restricted_join_authoriser_cannot_invite(version: str) -> None:
    room = Room(version, join_rule="restricted")
    room.set_power_levels(invite=50)
    room.allowed(MEMBER, CAROL, restricted_join(MOD), CAROL, signers=_signers(MOD))
    room.rejected(
        "member.join.authoriser_cannot_invite",
        MEMBER,
        CAROL,
        restricted_join(BOB),
        CAROL,
        signers=_signers(BOB),
    )


@pytest.mark.parametrize("version", RESTRICTED_VERSIONS)
def test_authoriser_must_sign(version: str) -> None:
    room = Room(version, join_rule="restricted")
    room.rejected("member.authoriser_not_signed", MEMBER, CAROL, restricted_join(MOD), CAROL)
    room.rejected(
        "member.authoriser_not_signed",
        MEMBER,
        CAROL,
        {"membership": "join", "join_authorised_via_users_server": 5},
        CAROL,
    )
    # The rule is about the key, whatever the membership.
    room.send(MEMBER, CAROL, restricted_join(MOD), CAROL, signers=_signers(MOD))
    room.rejected(
        "member.authoriser_not_signed",
        MEMBER,
        CAROL,
        {"membership": "leave", "join_authorised_via_users_server": MOD},
        CAROL,
    )


@pytest.mark.parametrize("version", ["1", "6"])
def test_authoriser_key_means_nothing_before_v8(version: str) -> None:
    room = Room(version)
    room.allowed(MEMBER, CAROL, restricted_join(DAVE), CAROL)


# ---------------------------------------------------------------------- rule 5.4 invite


@pytest.mark.parametrize("version", VERSIONS)
def test_invite(version: str) -> None:
    room = Room(version, join_rule="invite")
    room.allowed(MEMBER, BOB, {"membership": "invite"}, CAROL)
    room.rejected("member.invite.sender_not_joined", MEMBER, CAROL, {"membership": "invite"}, DAVE)
    room.rejected(
        "member.invite.target_joined_or_banned", MEMBER, BOB, {"membership": "invite"}, MOD
    )
    room.member(MOD, CAROL, "ban")
    room.rejected(
        "member.invite.target_joined_or_banned", MEMBER, BOB, {"membership": "invite"}, CAROL
    )
    # Re-inviting an invited user is fine.
    room.member(BOB, DAVE, "invite")
    room.allowed(MEMBER, BOB, {"membership": "invite"}, DAVE)


@pytest.mark.parametrize("version", VERSIONS)
def test_invite_power(version: str) -> None:
    room = Room(version)
    room.set_power_levels(invite=50)
    room.allowed(MEMBER, MOD, {"membership": "invite"}, CAROL)
    room.rejected("member.invite.insufficient_power", MEMBER, BOB, {"membership": "invite"}, CAROL)


# ----------------------------------------------------------- rule 5.4.1 3pid invites

SEED = bytes(range(32))
KEY = SigningKey(SEED)
OTHER_KEY = SigningKey(bytes(range(1, 33)))


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def sign(signed: dict[str, Any], key: SigningKey = KEY) -> dict[str, Any]:
    message = json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()
    signature = key.sign(message).signature
    return {**signed, "signatures": {"id.example": {"ed25519:0": b64(signature)}}}


def third_party_room(version: str, **tpi_content: Any) -> Room:
    room = Room(version, join_rule="invite")
    content = tpi_content or {"public_key": b64(bytes(KEY.verify_key))}
    room.send("m.room.third_party_invite", BOB, {"display_name": "c…", **content}, "tok")
    return room


def tpi_invite(signed: Any) -> dict[str, Any]:
    return {"membership": "invite", "third_party_invite": {"display_name": "c", "signed": signed}}


GOOD = {"mxid": CAROL, "token": "tok"}


@pytest.mark.parametrize("version", VERSIONS)
def test_third_party_invite_allowed(version: str) -> None:
    room = third_party_room(version)
    room.allowed(MEMBER, BOB, tpi_invite(sign(GOOD)), CAROL)


@pytest.mark.parametrize("version", VERSIONS)
def test_third_party_invite_public_keys_list(version: str) -> None:
    url_safe = base64.urlsafe_b64encode(bytes(KEY.verify_key)).decode().rstrip("=")
    room = third_party_room(
        version,
        public_key=b64(bytes(OTHER_KEY.verify_key)),
        public_keys=[{"public_key": "not base64!"}, {"public_key": url_safe}],
    )
    room.allowed(MEMBER, BOB, tpi_invite(sign(GOOD)), CAROL)


@pytest.mark.parametrize("version", VERSIONS)
def test_third_party_invite_rejections(version: str) -> None:
    room = third_party_room(version)
    r = room.rejected
    r(
        "member.invite.3pid.no_signed",
        MEMBER,
        BOB,
        {"membership": "invite", "third_party_invite": 1},
        CAROL,
    )
    r("member.invite.3pid.no_signed", MEMBER, BOB, tpi_invite(None), CAROL)
    r("member.invite.3pid.signed_incomplete", MEMBER, BOB, tpi_invite(sign({"mxid": CAROL})), CAROL)
    r(
        "member.invite.3pid.signed_incomplete",
        MEMBER,
        BOB,
        tpi_invite(sign({"token": "tok"})),
        CAROL,
    )
    r("member.invite.3pid.mxid_mismatch", MEMBER, BOB, tpi_invite(sign(GOOD)), DAVE)
    other_token = {"mxid": CAROL, "token": "nope"}
    r("member.invite.3pid.no_invite_event", MEMBER, BOB, tpi_invite(sign(other_token)), CAROL)
    r("member.invite.3pid.sender_mismatch", MEMBER, MOD, tpi_invite(sign(GOOD)), CAROL)
    bad = tpi_invite(sign(GOOD, OTHER_KEY))
    r("member.invite.3pid.bad_signature", MEMBER, BOB, bad, CAROL)
    tampered = tpi_invite({**sign(GOOD), "extra": 1})
    r("member.invite.3pid.bad_signature", MEMBER, BOB, tampered, CAROL)
    unsigned = tpi_invite(GOOD)
    r("member.invite.3pid.bad_signature", MEMBER, BOB, unsigned, CAROL)


@pytest.mark.parametrize("version", VERSIONS)
def test_third_party_invite_target_banned(version: str) -> None:
    room = third_party_room(version)
    room.member(MOD, CAROL, "ban")
    room.rejected("member.invite.3pid.target_banned", MEMBER, BOB, tpi_invite(sign(GOOD)), CAROL)


def test_third_party_invite_verifier_is_injectable() -> None:
    room = third_party_room("10")
    event = room.build(MEMBER, BOB, tpi_invite({"mxid": CAROL, "token": "tok"}), CAROL)
    seen: list[str] = []

    def verify(signed: Any, public_key: str) -> bool:
        seen.append(public_key)
        return True

    check_state_dependent_auth_rules(room.rv, event, room.auth_state(event), verify_signed=verify)
    assert seen == [b64(bytes(KEY.verify_key))]


# ------------------------------------------------------------------- rule 5.5 leave


@pytest.mark.parametrize("version", VERSIONS)
def test_leave_self(version: str) -> None:
    room = Room(version)
    room.allowed(MEMBER, BOB, {"membership": "leave"}, BOB)
    room.rejected("member.leave.not_member", MEMBER, CAROL, {"membership": "leave"}, CAROL)
    # Rejecting an invite.
    room.member(BOB, CAROL, "invite")
    room.allowed(MEMBER, CAROL, {"membership": "leave"}, CAROL)
    # Banned users cannot leave; users who left cannot leave again.
    room.member(MOD, CAROL, "ban")
    room.rejected("member.leave.not_member", MEMBER, CAROL, {"membership": "leave"}, CAROL)
    room.member(BOB, BOB, "leave")
    room.rejected("member.leave.not_member", MEMBER, BOB, {"membership": "leave"}, BOB)


@pytest.mark.parametrize("version", KNOCK_VERSIONS)
def test_leave_retracts_knock(version: str) -> None:
    room = Room(version, join_rule="knock")
    room.member(CAROL, CAROL, "knock")
    room.allowed(MEMBER, CAROL, {"membership": "leave"}, CAROL)


@pytest.mark.parametrize("version", VERSIONS)
def test_kick(version: str) -> None:
    room = Room(version)
    room.allowed(MEMBER, MOD, {"membership": "leave"}, BOB)
    room.allowed(MEMBER, ALICE, {"membership": "leave"}, MOD)
    room.rejected("member.leave.sender_not_joined", MEMBER, CAROL, {"membership": "leave"}, BOB)
    room.rejected("member.leave.kick_insufficient_power", MEMBER, BOB, {"membership": "leave"}, MOD)
    room.rejected(
        "member.leave.kick_target_too_powerful", MEMBER, MOD, {"membership": "leave"}, ALICE
    )
    # Equal power is not enough.
    room.set_power_levels(users={BOB: 50})
    room.rejected(
        "member.leave.kick_target_too_powerful", MEMBER, MOD, {"membership": "leave"}, BOB
    )
    # Kicking someone who is not in the room (revoking an invite) follows the same rule.
    room.allowed(MEMBER, MOD, {"membership": "leave"}, CAROL)


@pytest.mark.parametrize("version", VERSIONS)
def test_unban(version: str) -> None:
    room = Room(version)
    room.member(MOD, CAROL, "ban")
    room.allowed(MEMBER, MOD, {"membership": "leave"}, CAROL)
    room.set_power_levels(ban=60, kick=40)
    room.rejected(
        "member.leave.unban_insufficient_power", MEMBER, MOD, {"membership": "leave"}, CAROL
    )
    # The kick level is needed too.
    room.set_power_levels(ban=40, kick=60)
    room.rejected(
        "member.leave.kick_insufficient_power", MEMBER, MOD, {"membership": "leave"}, CAROL
    )


# --------------------------------------------------------------------- rule 5.6 ban


@pytest.mark.parametrize("version", VERSIONS)
def test_ban(version: str) -> None:
    room = Room(version)
    room.allowed(MEMBER, MOD, {"membership": "ban"}, BOB)
    room.allowed(MEMBER, MOD, {"membership": "ban"}, CAROL)  # not in the room
    room.rejected("member.ban.sender_not_joined", MEMBER, CAROL, {"membership": "ban"}, BOB)
    room.rejected("member.ban.insufficient_power", MEMBER, BOB, {"membership": "ban"}, CAROL)
    room.rejected("member.ban.target_too_powerful", MEMBER, MOD, {"membership": "ban"}, ALICE)
    room.set_power_levels(ban=100)
    room.rejected("member.ban.insufficient_power", MEMBER, MOD, {"membership": "ban"}, BOB)
    room.allowed(MEMBER, ALICE, {"membership": "ban"}, MOD)


@pytest.mark.parametrize("version", VERSIONS)
def test_ban_self_needs_power_above_self(version: str) -> None:
    room = Room(version)
    room.rejected("member.ban.target_too_powerful", MEMBER, MOD, {"membership": "ban"}, MOD)


# ------------------------------------------------------------------- rule 5.7 knock


@pytest.mark.parametrize("version", VERSIONS)
def test_knock(version: str) -> None:
    room = Room(version, join_rule="knock")
    if not room.rv.knock_join_rule:
        room.rejected("member.unknown_membership", MEMBER, CAROL, {"membership": "knock"}, CAROL)
        return
    room.allowed(MEMBER, CAROL, {"membership": "knock"}, CAROL)
    room.rejected("member.knock.not_sender", MEMBER, BOB, {"membership": "knock"}, CAROL)
    room.rejected("member.knock.already_member", MEMBER, BOB, {"membership": "knock"}, BOB)
    room.member(BOB, CAROL, "invite")
    room.rejected("member.knock.already_member", MEMBER, CAROL, {"membership": "knock"}, CAROL)
    room.member(MOD, DAVE, "ban")
    room.rejected("member.knock.already_member", MEMBER, DAVE, {"membership": "knock"}, DAVE)
    # Knocking again, or after leaving, is fine.
    room.member(CAROL, CAROL, "leave")
    room.member(CAROL, CAROL, "knock")
    room.allowed(MEMBER, CAROL, {"membership": "knock"}, CAROL)


@pytest.mark.parametrize("version", KNOCK_VERSIONS)
@pytest.mark.parametrize("join_rule", ["public", "invite", "restricted", "private"])
def test_knock_wrong_join_rule(version: str, join_rule: str) -> None:
    room = Room(version, join_rule=join_rule)
    room.rejected("member.knock.join_rule", MEMBER, CAROL, {"membership": "knock"}, CAROL)


@pytest.mark.parametrize("version", KNOCK_VERSIONS)
def test_knock_restricted(version: str) -> None:
    room = Room(version, join_rule="knock_restricted")
    if version in KNOCK_RESTRICTED_VERSIONS:
        room.allowed(MEMBER, CAROL, {"membership": "knock"}, CAROL)
    else:
        room.rejected("member.knock.join_rule", MEMBER, CAROL, {"membership": "knock"}, CAROL)


@pytest.mark.parametrize("version", KNOCK_VERSIONS)
def test_knock_then_invite_then_join(version: str) -> None:
    room = Room(version, join_rule="knock")
    room.member(CAROL, CAROL, "knock")
    room.rejected("member.join.not_invited", MEMBER, CAROL, {"membership": "join"}, CAROL)
    room.member(BOB, CAROL, "invite")
    room.member(CAROL, CAROL, "join")
