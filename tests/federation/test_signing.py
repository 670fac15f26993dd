"""Base64, keys and JSON signing: appendices.md › Unpadded Base64, › Signing JSON, › Checking
for a Signature, › Cryptographic Test Vectors; server-server-api.md › Retrieving server keys."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from federation.core.errors import SignatureError
from federation.core.signing import (
    MAX_KEY_VALIDITY_MS,
    KnownKey,
    SigningKey,
    VerifyKey,
    cap_valid_until,
    decode_base64,
    encode_base64,
    parse_server_keys,
    read_signing_keys,
    sign_json,
    verify_json_with_known_keys,
    verify_key_object,
    verify_signed_json,
    write_signing_keys,
)
from tests.federation._vectors import load

KEY_VECTOR = load("signing-key.json")
SEED = decode_base64(KEY_VECTOR["seed_base64"])
KEY = SigningKey(SEED, KEY_VECTOR["key_id"].split(":", 1)[1])
SERVER = KEY_VECTOR["server_name"]


@pytest.mark.parametrize("vector", load("unpadded-base64.json")["vectors"])
def test_vector_unpadded_base64(vector):
    raw = vector["input"].encode("ascii")
    assert encode_base64(raw) == vector["expected"]
    assert decode_base64(vector["expected"]) == raw


@given(st.binary(max_size=64))
def test_base64_round_trips(data):
    std, url = encode_base64(data), encode_base64(data, urlsafe=True)
    assert "=" not in std and "=" not in url and "+" not in url and "/" not in url
    assert decode_base64(std) == decode_base64(url) == data
    padded = std + "=" * (-len(std) % 4)
    assert decode_base64(padded) == data


@pytest.mark.parametrize("bad", ["Z", "Zm9v!", "Zm 9v", "Zé", "ZmA=A"])
def test_base64_rejects(bad):
    with pytest.raises(ValueError):
        decode_base64(bad)


def test_vector_signing_key():
    assert KEY.key_id == "ed25519:1"
    assert KEY.verify_key.to_base64() == KEY_VECTOR["derived"]["public_key_base64"]
    assert KEY.verify_key.key_id == "ed25519:1"
    assert verify_key_object(KEY.verify_key) == {"key": KEY_VECTOR["derived"]["public_key_base64"]}


@pytest.mark.parametrize("vector", load("json-signing.json")["vectors"])
def test_vector_json_signing(vector):
    signed = sign_json(vector["input"], SERVER, KEY)
    assert signed == vector["expected"]
    verify_signed_json(signed, SERVER, KEY.verify_key)
    assert "signatures" not in vector["input"]  # the input is not modified


def test_sign_keeps_unsigned_and_other_signatures():
    other = SigningKey.generate("other")
    obj = {"a": 1, "unsigned": {"age_ts": 5}}
    once = sign_json(obj, "one.example", other)
    twice = sign_json(once, SERVER, KEY)
    assert twice["unsigned"] == {"age_ts": 5}
    assert set(twice["signatures"]) == {"one.example", SERVER}
    verify_signed_json(twice, "one.example", other.verify_key)
    verify_signed_json(twice, SERVER, KEY.verify_key)
    # unsigned is not covered: changing it keeps the signature valid.
    verify_signed_json({**twice, "unsigned": {"x": 1}}, SERVER, KEY.verify_key)
    assert "signatures" not in once["signatures"]["one.example"]
    assert once["signatures"] is not twice["signatures"]


def test_verify_failures():
    signed = sign_json({"a": 1}, SERVER, KEY)
    with pytest.raises(SignatureError):
        verify_signed_json({**signed, "a": 2}, SERVER, KEY.verify_key)
    with pytest.raises(SignatureError):
        verify_signed_json(signed, "elsewhere", KEY.verify_key)
    with pytest.raises(SignatureError):
        verify_signed_json(signed, SERVER, SigningKey.generate("1").verify_key)
    other_id = SigningKey(SEED, "2").verify_key  # same key, different key ID: not found
    with pytest.raises(SignatureError):
        verify_signed_json(signed, SERVER, other_id)
    bad_b64 = {**signed, "signatures": {SERVER: {"ed25519:1": "!!!"}}}
    with pytest.raises(SignatureError):
        verify_signed_json(bad_b64, SERVER, KEY.verify_key)
    short = {**signed, "signatures": {SERVER: {"ed25519:1": "AAAA"}}}
    with pytest.raises(SignatureError):
        verify_signed_json(short, SERVER, KEY.verify_key)
    with pytest.raises(SignatureError):
        verify_signed_json({"a": 1}, SERVER, KEY.verify_key)


def test_key_file_round_trip():
    text = f"ed25519 1 {KEY_VECTOR['seed_base64']}\n\ned25519 a_b {encode_base64(bytes(32))}\n"
    keys = read_signing_keys(text)
    assert [k.key_id for k in keys] == ["ed25519:1", "ed25519:a_b"]
    assert keys[0].seed == SEED
    # The spec's seed ends in "XA1": its last 4 bits are not zero, so decoding must be lenient
    # and re-encoding gives the canonical "XA0".
    assert write_signing_keys(keys) == (
        f"ed25519 1 {encode_base64(SEED)}\ned25519 a_b {encode_base64(bytes(32))}\n"
    )
    assert encode_base64(SEED)[:-1] == KEY_VECTOR["seed_base64"][:-1]
    generated = SigningKey.generate("new")
    (again,) = read_signing_keys(write_signing_keys([generated]))
    assert again.seed == generated.seed and again.verify_key == generated.verify_key
    for bad in ["ed25519 1", "curve25519 1 AAAA", "ed25519 1 AAAA", "ed25519 1 !!"]:
        with pytest.raises(ValueError):
            read_signing_keys(bad)


def test_verify_key_from_base64():
    vk = VerifyKey.from_base64(KEY_VECTOR["derived"]["public_key_base64"], "ed25519:1")
    assert vk == KEY.verify_key and hash(vk) == hash(KEY.verify_key)
    for bad in ["!!", "AAAA"]:
        with pytest.raises(SignatureError):
            VerifyKey.from_base64(bad, "ed25519:x")


def test_known_key_validity():
    current = KnownKey(KEY.verify_key, valid_until_ts=1000)
    old = KnownKey(KEY.verify_key, expired_ts=1000)
    assert current.valid_at(1000, enforce_key_validity=True)
    assert not current.valid_at(1001, enforce_key_validity=True)
    assert current.valid_at(10**12, enforce_key_validity=False)  # v1-4 ignore valid_until_ts
    assert not KnownKey(KEY.verify_key).valid_at(1, enforce_key_validity=True)
    assert old.valid_at(1000, enforce_key_validity=True)
    assert not old.valid_at(1001, enforce_key_validity=False)  # expired before the event
    assert cap_valid_until(10**15, 5) == 5 + MAX_KEY_VALIDITY_MS
    assert cap_valid_until(7, 5) == 7


def test_verify_with_known_keys():
    other = SigningKey.generate("2")
    signed = sign_json(sign_json({"a": 1}, SERVER, KEY), SERVER, other)
    keys = {"ed25519:1": KnownKey(KEY.verify_key, valid_until_ts=2000)}
    verify_json_with_known_keys(signed, SERVER, keys)  # unknown ed25519:2 is skipped
    verify_json_with_known_keys(signed, SERVER, keys, at_ts=2000, enforce_key_validity=True)
    with pytest.raises(SignatureError):  # the only known key is not valid at 2001
        verify_json_with_known_keys(signed, SERVER, keys, at_ts=2001, enforce_key_validity=True)
    verify_json_with_known_keys(signed, SERVER, keys, at_ts=2001, enforce_key_validity=False)
    wrong = {"ed25519:2": KnownKey(KEY.verify_key, valid_until_ts=2000)}
    with pytest.raises(SignatureError):  # a known key whose signature fails is an error
        verify_json_with_known_keys(signed, SERVER, wrong)


def test_parse_server_keys():
    response = {
        "server_name": SERVER,
        "valid_until_ts": 10**15,
        "verify_keys": {"ed25519:1": verify_key_object(KEY.verify_key), "curve25519:x": {}},
        "old_verify_keys": {
            "ed25519:0": {"key": encode_base64(bytes(32)), "expired_ts": 500},
        },
    }
    keys = parse_server_keys(sign_json(response, SERVER, KEY), fetched_ts=100)
    assert keys["ed25519:1"].valid_until_ts == 100 + MAX_KEY_VALIDITY_MS
    assert keys["ed25519:0"].expired_ts == 500
    assert set(keys) == {"ed25519:1", "ed25519:0"}
    verify_json_with_known_keys(sign_json(response, SERVER, KEY), SERVER, keys)
    with pytest.raises(SignatureError):
        parse_server_keys({"old_verify_keys": {"ed25519:0": {"key": "AAAA"}}}, fetched_ts=0)
    with pytest.raises(SignatureError):
        parse_server_keys({"verify_keys": {"ed25519:0": {}}}, fetched_ts=0)
