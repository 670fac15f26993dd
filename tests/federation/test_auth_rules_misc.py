"""Auth rules around the create event in state, m.federate, m.room.aliases (v1-5) and
redactions (v1-2); the rule names."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from federation.core.auth_rules import (
    RULES,
    check_auth_rules,
    check_state_dependent_auth_rules,
)
from federation.core.errors import AuthError
from tests.federation._auth_rooms import ALICE, BOB, CAROL, CREATE, MOD, VERSIONS, Room

# ---------------------------------------------------------- the create event in state


@pytest.mark.parametrize("version", VERSIONS)
def test_create_event_missing_from_state(version: str) -> None:
    room = Room(version)
    event = room.build("m.room.message", BOB, {"body": "hi"})
    state = room.auth_state(event)
    check_state_dependent_auth_rules(room.rv, event, state)
    del state[CREATE]
    with pytest.raises(AuthError) as info:
        check_state_dependent_auth_rules(room.rv, event, state)
    assert info.value.rule == "create_event.missing"


@pytest.mark.parametrize("version", VERSIONS)
def test_create_event_of_another_room(version: str) -> None:
    room = Room(version)
    other_room = "!other:c.example" if room.rv.create_event_in_auth_events else None
    other_create = room.build(
        "m.room.create",
        CAROL,
        {**room.create.content, "creator": CAROL},
        "",
        prev=[],
        room_id=other_room,
    )
    event = room.build("m.room.message", BOB, {"body": "hi"})
    state = {**room.auth_state(event), CREATE: other_create}
    with pytest.raises(AuthError) as info:
        check_auth_rules(room.rv, event, state)
    assert info.value.rule == "create_event.wrong_room"


# ------------------------------------------------------------------ rule 4 m.federate


@pytest.mark.parametrize("version", VERSIONS)
def test_unfederated_room(version: str) -> None:
    room = Room(version, setup=False, create_content={"m.federate": False})
    room.member(ALICE, ALICE, "join")
    room.send("m.room.join_rules", ALICE, {"join_rule": "public"}, "")
    room.allowed("m.room.member", "@alice2:a.example", {"membership": "join"}, "@alice2:a.example")
    room.rejected("federate.disallowed", "m.room.member", BOB, {"membership": "join"}, BOB)
    # Only the sender's server counts: inviting a remote user is not this rule's business.
    room.allowed("m.room.member", ALICE, {"membership": "invite"}, BOB)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("federate", [True, "false", 0, None])
def test_federate_must_be_false_exactly(version: str, federate: object) -> None:
    room = Room(version, create_content={"m.federate": federate})
    room.allowed("m.room.member", CAROL, {"membership": "join"}, CAROL)


# ------------------------------------------------------------- m.room.aliases (v1-5)


@pytest.mark.parametrize("version", ["1", "3", "5"])
def test_aliases_special_case(version: str) -> None:
    room = Room(version)
    aliases = {"aliases": ["#a:c.example"]}
    # No membership or power needed: only the server's own key.
    room.allowed("m.room.aliases", CAROL, aliases, "c.example")
    room.allowed("m.room.aliases", BOB, aliases, "b.example")
    room.rejected(
        "aliases.state_key_not_sender_domain", "m.room.aliases", BOB, aliases, "a.example"
    )
    room.rejected("aliases.state_key_not_sender_domain", "m.room.aliases", BOB, aliases, "")
    room.rejected("aliases.no_state_key", "m.room.aliases", BOB, aliases)


@pytest.mark.parametrize("version", ["6", "8", "10", "11", "12"])
def test_aliases_ordinary_from_v6(version: str) -> None:
    room = Room(version)
    aliases = {"aliases": ["#a:c.example"]}
    room.rejected("sender_not_joined", "m.room.aliases", CAROL, aliases, "c.example")
    room.rejected("required_power_level", "m.room.aliases", BOB, aliases, "b.example")
    room.allowed("m.room.aliases", MOD, aliases, "a.example")


# --------------------------------------------------------------- redactions (v1-2)


@pytest.mark.parametrize("version", ["1", "2"])
def test_redaction_v1(version: str) -> None:
    room = Room(version)
    mods_event = room.state[("m.room.member", MOD)].event_id  # $N:b.example
    alices_event = room.state[("m.room.member", ALICE)].event_id  # $N:a.example
    redaction = "m.room.redaction"
    # Redacting an event from the same server (BOB and MOD share b.example).
    room.allowed(redaction, BOB, {}, redacts=mods_event)
    # Redacting another server's event needs the redact level.
    room.rejected("redaction.insufficient_power", redaction, BOB, {}, redacts=alices_event)
    room.rejected("redaction.insufficient_power", redaction, BOB, {})
    room.allowed(redaction, MOD, {}, redacts=alices_event)
    # The redaction's own event ID decides, whoever the sender is.
    room.allowed(redaction, BOB, {}, redacts=alices_event, event_id="$99:a.example")


@pytest.mark.parametrize("version", ["3", "6", "10", "11", "12"])
def test_redaction_not_checked_from_v3(version: str) -> None:
    room = Room(version)
    target = room.state[("m.room.member", ALICE)].event_id
    room.allowed("m.room.redaction", BOB, {"redacts": target}, redacts=target)
    room.rejected("sender_not_joined", "m.room.redaction", CAROL, {}, redacts=target)


# ------------------------------------------------------------------------ rule names


def test_rule_names_are_unique_and_dotted() -> None:
    assert all(name and " " not in name for name in RULES)
    assert len(RULES) == 62


# ----------------------------------------------------------- robustness (state res)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
interesting = st.sampled_from(
    [
        "membership",
        "join_authorised_via_users_server",
        "third_party_invite",
        "signed",
        "users",
        "events",
        "notifications",
        "ban",
        "kick",
        "users_default",
        "join_rule",
        "mxid",
        "token",
    ]
)
contents = st.dictionaries(interesting | st.text(max_size=3), json_values, max_size=5)


@given(
    version=st.sampled_from(VERSIONS),
    event_type=st.sampled_from(
        [
            "m.room.member",
            "m.room.power_levels",
            "m.room.third_party_invite",
            "m.room.aliases",
            "m.room.redaction",
            "m.room.message",
        ]
    ),
    content=contents,
    state_key=st.none() | st.sampled_from(["", BOB, CAROL, "b.example"]),
)
@settings(max_examples=300, deadline=None)
def test_malformed_content_only_raises_auth_error(
    version: str, event_type: str, content: dict[str, object], state_key: str | None
) -> None:
    room = Room(version)
    event = room.build(event_type, BOB, content, state_key)
    try:
        room.check(event)
    except AuthError as e:
        assert e.rule in RULES


@given(
    version=st.sampled_from(VERSIONS),
    create_content=contents,
    pl_content=contents,
    join_rules_content=contents,
    membership=st.sampled_from(["join", "invite", "leave", "ban", "knock"]),
)
@settings(max_examples=200, deadline=None)
def test_malformed_state_only_raises_auth_error(
    version: str,
    create_content: dict[str, object],
    pl_content: dict[str, object],
    join_rules_content: dict[str, object],
    membership: str,
) -> None:
    room = Room(version, create_content=create_content)
    room.add(room.build("m.room.power_levels", ALICE, pl_content, ""))
    room.add(room.build("m.room.join_rules", ALICE, join_rules_content, ""))
    for event in (
        room.build("m.room.member", MOD, {"membership": membership}, CAROL),
        room.build("m.room.member", CAROL, {"membership": membership}, CAROL),
        room.build("m.room.power_levels", MOD, pl_content, ""),
        room.build("m.room.message", BOB, {}),
    ):
        try:
            room.check(event)
        except AuthError as e:
            assert e.rule in RULES
