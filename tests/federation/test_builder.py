"""Building events and the checks on received events (server-server-api.md › Signing Events,
› Checks performed on receipt of a PDU; client-server-api › Size limits; rooms/v12.md)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from federation.core.builder import (
    MAX_PDU_BYTES,
    build_event,
    check_content_hash,
    check_event_format,
    check_received_event,
    hash_and_sign_event,
    key_lookup,
    required_signature_servers,
    verify_event_signatures,
)
from federation.core.errors import (
    ContentHashError,
    EventFormatError,
    SignatureError,
)
from federation.core.events import Event
from federation.core.hashing import compute_event_id, room_id_from_create_event
from federation.core.ids import parse_event_id
from federation.core.room_versions import get_room_version
from federation.core.signing import KnownKey, SigningKey, VerifyKey

HS = "hs.example"
KEY = SigningKey(bytes(range(32)), "a1")
OTHER = SigningKey(bytes(range(1, 33)), "b2")
TS = 1_700_000_000_000
KEYS = {
    HS: {KEY.key_id: KnownKey(KEY.verify_key, valid_until_ts=TS + 1000)},
    "other.example": {OTHER.key_id: KnownKey(OTHER.verify_key, valid_until_ts=TS + 1000)},
}
V = get_room_version


def lookup_for(version: str):
    return key_lookup(V(version), KEYS)


def make(version: str, **overrides) -> Event:
    rv = V(version)
    if rv.event_ids_in_event:
        prev, auth = ["$p:" + HS], ["$c:" + HS, "$m:" + HS]
    elif version == "3":
        prev, auth = ["$" + "A+" * 21 + "A"], ["$" + "B/" * 21 + "B"]
    else:
        prev, auth = ["$" + "A-" * 21 + "A"], ["$" + "B_" * 21 + "B"]
    room_id = ("!" + "R" * 43) if version == "12" else "!room:" + HS
    args: dict[str, Any] = dict(
        room_id=room_id,
        sender="@alice:" + HS,
        type="m.room.message",
        content={"body": "hello", "msgtype": "m.text"},
        prev_event_ids=prev,
        auth_event_ids=auth,
        depth=5,
        origin_server_ts=TS,
        origin=HS,
        signing_key=KEY,
    )
    args.update(overrides)
    return build_event(rv, **args)


def receive(version: str, pdu) -> Event:
    """The receipt pipeline up to auth: format, signatures, hash, event ID."""
    rv = V(version)
    check_event_format(rv, pdu)
    verify_event_signatures(rv, pdu, lookup_for(version))
    check_content_hash(pdu, strict=rv.strict_canonical_json)
    return Event(rv, pdu, compute_event_id(rv, pdu))


@pytest.mark.parametrize("version", ["1", "2", "3", "4", "6", "8", "10", "11", "12"])
def test_round_trip(version):
    event = make(version)
    parse_event_id(event.event_id, V(version))
    received = receive(version, copy.deepcopy(dict(event.pdu)))
    assert received.event_id == event.event_id
    assert received.sender == "@alice:" + HS
    assert list(received.prev_event_ids) == list(event.prev_event_ids)
    assert event.pdu["signatures"][HS][KEY.key_id]


def test_v1_event_ids_and_refs():
    event = make(
        "1",
        event_hashes={
            "$p:hs.example": {"sha256": "abc"},
            "$c:hs.example": {},
            "$m:hs.example": {"sha256": "def"},
        },
    )
    assert event.event_id.startswith("$") and event.event_id.endswith(":" + HS)
    assert event.pdu["event_id"] == event.event_id
    assert event.pdu["prev_events"] == [["$p:hs.example", {"sha256": "abc"}]]
    assert list(event.auth_event_ids) == ["$c:hs.example", "$m:hs.example"]
    empty = make("2")  # no hashes known: empty objects, as Synapse writes them
    assert empty.pdu["prev_events"] == [["$p:hs.example", {}]]
    fixed = make("1", event_id="$fixed:hs.example", event_hashes=lambda eid: {"sha256": "x"})
    assert fixed.event_id == "$fixed:hs.example"
    assert fixed.pdu["auth_events"][0] == ["$c:hs.example", {"sha256": "x"}]


def test_v12_create_and_room_id():
    create = build_event(
        V("12"),
        room_id=None,
        sender="@alice:" + HS,
        type="m.room.create",
        state_key="",
        content={"room_version": "12"},
        prev_event_ids=[],
        auth_event_ids=[],
        depth=1,
        origin_server_ts=TS,
        origin=HS,
        signing_key=KEY,
    )
    assert "room_id" not in create.pdu
    room_id = room_id_from_create_event(V("12"), create.pdu)
    assert room_id == "!" + create.event_id[1:]
    receive("12", dict(create.pdu))
    member = make(
        "12",
        room_id=room_id,
        type="m.room.member",
        state_key="@alice:" + HS,
        content={"membership": "join"},
        prev_event_ids=[create.event_id],
    )
    receive("12", dict(member.pdu))
    # The create event must not be an auth event in v12.
    bad = make("12", room_id=room_id, auth_event_ids=[create.event_id])
    with pytest.raises(EventFormatError, match="create event"):
        check_event_format(V("12"), bad.pdu)
    with pytest.raises(EventFormatError):  # only a v12 create event may lack a room_id
        make("12", room_id=None)
    with pytest.raises(EventFormatError):
        make("11", room_id=None, type="m.room.create", state_key="")
    with pytest.raises(EventFormatError, match="no room_id"):
        check_event_format(V("12"), {**create.pdu, "room_id": room_id})


def test_redacts_placement():
    old = make("10", type="m.room.redaction", redacts="$" + "x" * 43)
    assert old.pdu["redacts"] == "$" + "x" * 43 and "redacts" not in old.pdu["content"]
    new = make("11", type="m.room.redaction", redacts="$" + "x" * 43)
    assert new.pdu["content"]["redacts"] == "$" + "x" * 43 and "redacts" not in new.pdu
    assert old.redacts == new.redacts
    receive("10", dict(old.pdu))
    receive("11", dict(new.pdu))


# --- tampering -------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["1", "3", "4", "11", "12"])
def test_altered_content_fails_hash_not_signature(version):
    pdu = copy.deepcopy(dict(make(version).pdu))
    pdu["content"]["body"] = "evil"
    rv = V(version)
    check_event_format(rv, pdu)
    verify_event_signatures(rv, pdu, lookup_for(version))  # content is not signed directly
    with pytest.raises(ContentHashError):
        check_content_hash(pdu)


@pytest.mark.parametrize("version", ["1", "3", "4", "11", "12"])
def test_altered_essential_field_fails_signature(version):
    pdu = copy.deepcopy(dict(make(version).pdu))
    pdu["depth"] = 6
    with pytest.raises(SignatureError):
        verify_event_signatures(V(version), pdu, lookup_for(version))


@pytest.mark.parametrize("version", ["1", "4", "11"])
def test_bad_or_missing_signatures(version):
    rv = V(version)
    pdu = copy.deepcopy(dict(make(version).pdu))
    sig = pdu["signatures"][HS][KEY.key_id]
    pdu["signatures"][HS][KEY.key_id] = ("B" if sig[0] != "B" else "C") + sig[1:]
    with pytest.raises(SignatureError):
        verify_event_signatures(rv, pdu, lookup_for(version))
    pdu["signatures"] = {}
    with pytest.raises(SignatureError):
        verify_event_signatures(rv, pdu, lookup_for(version))
    # Only a signature by an unknown key: unknown keys are skipped, leaving none.
    unknown = SigningKey.generate("zz")
    resigned = hash_and_sign_event(
        rv, {k: v for k, v in make(version).pdu.items() if k != "signatures"}, HS, unknown
    )
    with pytest.raises(SignatureError):
        verify_event_signatures(rv, resigned, lookup_for(version))
    # ...but an extra signature by an unknown key next to a good one is ignored.
    both = hash_and_sign_event(rv, make(version).pdu, HS, unknown)
    verify_event_signatures(rv, both, lookup_for(version))


def test_redacted_copy_still_verifies():
    from federation.core.redaction import redact

    for version in ("1", "4", "11", "12"):
        pdu = dict(make(version).pdu)
        verify_event_signatures(V(version), redact(V(version), pdu), lookup_for(version))


def test_key_validity_by_room_version():
    expired_keys = {HS: {KEY.key_id: KnownKey(KEY.verify_key, valid_until_ts=TS - 1)}}
    v4, v5 = make("4"), make("5")
    verify_event_signatures(V("4"), v4.pdu, key_lookup(V("4"), expired_keys))  # ignored < v5
    with pytest.raises(SignatureError):
        verify_event_signatures(V("5"), v5.pdu, key_lookup(V("5"), expired_keys))
    old_keys = {HS: {KEY.key_id: KnownKey(KEY.verify_key, expired_ts=TS - 1)}}
    with pytest.raises(SignatureError):  # an old key that expired before the event
        verify_event_signatures(V("4"), v4.pdu, key_lookup(V("4"), old_keys))


def test_lookup_receives_server_key_and_ts():
    calls = []

    def lookup(server, key_id, ts) -> VerifyKey | None:
        calls.append((server, key_id, ts))
        return KEY.verify_key if server == HS else None

    verify_event_signatures(V("11"), make("11").pdu, lookup)
    assert calls == [(HS, KEY.key_id, TS)]


def test_required_servers():
    v1 = make("1", event_id="$x:other.example")
    assert required_signature_servers(V("1"), v1.pdu) == {HS, "other.example"}
    with pytest.raises(SignatureError):  # the event ID's server did not sign
        verify_event_signatures(V("1"), v1.pdu, lookup_for("1"))
    cosigned = hash_and_sign_event(V("1"), v1.pdu, "other.example", OTHER)
    verify_event_signatures(V("1"), cosigned, lookup_for("1"))

    join = make(
        "8",
        type="m.room.member",
        state_key="@alice:" + HS,
        content={"membership": "join", "join_authorised_via_users_server": "@bob:other.example"},
    )
    assert required_signature_servers(V("8"), join.pdu) == {HS, "other.example"}
    assert required_signature_servers(V("7"), join.pdu) == {HS}
    with pytest.raises(SignatureError):
        verify_event_signatures(V("8"), join.pdu, lookup_for("8"))
    authorised = hash_and_sign_event(V("8"), join.pdu, "other.example", OTHER)
    verify_event_signatures(V("8"), authorised, lookup_for("8"))

    invite = make(
        "11",
        type="m.room.member",
        state_key="@carol:x.example",
        content={"membership": "invite", "third_party_invite": {"signed": {}}},
    )
    assert required_signature_servers(V("11"), invite.pdu) == set()


# --- format ----------------------------------------------------------------------------------


def test_oversize_event_rejected():
    small = make("11")
    check_event_format(V("11"), small.pdu)
    big = make("11", content={"body": "x" * MAX_PDU_BYTES})
    with pytest.raises(EventFormatError, match="bytes"):
        check_event_format(V("11"), big.pdu)
    # Right at the limit is fine: pad the body so the event is exactly 65,536 bytes.
    from federation.core.canonicaljson import encode_canonical_json

    base = len(encode_canonical_json(make("11", content={"body": ""}).pdu))
    exact = make("11", content={"body": "x" * (MAX_PDU_BYTES - base)})
    assert len(encode_canonical_json(exact.pdu)) == MAX_PDU_BYTES
    check_event_format(V("11"), exact.pdu)


def broken(version: str, **changes):
    pdu = dict(make(version).pdu)
    for k, v in changes.items():
        if v is None:
            pdu.pop(k)
        else:
            pdu[k] = v
    return pdu


@pytest.mark.parametrize(
    ("version", "changes"),
    [
        ("11", {"type": None}),
        ("11", {"type": 5}),
        ("11", {"type": "t" * 256}),
        ("11", {"sender": None}),
        ("11", {"sender": "alice"}),
        ("11", {"sender": "@" + "a" * 250 + ":hs.example"}),
        ("11", {"content": None}),
        ("11", {"content": []}),
        ("11", {"depth": None}),
        ("11", {"depth": "5"}),
        ("11", {"depth": True}),
        ("11", {"depth": -1}),
        ("11", {"origin_server_ts": None}),
        ("11", {"hashes": None}),
        ("11", {"hashes": {"sha512": "x"}}),
        ("11", {"signatures": None}),
        ("11", {"state_key": "s" * 256}),
        ("11", {"state_key": 1}),
        ("11", {"room_id": None}),
        ("11", {"room_id": "!" + "R" * 43}),
        ("12", {"room_id": "!room:hs.example"}),
        ("11", {"room_id": "!" + "r" * 250 + ":hs.example"}),
        ("11", {"prev_events": None}),
        ("11", {"prev_events": ["$" + "A" * 43] * 21}),
        ("11", {"auth_events": ["$" + "A" * 43] * 11}),
        ("11", {"auth_events": [["$x:hs.example", {}]]}),
        ("11", {"prev_events": ["$x:hs.example"]}),
        ("1", {"prev_events": ["$x:hs.example"]}),
        ("1", {"event_id": None}),
        ("1", {"event_id": "$" + "e" * 250 + ":hs.example"}),
        ("10", {"redacts": 5}),
        ("11", {"unsigned": []}),
        ("6", {"depth": 2**53}),
        ("11", {"content": {"f": 1.5}}),
    ],
)
def test_format_errors(version, changes):
    with pytest.raises(EventFormatError):
        check_event_format(V(version), broken(version, **changes))


def test_lenient_json_in_old_rooms():
    # v1-5 events "might not be fully compliant": big ints are accepted and hashed.
    rv = V("4")
    pdu = hash_and_sign_event(rv, {**make("4").pdu, "content": {"n": 2**60}}, HS, KEY)
    check_event_format(rv, pdu)
    check_content_hash(pdu, strict=False)
    verify_event_signatures(rv, pdu, lookup_for("4"))
    with pytest.raises(EventFormatError):
        check_event_format(V("6"), pdu)
    with pytest.raises(EventFormatError):
        check_event_format(V("4"), "not an object")


def test_content_hash_errors():
    pdu = dict(make("11").pdu)
    for hashes in ({}, {"sha256": "!!"}, {"sha256": 5}, None):
        bad = {**pdu, "hashes": hashes}
        with pytest.raises(ContentHashError):
            check_content_hash(bad)
    assert issubclass(ContentHashError, EventFormatError)


@pytest.mark.parametrize("version", ["1", "3", "4", "11", "12"])
def test_check_received_event(version):
    rv = V(version)
    built = make(version)
    event, ok = check_received_event(rv, copy.deepcopy(dict(built.pdu)), lookup_for(version))
    assert ok and event.event_id == built.event_id and event.pdu == built.pdu
    tampered = copy.deepcopy(dict(built.pdu))
    tampered["content"]["body"] = "evil"
    event, ok = check_received_event(rv, tampered, lookup_for(version))
    assert not ok and event.event_id == built.event_id
    assert event.content == {} and "body" not in event.pdu["content"]  # the redacted copy
    with pytest.raises(SignatureError):
        check_received_event(rv, {**built.pdu, "depth": 99}, lookup_for(version))
    with pytest.raises(EventFormatError):
        check_received_event(rv, {**built.pdu, "depth": "99"}, lookup_for(version))


def test_verify_returns_reference_hash():
    from federation.core.hashing import compute_reference_hash

    for version in ("3", "11"):
        event = make(version)
        digest = verify_event_signatures(V(version), event.pdu, lookup_for(version))
        assert digest == compute_reference_hash(V(version), event.pdu)
