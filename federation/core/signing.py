"""Unpadded base64, ed25519 keys, and signing and verifying JSON.

Spec: appendices.md › Unpadded Base64, › Signing JSON › Signing Details, › Checking for a
Signature; server-server-api.md › Retrieving server keys (``verify_keys``, ``old_verify_keys``
with ``expired_ts``, ``valid_until_ts``), › Validating hashes and signatures on received events
("Only signatures from known server keys are validated here. Any unknown keys are ignored. …
any keys that are known to have expired prior to the event's ``origin_server_ts`` are ignored");
rooms/fragments/v5-signing-requirements.md (``enforce_key_validity``: ``valid_until_ts`` must
be at least the event's ``origin_server_ts``; use the lesser of it and 7 days after fetching).

    JSON is signed by encoding the JSON object without ``signatures`` or keys grouped as
    ``unsigned``, using the canonical encoding … The resulting base64 signature is added to
    an object under the signing key identifier which is added to the ``signatures`` object
    under the name of the entity signing it.

The key file format is Synapse's: one key per line, ``ed25519 <version> <unpadded b64 seed>``.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.signing

from federation.core.canonicaljson import encode_canonical_json
from federation.core.errors import SignatureError

ALGORITHM = "ed25519"
#: Servers use the lesser of ``valid_until_ts`` and this long after fetching a key.
MAX_KEY_VALIDITY_MS = 7 * 24 * 3600 * 1000

_URLSAFE_TO_STD = str.maketrans("-_", "+/")


def encode_base64(data: bytes, *, urlsafe: bool = False) -> str:
    """Unpadded base64 of ``data`` (standard alphabet, or RFC 4648 §5 URL-safe)."""
    enc = base64.urlsafe_b64encode(data) if urlsafe else base64.b64encode(data)
    return enc.rstrip(b"=").decode("ascii")


def decode_base64(text: str) -> bytes:
    """Decode base64 with or without padding, in the standard or the URL-safe alphabet.

    Raises:
        ValueError: not valid base64.
    """
    s = text.rstrip("=").translate(_URLSAFE_TO_STD)
    if len(s) % 4 == 1:
        raise ValueError("invalid base64 length")
    try:
        return base64.b64decode(s + "=" * (-len(s) % 4), validate=True)
    except (binascii.Error, UnicodeEncodeError) as e:
        raise ValueError(f"invalid base64: {e}") from None


class VerifyKey:
    """An ed25519 public key with its key ID (``ed25519:<version>``)."""

    __slots__ = ("_key", "key_id")

    def __init__(self, key_bytes: bytes, key_id: str) -> None:
        self._key = nacl.signing.VerifyKey(key_bytes)
        self.key_id = key_id

    @classmethod
    def from_base64(cls, key_b64: str, key_id: str) -> VerifyKey:
        """Build from the unpadded base64 found in a key response.

        Raises:
            SignatureError: not valid base64 or not a 32-byte key.
        """
        try:
            return cls(decode_base64(key_b64), key_id)
        except (ValueError, nacl.exceptions.CryptoError) as e:
            raise SignatureError(f"invalid verify key {key_id}: {e}") from None

    def encode(self) -> bytes:
        """The 32 raw key bytes."""
        return bytes(self._key)

    def to_base64(self) -> str:
        return encode_base64(bytes(self._key))

    def verify(self, message: bytes, signature: bytes) -> None:
        """Check ``signature`` over ``message``.

        Raises:
            SignatureError: the signature does not verify.
        """
        try:
            self._key.verify(message, signature)
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError) as e:
            raise SignatureError(f"bad signature by {self.key_id}: {e}") from None

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, VerifyKey)
            and other.key_id == self.key_id
            and other.encode() == self.encode()
        )

    def __hash__(self) -> int:
        return hash((self.key_id, self.encode()))

    def __repr__(self) -> str:
        return f"<VerifyKey {self.key_id} {self.to_base64()}>"


class SigningKey:
    """An ed25519 signing key with its version (key ID ``ed25519:<version>``)."""

    __slots__ = ("_key", "verify_key", "version")

    def __init__(self, seed: bytes, version: str) -> None:
        self._key = nacl.signing.SigningKey(seed)
        self.version = version
        self.verify_key = VerifyKey(bytes(self._key.verify_key), f"{ALGORITHM}:{version}")

    @classmethod
    def generate(cls, version: str) -> SigningKey:
        """A fresh random key."""
        return cls(bytes(nacl.signing.SigningKey.generate()), version)

    @property
    def key_id(self) -> str:
        return f"{ALGORITHM}:{self.version}"

    @property
    def seed(self) -> bytes:
        return bytes(self._key)

    def sign(self, message: bytes) -> bytes:
        """The 64-byte detached signature of ``message``."""
        return self._key.sign(message).signature

    def __repr__(self) -> str:
        return f"<SigningKey {self.key_id}>"


def read_signing_keys(text: str) -> list[SigningKey]:
    """Parse a signing key file: ``ed25519 <version> <unpadded base64 seed>`` per line.

    Raises:
        ValueError: a non-empty line is malformed or of another algorithm.
    """
    keys = []
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 3 or parts[0] != ALGORITHM:
            raise ValueError(f"line {lineno}: expected 'ed25519 <version> <seed>'")
        seed = decode_base64(parts[2])
        if len(seed) != 32:
            raise ValueError(f"line {lineno}: seed must be 32 bytes")
        keys.append(SigningKey(seed, parts[1]))
    return keys


def write_signing_keys(keys: Iterable[SigningKey]) -> str:
    """Serialise keys in the format :func:`read_signing_keys` reads."""
    return "".join(f"{ALGORITHM} {k.version} {encode_base64(k.seed)}\n" for k in keys)


def signed_bytes(obj: Mapping[str, Any]) -> bytes:
    """Canonical JSON of ``obj`` without ``signatures`` and ``unsigned``: what is signed."""
    return encode_canonical_json(
        {k: v for k, v in obj.items() if k != "signatures" and k != "unsigned"}
    )


def sign_json(obj: Mapping[str, Any], server_name: str, key: SigningKey) -> dict[str, Any]:
    """Return a copy of ``obj`` with ``key``'s signature added under ``server_name``.

    Existing signatures are kept; ``unsigned`` is kept and not signed.

    Raises:
        CanonicalJSONError: ``obj`` is not canonical-JSON encodable.
    """
    signature = encode_base64(key.sign(signed_bytes(obj)))
    out = dict(obj)
    sigs = {s: dict(v) for s, v in out.get("signatures", {}).items()}
    sigs.setdefault(server_name, {})[key.key_id] = signature
    out["signatures"] = sigs
    return out


def verify_signed_json(obj: Mapping[str, Any], server_name: str, verify_key: VerifyKey) -> None:
    """Check that ``obj`` carries a valid signature by ``verify_key`` for ``server_name``.

    Raises:
        SignatureError: the signature is absent, malformed or does not verify.
    """
    verify_signatures(
        signed_bytes(obj),
        obj,
        server_name,
        lambda kid: verify_key if kid == verify_key.key_id else None,
    )


def verify_signatures(
    message: bytes,
    obj: Mapping[str, Any],
    server_name: str,
    lookup: Callable[[str], VerifyKey | None],
) -> None:
    """Check ``server_name``'s signatures in ``obj`` over ``message`` (Checking for a Signature).

    Signatures of unknown algorithms or keys the lookup does not know (None) are skipped;
    every known key's signature must verify and at least one must exist.

    Args:
        message: the signed bytes (from :func:`signed_bytes`, or the redacted event's).
        obj: the object holding ``signatures``.
        server_name: whose signatures to check.
        lookup: key ID → verify key, or None when unknown or not valid for this use.

    Raises:
        SignatureError: no signature from a known key, or one that does not verify.
    """
    sigs = obj.get("signatures")
    server_sigs = sigs.get(server_name) if isinstance(sigs, Mapping) else None
    if not isinstance(server_sigs, Mapping) or not server_sigs:
        raise SignatureError(f"no signature from {server_name}")
    checked = 0
    for key_id, sig_b64 in server_sigs.items():
        if not isinstance(key_id, str) or not key_id.startswith(ALGORITHM + ":"):
            continue
        verify_key = lookup(key_id)
        if verify_key is None:
            continue
        if not isinstance(sig_b64, str):
            raise SignatureError(f"signature {server_name} {key_id} is not a string")
        try:
            signature = decode_base64(sig_b64)
        except ValueError:
            raise SignatureError(f"signature {server_name} {key_id} is not base64") from None
        verify_key.verify(message, signature)
        checked += 1
    if not checked:
        raise SignatureError(f"no signature from a known key of {server_name}")


@dataclass(frozen=True, slots=True)
class KnownKey:
    """A server's verify key as the key store knows it.

    Attributes:
        verify_key: the public key.
        valid_until_ts: for a current key (``verify_keys``), the response's ``valid_until_ts``
            already capped with :func:`cap_valid_until`; None if unknown.
        expired_ts: for an old key (``old_verify_keys``), when it stopped being used.
    """

    verify_key: VerifyKey
    valid_until_ts: int | None = None
    expired_ts: int | None = None

    def valid_at(self, ts: int, *, enforce_key_validity: bool) -> bool:
        """Whether the key may verify a signature made at ``ts``.

        An old key that expired before ``ts`` is never used. With ``enforce_key_validity``
        (room v5+) a current key must have ``valid_until_ts >= ts``; before v5 it is ignored.
        """
        if self.expired_ts is not None and self.expired_ts < ts:
            return False
        if enforce_key_validity and self.expired_ts is None:
            return self.valid_until_ts is not None and self.valid_until_ts >= ts
        return True


def cap_valid_until(valid_until_ts: int, fetched_ts: int) -> int:
    """The lesser of ``valid_until_ts`` and 7 days after the key was fetched."""
    return min(valid_until_ts, fetched_ts + MAX_KEY_VALIDITY_MS)


def verify_json_with_known_keys(
    obj: Mapping[str, Any],
    server_name: str,
    keys: Mapping[str, KnownKey],
    *,
    at_ts: int | None = None,
    enforce_key_validity: bool = False,
    message: bytes | None = None,
) -> None:
    """Verify ``server_name``'s signatures on ``obj`` with a mapping of known keys.

    Args:
        obj: the signed object.
        server_name: whose signatures to check.
        keys: key ID → :class:`KnownKey` of that server.
        at_ts: when the signature was made (an event's ``origin_server_ts``); None skips
            the validity checks.
        enforce_key_validity: the room version's ``enforce_key_validity`` flag.
        message: the signed bytes if already computed (e.g. a redacted event's).

    Raises:
        SignatureError: no valid signature from a known, unexpired key.
    """

    def lookup(key_id: str) -> VerifyKey | None:
        known = keys.get(key_id)
        if known is None:
            return None
        if at_ts is not None and not known.valid_at(
            at_ts, enforce_key_validity=enforce_key_validity
        ):
            return None
        return known.verify_key

    verify_signatures(signed_bytes(obj) if message is None else message, obj, server_name, lookup)


def verify_key_object(key: VerifyKey) -> dict[str, str]:
    """``{"key": <unpadded base64>}`` as in ``verify_keys`` of ``/_matrix/key/v2/server``."""
    return {"key": key.to_base64()}


def parse_server_keys(response: Mapping[str, Any], fetched_ts: int) -> dict[str, KnownKey]:
    """Read ``verify_keys`` and ``old_verify_keys`` of a key response (signature not checked).

    ``valid_until_ts`` is capped to 7 days after ``fetched_ts``.

    Raises:
        SignatureError: a key entry is malformed.
    """
    out: dict[str, KnownKey] = {}
    valid_until = response.get("valid_until_ts")
    capped = cap_valid_until(valid_until, fetched_ts) if isinstance(valid_until, int) else None
    for field, is_old in (("verify_keys", False), ("old_verify_keys", True)):
        entries = response.get(field) or {}
        if not isinstance(entries, Mapping):
            raise SignatureError(f"{field} is not an object")
        for key_id, entry in entries.items():
            if not str(key_id).startswith(ALGORITHM + ":"):
                continue
            if not isinstance(entry, Mapping) or not isinstance(entry.get("key"), str):
                raise SignatureError(f"{field}.{key_id} has no key")
            vk = VerifyKey.from_base64(entry["key"], key_id)
            if is_old:
                expired = entry.get("expired_ts")
                if not isinstance(expired, int):
                    raise SignatureError(f"old_verify_keys.{key_id} has no expired_ts")
                out.setdefault(key_id, KnownKey(vk, expired_ts=expired))
            else:
                out[key_id] = KnownKey(vk, valid_until_ts=capped)
    return out
