"""Hashes and event IDs: server-server-api.md › Signing Events, the Event Signing vectors."""

from __future__ import annotations

import copy

import pytest

from federation.core.builder import (
    check_content_hash,
    hash_and_sign_event,
    key_lookup,
    verify_event_signatures,
)
from federation.core.errors import EventFormatError
from federation.core.hashing import (
    compute_content_hash,
    compute_event_id,
    compute_reference_hash,
    event_from_pdu,
    room_id_from_create_event,
)
from federation.core.room_versions import get_room_version
from federation.core.signing import KnownKey, SigningKey, decode_base64, encode_base64
from tests.federation._vectors import load

KEY_VECTOR = load("signing-key.json")
KEY = SigningKey(decode_base64(KEY_VECTOR["seed_base64"]), "1")
SERVER = KEY_VECTOR["server_name"]
VECTORS = load("event-signing.json")["vectors"]
V = get_room_version


@pytest.mark.parametrize("vector", VECTORS, ids=["minimal", "message"])
def test_vector_content_hash(vector):
    digest = compute_content_hash(vector["input"])
    assert encode_base64(digest) == vector["derived"]["content_hash_sha256"]
    assert encode_base64(digest) == vector["expected"]["hashes"]["sha256"]
    check_content_hash(vector["expected"])


@pytest.mark.parametrize("vector", VECTORS, ids=["minimal", "message"])
@pytest.mark.parametrize("version", ["3", "4", "10"])
def test_vector_signatures_v1_to_v10_rules(vector, version):
    before = copy.deepcopy(vector["input"])
    signed = hash_and_sign_event(V(version), vector["input"], SERVER, KEY)
    assert vector["input"] == before
    assert signed == vector["expected"]
    lookup = key_lookup(V(version), {SERVER: {KEY.key_id: KnownKey(KEY.verify_key, 10**13)}})
    verify_event_signatures(V(version), signed, lookup)


def test_vector_signatures_v1_rules_with_event_id():
    # The second vector carries an event_id, so it is also a valid room v1 event.
    vector = VECTORS[1]
    assert hash_and_sign_event(V("1"), vector["input"], SERVER, KEY) == vector["expected"]
    assert compute_event_id(V("1"), vector["expected"]) == "$0:domain"


@pytest.mark.parametrize("vector", VECTORS, ids=["minimal", "message"])
@pytest.mark.parametrize("version", ["11", "12"])
def test_vector_signatures_v11_rules(vector, version):
    signed = hash_and_sign_event(V(version), vector["input"], SERVER, KEY)
    assert signed["hashes"] == vector["expected"]["hashes"]
    assert signed["signatures"][SERVER]["ed25519:1"] == vector["derived"]["signature_v11_plus"]


def test_vector_event_ids():
    vector = VECTORS[0]
    derived = vector["derived"]
    assert compute_event_id(V("3"), vector["expected"]) == derived["event_id_v3"]
    for version in ("4", "5", "6", "7", "8", "9", "10"):
        assert compute_event_id(V(version), vector["expected"]) == derived["event_id_v4_to_v10"]
    v11_signed = copy.deepcopy(vector["expected"])
    v11_signed["signatures"][SERVER]["ed25519:1"] = derived["signature_v11_plus"]
    for version in ("11", "12"):
        assert compute_event_id(V(version), v11_signed) == derived["event_id_v11_plus"]
        # Signatures and unsigned are not part of the reference hash.
        assert compute_event_id(V(version), vector["expected"]) == derived["event_id_v11_plus"]
    event = event_from_pdu(V("4"), vector["expected"])
    assert event.event_id == derived["event_id_v4_to_v10"] and event.type == "X"


def test_v1_event_ids_come_from_the_event():
    with pytest.raises(EventFormatError):
        compute_event_id(V("2"), VECTORS[0]["expected"])
    assert event_from_pdu(V("2"), VECTORS[1]["expected"]).event_id == "$0:domain"


def test_reference_hash_ignores_unsigned_signatures_and_age_ts():
    pdu = VECTORS[0]["expected"]
    ref = compute_reference_hash(V("10"), pdu)
    noisy = {**pdu, "unsigned": {"x": 1}, "signatures": {}, "age_ts": 5, "extra": "redacted"}
    assert compute_reference_hash(V("10"), noisy) == ref
    changed = {**pdu, "depth": 4}
    assert compute_reference_hash(V("10"), changed) != ref


def test_v12_room_id_from_create_event():
    create = hash_and_sign_event(
        V("12"),
        {
            "type": "m.room.create",
            "state_key": "",
            "sender": "@a:domain",
            "content": {"room_version": "12"},
            "depth": 1,
            "origin_server_ts": 1,
            "prev_events": [],
            "auth_events": [],
        },
        SERVER,
        KEY,
    )
    room_id = room_id_from_create_event(V("12"), create)
    assert room_id == "!" + compute_event_id(V("12"), create)[1:]
    assert len(room_id) == 44 and "+" not in room_id and "/" not in room_id


def test_content_hash_strips_only_unsigned_signatures_hashes():
    pdu = {"a": 1, "unsigned": {"b": 2}, "signatures": {"c": {}}, "hashes": {"sha256": "x"}}
    assert compute_content_hash(pdu) == compute_content_hash({"a": 1})
    assert compute_content_hash(pdu) != compute_content_hash({"a": 2})


def test_lenient_content_hash_for_old_rooms():
    pdu = {"content": {"big": 2**60, "f": 1.5}}
    with pytest.raises(Exception):
        compute_content_hash(pdu)
    assert len(compute_content_hash(pdu, strict=False)) == 32
