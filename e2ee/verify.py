"""Checking the signatures on device keys and cross-signing keys.

Spec: appendices.md › Signing JSON (what is signed: canonical JSON without ``signatures`` and
``unsigned``), end_to_end_encryption.md › Device keys ("signatures ... the device MUST sign
the object with its ed25519 key"), › Cross-signing (the self-signing and user-signing keys are
signed by the master key; devices by the self-signing key; other users' master keys by the
user-signing key).

The cryptography is :mod:`federation.core.signing` (pynacl ed25519 over
:func:`~federation.core.signing.signed_bytes`); this module only says which key must have
signed what, with the signer's user ID in the place of a server name.
"""

from __future__ import annotations

from collections.abc import Mapping

from e2ee.errors import InvalidSignature
from e2ee.models import CrossSigningKey, DeviceKeys, JsonObject
from federation.core.errors import CanonicalJSONError, SignatureError
from federation.core.signing import VerifyKey, decode_base64, signed_bytes

__all__ = [
    "signature_of",
    "verify_device_self_signature",
    "verify_signed_by",
    "verify_signed_by_cross_signing_key",
]


def signature_of(obj: JsonObject, signer_user_id: str, key_id: str) -> str | None:
    """The signature ``signer_user_id`` made with ``key_id`` on ``obj``, if there is one."""
    sigs = obj.get("signatures")
    if not isinstance(sigs, Mapping):
        return None
    by_key = sigs.get(signer_user_id)
    if not isinstance(by_key, Mapping):
        return None
    sig = by_key.get(key_id)
    return sig if isinstance(sig, str) else None


def verify_signed_by(obj: JsonObject, signer_user_id: str, key_id: str, public_key: str) -> None:
    """Check that ``obj`` carries a valid signature by ``public_key`` under ``key_id``.

    Args:
        obj: the signed object.
        signer_user_id: whose name the signature is filed under in ``signatures``.
        key_id: ``ed25519:<device_id>`` or ``ed25519:<cross-signing public key>``.
        public_key: unpadded base64 of the ed25519 key that must have signed.

    Raises:
        InvalidSignature: the signature is absent, malformed or does not verify.
    """
    sig = signature_of(obj, signer_user_id, key_id)
    if sig is None:
        raise InvalidSignature(f"no signature by {signer_user_id} {key_id}")
    try:
        key = VerifyKey.from_base64(public_key, key_id)
        key.verify(signed_bytes(obj), decode_base64(sig))
    except (SignatureError, ValueError, CanonicalJSONError) as e:
        raise InvalidSignature(f"invalid signature by {signer_user_id} {key_id}: {e}") from None


def verify_device_self_signature(device: DeviceKeys) -> None:
    """Check that device keys are signed by the device's own ed25519 key.

    Raises:
        InvalidSignature: no ``ed25519:<device_id>`` key, or its signature is absent or bad.
    """
    public_key = device.ed25519
    if public_key is None:
        raise InvalidSignature(f"device keys have no ed25519:{device.device_id} key")
    verify_signed_by(device.json, device.user_id, f"ed25519:{device.device_id}", public_key)


def verify_signed_by_cross_signing_key(obj: JsonObject, signer: CrossSigningKey) -> None:
    """Check that ``obj`` is signed by the cross-signing key ``signer``.

    Raises:
        InvalidSignature: absent or invalid.
    """
    verify_signed_by(obj, signer.user_id, signer.key_id, signer.public_key)
