"""e2ee.signatures: which signatures an upload may add, checked against a fake key lookup."""

from __future__ import annotations

import pytest

from e2ee.models import parse_cross_signing_key, parse_device_keys
from e2ee.signatures import check_signature_upload
from tests.e2ee._keys import ClientDevice, CrossSigning, sign
from tests.fakes import FakeKeyLookup

ALICE = "@alice:example.org"
BOB = "@bob:example.org"


@pytest.fixture
def world():
    lookup = FakeKeyLookup()
    alice_dev = ClientDevice(ALICE, "ADEV")
    bob_dev = ClientDevice(BOB, "BDEV")
    alice_cs, bob_cs = CrossSigning(ALICE), CrossSigning(BOB)
    for dev in (alice_dev, bob_dev):
        lookup.add_device(
            parse_device_keys(dev.device_keys(), user_id=dev.user_id, device_id=dev.device_id)
        )
    for cs in (alice_cs, bob_cs):
        for usage, key in (
            ("master", cs.master),
            ("self_signing", cs.self_signing),
            ("user_signing", cs.user_signing),
        ):
            lookup.add_cross_signing_key(
                parse_cross_signing_key(cs.key_object(usage, key), user_id=cs.user_id, usage=usage)
            )
    return lookup, alice_dev, bob_dev, alice_cs, bob_cs


def test_own_device_signed_by_self_signing_key(world):
    lookup, alice_dev, _, alice_cs, _ = world
    signed = sign(
        alice_dev.device_keys(),
        ALICE,
        alice_cs.key_id(alice_cs.self_signing),
        alice_cs.self_signing,
    )
    result = check_signature_upload(ALICE, {ALICE: {"ADEV": signed}}, lookup)
    assert result.failures == {}
    (sig,) = result.signatures
    assert (sig.target_user_id, sig.target_key_id, sig.signer_key_id) == (
        ALICE,
        "ADEV",
        alice_cs.key_id(alice_cs.self_signing),
    )


def test_own_master_key_signed_by_a_device(world):
    lookup, alice_dev, _, alice_cs, _ = world
    master = sign(
        alice_cs.key_object("master", alice_cs.master), ALICE, alice_dev.key_id, alice_dev.ed25519
    )
    result = check_signature_upload(
        ALICE, {ALICE: {alice_cs.public(alice_cs.master): master}}, lookup
    )
    assert result.failures == {} and len(result.signatures) == 1
    assert result.signatures[0].signer_key_id == "ed25519:ADEV"


def test_other_users_master_key_signed_by_user_signing_key(world):
    lookup, _, _, alice_cs, bob_cs = world
    bob_master = sign(
        bob_cs.key_object("master", bob_cs.master),
        ALICE,
        alice_cs.key_id(alice_cs.user_signing),
        alice_cs.user_signing,
    )
    result = check_signature_upload(
        ALICE, {BOB: {bob_cs.public(bob_cs.master): bob_master}}, lookup
    )
    assert result.failures == {}
    assert result.signatures[0].target_user_id == BOB


def test_wrong_signer_and_wrong_objects_fail_per_key(world):
    lookup, alice_dev, bob_dev, alice_cs, _ = world
    # own device signed with the master key instead of the self-signing key
    by_master = sign(
        alice_dev.device_keys(), ALICE, alice_cs.key_id(alice_cs.master), alice_cs.master
    )
    # a bad signature under the self-signing key's ID
    forged = sign(
        alice_dev.device_keys(), ALICE, alice_cs.key_id(alice_cs.self_signing), alice_cs.master
    )
    # another user's *device* (only master keys of others may be signed)
    bobs_device = sign(
        bob_dev.device_keys(), ALICE, alice_cs.key_id(alice_cs.user_signing), alice_cs.user_signing
    )
    # an object that is not the stored key
    other = ClientDevice(ALICE, "ADEV")
    not_stored = sign(
        other.device_keys(), ALICE, alice_cs.key_id(alice_cs.self_signing), alice_cs.self_signing
    )
    body = {
        ALICE: {"ADEV": by_master, "UNKNOWN": forged, "X": "not an object"},
        BOB: {"BDEV": bobs_device},
    }
    result = check_signature_upload(ALICE, body, lookup)
    assert result.signatures == []
    assert result.failures[ALICE]["ADEV"].errcode == "M_INVALID_SIGNATURE"
    assert result.failures[ALICE]["UNKNOWN"].errcode == "M_NOT_FOUND"
    assert result.failures[ALICE]["X"].errcode == "M_BAD_JSON"
    assert result.failures[BOB]["BDEV"].errcode == "M_NOT_FOUND"
    for obj in (forged, not_stored):
        result = check_signature_upload(ALICE, {ALICE: {"ADEV": obj}}, lookup)
        assert result.failures[ALICE]["ADEV"].errcode == "M_INVALID_SIGNATURE"
        assert result.failures[ALICE]["ADEV"].to_json()["errcode"] == "M_INVALID_SIGNATURE"


def test_master_key_signed_by_unknown_device_fails(world):
    lookup, _, _, alice_cs, _ = world
    stranger = ClientDevice(ALICE, "NOPE")
    master = sign(
        alice_cs.key_object("master", alice_cs.master), ALICE, stranger.key_id, stranger.ed25519
    )
    result = check_signature_upload(
        ALICE, {ALICE: {alice_cs.public(alice_cs.master): master}}, lookup
    )
    assert result.failures[ALICE][alice_cs.public(alice_cs.master)].errcode == "M_INVALID_SIGNATURE"


def test_signatures_already_stored_are_not_new(world):
    lookup, alice_dev, _, alice_cs, _ = world
    signed = sign(
        alice_dev.device_keys(),
        ALICE,
        alice_cs.key_id(alice_cs.self_signing),
        alice_cs.self_signing,
    )
    lookup.add_device(parse_device_keys(signed, user_id=ALICE, device_id="ADEV"))
    result = check_signature_upload(ALICE, {ALICE: {"ADEV": signed}}, lookup)
    assert result.signatures == [] and result.failures == {}
