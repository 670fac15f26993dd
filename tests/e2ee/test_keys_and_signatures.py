"""e2ee.models, e2ee.verify, e2ee.cross_signing: parsing and signature checks."""

from __future__ import annotations

from typing import Any

import pytest

from e2ee.cross_signing import (
    CrossSigningUpload,
    check_cross_signing_upload,
    needs_reauthentication,
)
from e2ee.errors import (
    InvalidSignature,
    KeyFormatError,
    KeyIdInUse,
    KeyOwnerMismatch,
    MissingMasterKey,
)
from e2ee.models import (
    parse_cross_signing_key,
    parse_device_keys,
    parse_fallback_keys,
    parse_one_time_keys,
    split_key_id,
)
from e2ee.verify import verify_device_self_signature
from tests.e2ee._keys import ClientDevice, CrossSigning, sign

ALICE = "@alice:example.org"


def parsed(device: ClientDevice, obj=None):
    return parse_device_keys(
        obj if obj is not None else device.device_keys(),
        user_id=device.user_id,
        device_id=device.device_id,
    )


def test_device_keys_signed_by_the_device_verify():
    device = ClientDevice(ALICE, "DEV1")
    keys = parsed(device)
    assert keys.ed25519 == device.ed25519_public
    verify_device_self_signature(keys)


def test_device_keys_signed_by_another_key_are_refused():
    device, other = ClientDevice(ALICE, "DEV1"), ClientDevice(ALICE, "DEV1")
    obj = device.device_keys()
    obj["signatures"] = sign(
        {k: v for k, v in obj.items() if k != "signatures"}, ALICE, "ed25519:DEV1", other.ed25519
    )["signatures"]
    with pytest.raises(InvalidSignature):
        verify_device_self_signature(parsed(device, obj))


def test_tampered_device_keys_are_refused():
    device = ClientDevice(ALICE, "DEV1")
    obj = device.device_keys()
    obj["algorithms"] = ["m.olm.v1.curve25519-aes-sha2"]
    with pytest.raises(InvalidSignature):
        verify_device_self_signature(parsed(device, obj))


def test_unsigned_is_not_part_of_the_signature():
    device = ClientDevice(ALICE, "DEV1")
    obj = device.device_keys(unsigned={"device_display_name": "phone"})
    verify_device_self_signature(parsed(device, obj))


def test_unsigned_device_keys_are_refused():
    device = ClientDevice(ALICE, "DEV1")
    obj = device.device_keys()
    del obj["signatures"]
    with pytest.raises(InvalidSignature):
        verify_device_self_signature(parsed(device, obj))


@pytest.mark.parametrize("user_id, device_id", [("@mallory:example.org", "DEV1"), (ALICE, "OTHER")])
def test_device_keys_of_another_user_or_device_are_refused(user_id, device_id):
    device = ClientDevice(ALICE, "DEV1")
    with pytest.raises(KeyOwnerMismatch):
        parse_device_keys(device.device_keys(), user_id=user_id, device_id=device_id)


@pytest.mark.parametrize(
    "change",
    [
        lambda o: o.pop("algorithms"),
        lambda o: o.update(algorithms="m.megolm.v1.aes-sha2"),
        lambda o: o.update(keys=[]),
        lambda o: o["keys"].update({"nocolon": "x"}),
        lambda o: o["keys"].update({":x": "x"}),
        lambda o: o["keys"].update({"curve25519:DEV1": 5}),
        lambda o: o.update(signatures={ALICE: "sig"}),
        lambda o: o.update(extra=1.5),
        lambda o: o.update(extra=2**60),
        lambda o: o.update(unsigned=[]),
    ],
)
def test_malformed_device_keys(change: Any) -> None:
    device = ClientDevice(ALICE, "DEV1")
    obj = device.device_keys()
    change(obj)
    with pytest.raises(KeyFormatError):
        parsed(device, obj)


def test_key_id_rules():
    assert split_key_id("signed_curve25519:AAAA") == ("signed_curve25519", "AAAA")
    assert split_key_id("ed25519:a:b") == ("ed25519", "a:b")
    bad: Any
    for bad in ("", "x", ":y", "x:", 5, "a:" + "b" * 300):
        with pytest.raises(KeyFormatError):
            split_key_id(bad)


def test_one_time_keys_strings_and_objects():
    keys = parse_one_time_keys(
        {"curve25519:A": "abc", "signed_curve25519:B": {"key": "def", "signatures": {}}}
    )
    assert [(k.algorithm, k.key_id) for k in keys] == [
        ("curve25519", "A"),
        ("signed_curve25519", "B"),
    ]
    bad_maps: list[Any] = [{"a:b": 5}, {"a:b": {"nokey": 1}}, {"ab": "x"}, [], {"a:b": ""}]
    for bad in bad_maps:
        with pytest.raises(KeyFormatError):
            parse_one_time_keys(bad)


def test_fallback_keys_one_per_algorithm():
    parse_fallback_keys({"signed_curve25519:A": {"key": "x", "fallback": True}})
    with pytest.raises(KeyFormatError):
        parse_fallback_keys(
            {"signed_curve25519:A": {"key": "x"}, "signed_curve25519:B": {"key": "y"}}
        )


# --- cross-signing -------------------------------------------------------------------------------


def test_cross_signing_key_shape():
    cs = CrossSigning(ALICE)
    key = parse_cross_signing_key(cs.key_object("master", cs.master), user_id=ALICE, usage="master")
    assert key.public_key == cs.public(cs.master)
    assert key.key_id == f"ed25519:{key.public_key}"
    bad = cs.key_object("master", cs.master)
    bad["keys"]["ed25519:other"] = "other"
    with pytest.raises(KeyFormatError):
        parse_cross_signing_key(bad, user_id=ALICE, usage="master")
    with pytest.raises(KeyFormatError):
        parse_cross_signing_key(
            cs.key_object("master", cs.master), user_id=ALICE, usage="self_signing"
        )
    with pytest.raises(KeyOwnerMismatch):
        parse_cross_signing_key(
            cs.key_object("master", cs.master), user_id="@bob:example.org", usage="master"
        )
    wrong_value = cs.key_object("master", cs.master)
    wrong_value["keys"] = {cs.key_id(cs.master): "somethingelse"}
    with pytest.raises(KeyFormatError):
        parse_cross_signing_key(wrong_value, user_id=ALICE, usage="master")


def test_first_upload_is_checked_and_needs_no_uia():
    cs = CrossSigning(ALICE)
    upload = CrossSigningUpload.parse(cs.upload_body(), ALICE)
    assert not needs_reauthentication(upload, {})
    keys = check_cross_signing_upload(upload, {}, ["DEV1"])
    assert [k.usage for k in keys] == ["master", "self_signing", "user_signing"]


def test_signing_keys_must_be_signed_by_the_master_key():
    cs, other = CrossSigning(ALICE), CrossSigning(ALICE)
    body = cs.upload_body()
    body["self_signing_key"] = other.key_object("self_signing", cs.self_signing)
    with pytest.raises(InvalidSignature):
        check_cross_signing_upload(CrossSigningUpload.parse(body, ALICE), {}, [])


def test_signing_key_alone_uses_the_stored_master_key():
    cs = CrossSigning(ALICE)
    stored = {
        k.usage: k
        for k in check_cross_signing_upload(
            CrossSigningUpload.parse(cs.upload_body(), ALICE), {}, []
        )
    }
    new_ssk = CrossSigning(ALICE)
    new_ssk.master = cs.master
    body = {"self_signing_key": new_ssk.key_object("self_signing", new_ssk.self_signing)}
    upload = CrossSigningUpload.parse(body, ALICE)
    assert [k.usage for k in check_cross_signing_upload(upload, stored, [])] == ["self_signing"]
    assert needs_reauthentication(upload, stored)
    with pytest.raises(MissingMasterKey):
        check_cross_signing_upload(upload, {}, [])


def test_reupload_of_the_same_keys_needs_no_uia_but_new_ones_do():
    cs = CrossSigning(ALICE)
    body = cs.upload_body()
    stored = {
        k.usage: k
        for k in check_cross_signing_upload(CrossSigningUpload.parse(body, ALICE), {}, [])
    }
    assert not needs_reauthentication(CrossSigningUpload.parse(body, ALICE), stored)
    assert needs_reauthentication(
        CrossSigningUpload.parse(CrossSigning(ALICE).upload_body(), ALICE), stored
    )


def test_public_key_equal_to_a_device_id_is_forbidden():
    cs = CrossSigning(ALICE)
    with pytest.raises(KeyIdInUse):
        check_cross_signing_upload(
            CrossSigningUpload.parse(cs.upload_body(), ALICE), {}, [cs.public(cs.master)]
        )


def test_device_keys_named_after_no_device_are_kept_but_not_its_own() -> None:
    """As Synapse, a key whose ID is not the device's is stored (SyTest uploads ``ed25519:test``);
    it is never taken for the device's own key."""
    device = ClientDevice(ALICE, "DEV1")
    obj = device.device_keys()
    obj["keys"] = {"ed25519:test": "x", "curve25519:OTHER": "y"}
    keys = parsed(device, obj)
    assert keys.keys == {"ed25519:test": "x", "curve25519:OTHER": "y"}
    assert keys.ed25519 is None
