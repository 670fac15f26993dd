"""Checking an upload of cross-signing signatures (``POST /keys/signatures/upload``).

Spec: cross_signing.yaml › ``/keys/signatures/upload``: "The signed JSON object must match the
key previously uploaded or retrieved for the given key ID, with the exception of the
``signatures`` property, which contains the new signature(s) to add." Failures are reported per
user and key ID; an invalid signature has ``errcode: M_INVALID_SIGNATURE``.

What an uploader may sign (end_to_end_encryption.md › Cross-signing):

- one of their own **devices** (key ID = device ID) with their **self-signing** key;
- their own **master key** (key ID = its public key) with one of their **devices**' keys;
- **another user's master key** with their **user-signing** key.

Every new signature by the uploader on the object is checked with the key its key ID names;
signatures already stored, or made by others, are not taken from an upload. The function is
pure: it reads keys through :class:`KeyLookup` (the service fills one from storage) and returns
the signatures to store plus the failures.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from e2ee.errors import InvalidSignature
from e2ee.models import (
    MASTER,
    SELF_SIGNING,
    USER_SIGNING,
    CrossSigningKey,
    DeviceKeys,
    JsonObject,
    same_signed_content,
)
from e2ee.verify import signature_of, verify_signed_by

__all__ = [
    "BAD_JSON",
    "INVALID_SIGNATURE",
    "NOT_FOUND",
    "KeyLookup",
    "NewSignature",
    "SignatureFailure",
    "SignatureUploadResult",
    "check_signature_upload",
]

INVALID_SIGNATURE = "M_INVALID_SIGNATURE"
NOT_FOUND = "M_NOT_FOUND"
BAD_JSON = "M_BAD_JSON"


class KeyLookup(Protocol):
    """The stored keys a signature upload is checked against."""

    def device_keys(self, user_id: str, device_id: str) -> DeviceKeys | None:
        """The device's uploaded keys, or None."""
        ...

    def cross_signing_key(self, user_id: str, usage: str) -> CrossSigningKey | None:
        """The user's current key of ``usage`` (master, self_signing, user_signing), or None."""
        ...


@dataclass(frozen=True, slots=True)
class NewSignature:
    """A checked signature to store: ``signer``'s ``signer_key_id`` over target's key."""

    signer_user_id: str
    signer_key_id: str
    target_user_id: str
    #: a device ID, or the public key of a master key
    target_key_id: str
    signature: str


@dataclass(frozen=True, slots=True)
class SignatureFailure:
    """Why the signatures on one key were refused (the spec's ``failures`` entry)."""

    errcode: str
    error: str

    def to_json(self) -> dict[str, str]:
        return {"errcode": self.errcode, "error": self.error}


@dataclass
class SignatureUploadResult:
    """Signatures to store and failures by user ID and key ID."""

    signatures: list[NewSignature] = field(default_factory=list)
    failures: dict[str, dict[str, SignatureFailure]] = field(default_factory=dict)

    def fail(self, user_id: str, key_id: str, errcode: str, error: str) -> None:
        self.failures.setdefault(user_id, {})[key_id] = SignatureFailure(errcode, error)


class _Refused(Exception):
    def __init__(self, errcode: str, error: str) -> None:
        super().__init__(error)
        self.errcode = errcode
        self.error = error


def check_signature_upload(
    uploader: str, body: Mapping[str, Any], lookup: KeyLookup
) -> SignatureUploadResult:
    """Check every signed object of an upload.

    Args:
        uploader: the uploading user.
        body: ``{user_id: {key_id: signed object}}`` as sent.
        lookup: the stored keys.

    Returns:
        The new signatures that verified, and a failure for each key that did not.
    """
    result = SignatureUploadResult()
    for target_user, by_key in body.items():
        if not isinstance(by_key, Mapping):
            result.fail(str(target_user), "*", BAD_JSON, "expected an object of key IDs")
            continue
        for key_id, obj in by_key.items():
            try:
                if not isinstance(obj, Mapping):
                    raise _Refused(BAD_JSON, "the signed key must be an object")
                if target_user == uploader:
                    new = _own_key(uploader, key_id, obj, lookup)
                else:
                    new = _other_users_master_key(uploader, target_user, key_id, obj, lookup)
            except _Refused as e:
                result.fail(target_user, key_id, e.errcode, e.error)
            else:
                result.signatures.extend(new)
    return result


def _new_signatures_by(uploader: str, obj: JsonObject, stored: JsonObject) -> list[tuple[str, str]]:
    """``(key_id, signature)`` of the uploader's signatures on ``obj`` not already on ``stored``."""
    sigs = obj.get("signatures", {})
    by_key = sigs.get(uploader) if isinstance(sigs, Mapping) else None
    if not isinstance(by_key, Mapping):
        return []
    out = []
    for key_id, sig in by_key.items():
        if not isinstance(sig, str) or not isinstance(key_id, str):
            raise _Refused(BAD_JSON, "signatures must be strings")
        if signature_of(stored, uploader, key_id) != sig:
            out.append((key_id, sig))
    return out


def _check_matches(obj: JsonObject, stored: JsonObject) -> None:
    if not same_signed_content(obj, stored):
        raise _Refused(INVALID_SIGNATURE, "the signed object does not match the stored key")


def _verify(obj: JsonObject, signer: str, key_id: str, public_key: str) -> None:
    try:
        verify_signed_by(obj, signer, key_id, public_key)
    except InvalidSignature as e:
        raise _Refused(INVALID_SIGNATURE, str(e)) from None


def _own_key(uploader: str, key_id: str, obj: JsonObject, lookup: KeyLookup) -> list[NewSignature]:
    master = lookup.cross_signing_key(uploader, MASTER)
    if master is not None and key_id == master.public_key:
        # the master key, signed by one of the uploader's devices
        _check_matches(obj, master.json)
        out = []
        for signer_key_id, sig in _new_signatures_by(uploader, obj, master.json):
            algorithm, _, device_id = signer_key_id.partition(":")
            device = lookup.device_keys(uploader, device_id) if algorithm == "ed25519" else None
            if device is None or device.ed25519 is None:
                raise _Refused(INVALID_SIGNATURE, f"{signer_key_id} is not one of your devices")
            _verify(obj, uploader, signer_key_id, device.ed25519)
            out.append(NewSignature(uploader, signer_key_id, uploader, key_id, sig))
        if not out:
            raise _Refused(INVALID_SIGNATURE, "no new signature by one of your devices")
        return out
    # one of the uploader's devices, signed by their self-signing key
    device = lookup.device_keys(uploader, key_id)
    if device is None:
        raise _Refused(NOT_FOUND, "unknown device or key")
    _check_matches(obj, device.json)
    ssk = lookup.cross_signing_key(uploader, SELF_SIGNING)
    if ssk is None:
        raise _Refused(INVALID_SIGNATURE, "you have no self-signing key")
    return _signed_by_cross_signing_key(uploader, uploader, key_id, obj, device.json, ssk)


def _other_users_master_key(
    uploader: str, target: str, key_id: str, obj: JsonObject, lookup: KeyLookup
) -> list[NewSignature]:
    master = lookup.cross_signing_key(target, MASTER)
    if master is None or key_id != master.public_key:
        raise _Refused(NOT_FOUND, "only another user's current master key can be signed")
    _check_matches(obj, master.json)
    usk = lookup.cross_signing_key(uploader, USER_SIGNING)
    if usk is None:
        raise _Refused(INVALID_SIGNATURE, "you have no user-signing key")
    return _signed_by_cross_signing_key(uploader, target, key_id, obj, master.json, usk)


def _signed_by_cross_signing_key(
    uploader: str,
    target: str,
    key_id: str,
    obj: JsonObject,
    stored: JsonObject,
    signer: CrossSigningKey,
) -> list[NewSignature]:
    new = dict(_new_signatures_by(uploader, obj, stored))
    sig = new.pop(signer.key_id, None)
    if new:
        raise _Refused(INVALID_SIGNATURE, f"only your {signer.usage} key can sign this key")
    if sig is None:
        if signature_of(stored, uploader, signer.key_id) is not None:
            return []  # already stored: nothing new
        raise _Refused(INVALID_SIGNATURE, f"no signature by your {signer.usage} key")
    _verify(obj, uploader, signer.key_id, signer.public_key)
    return [NewSignature(uploader, signer.key_id, target, key_id, sig)]
