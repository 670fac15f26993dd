"""The key objects of end-to-end encryption, parsed from the JSON clients upload.

Spec: client-server-api/modules/end_to_end_encryption.md (Device keys, One-time and fallback
keys, Cross-signing, Server-side key backups); OpenAPI ``keys.yaml``, ``cross_signing.yaml``,
``key_backup.yaml``.

Each parsed object keeps the JSON exactly as uploaded (``json``): the server stores and serves
that, never a re-serialisation of the typed fields, so every signature on it still verifies.
The typed fields are what the server itself reads. Parsing checks the shapes the spec gives and
that the object is canonical-JSON encodable (no floats, integers within ±(2**53-1)): anything
else could not have been signed.

Key ID rules: a key is named ``<algorithm>:<key_id>`` with both parts non-empty and at most
:data:`MAX_ID_BYTES` bytes; a device's own keys are ``<algorithm>:<device_id>`` (others in
its ``keys`` are kept, never used as its own); a
cross-signing key's ID is ``ed25519:<its unpadded base64 public key>``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from e2ee.errors import KeyFormatError, KeyOwnerMismatch
from federation.core.canonicaljson import encode_canonical_json
from federation.core.errors import CanonicalJSONError
from federation.core.signing import signed_bytes

__all__ = [
    "MASTER",
    "MAX_ID_BYTES",
    "SELF_SIGNING",
    "USAGES",
    "USER_SIGNING",
    "BackupVersionInfo",
    "CrossSigningKey",
    "DeviceKeys",
    "JsonObject",
    "KeyBackupData",
    "OneTimeKey",
    "canonical",
    "parse_backup_version_info",
    "parse_cross_signing_key",
    "parse_device_keys",
    "parse_fallback_keys",
    "parse_key_backup_data",
    "parse_one_time_keys",
    "same_signed_content",
    "split_key_id",
]

JsonObject = Mapping[str, Any]

#: The longest algorithm name or key ID accepted, in bytes.
MAX_ID_BYTES = 255

MASTER = "master"
SELF_SIGNING = "self_signing"
USER_SIGNING = "user_signing"
#: The cross-signing key usages, in the order they are stored and uploaded.
USAGES = (MASTER, SELF_SIGNING, USER_SIGNING)


def canonical(obj: Any, what: str) -> bytes:
    """Canonical JSON of ``obj``.

    Raises:
        KeyFormatError: ``obj`` cannot be canonical JSON (so it cannot carry a signature).
    """
    try:
        return encode_canonical_json(obj)
    except CanonicalJSONError as e:
        raise KeyFormatError(f"{what} is not canonical JSON: {e}") from None


def same_signed_content(a: JsonObject, b: JsonObject) -> bool:
    """Whether two objects are the same once ``signatures`` and ``unsigned`` are left out."""
    try:
        return signed_bytes(a) == signed_bytes(b)
    except CanonicalJSONError:
        return False


def split_key_id(key_id: Any) -> tuple[str, str]:
    """``"<algorithm>:<id>"`` → ``(algorithm, id)``.

    Raises:
        KeyFormatError: not a string of that form, or a part is empty or too long.
    """
    if not isinstance(key_id, str):
        raise KeyFormatError("key IDs must be strings")
    algorithm, sep, rest = key_id.partition(":")
    if not sep or not algorithm or not rest:
        raise KeyFormatError(f"key ID {key_id!r} is not <algorithm>:<id>")
    if len(algorithm.encode()) > MAX_ID_BYTES or len(rest.encode()) > MAX_ID_BYTES:
        raise KeyFormatError(f"key ID {key_id[:40]!r}... is too long")
    return algorithm, rest


def _object(value: Any, what: str) -> JsonObject:
    if not isinstance(value, Mapping):
        raise KeyFormatError(f"{what} must be an object")
    return value


def _string(obj: JsonObject, key: str, what: str) -> str:
    value = obj.get(key)
    if not isinstance(value, str) or not value:
        raise KeyFormatError(f"{what}.{key} must be a non-empty string")
    return value


def _check_signatures_shape(obj: JsonObject, what: str) -> None:
    sigs = obj.get("signatures", {})
    if not isinstance(sigs, Mapping):
        raise KeyFormatError(f"{what}.signatures must be an object")
    for signer, by_key in sigs.items():
        if not isinstance(by_key, Mapping):
            raise KeyFormatError(f"{what}.signatures.{signer} must be an object")
        for key_id, sig in by_key.items():
            split_key_id(key_id)
            if not isinstance(sig, str):
                raise KeyFormatError(f"{what}: signatures must be strings")


# --- device keys ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeviceKeys:
    """A device's identity keys, as uploaded (``DeviceKeys`` in the spec)."""

    user_id: str
    device_id: str
    algorithms: tuple[str, ...]
    #: ``"<algorithm>:<device_id>"`` → unpadded base64 public key
    keys: Mapping[str, str]
    json: JsonObject

    @property
    def ed25519(self) -> str | None:
        """The device's ed25519 key (what its self-signature is checked with)."""
        return self.keys.get(f"ed25519:{self.device_id}")


def parse_device_keys(obj: Any, *, user_id: str, device_id: str) -> DeviceKeys:
    """Check a ``device_keys`` upload of ``user_id``'s device ``device_id``.

    Raises:
        KeyFormatError: a field is missing or has the wrong type, a key is not named
            ``<algorithm>:<id>``, or the object is not canonical JSON.
        KeyOwnerMismatch: ``user_id`` or ``device_id`` is another user's or device's.
    """
    what = "device_keys"
    obj = _object(obj, what)
    owner = _string(obj, "user_id", what)
    device = _string(obj, "device_id", what)
    if owner != user_id or device != device_id:
        raise KeyOwnerMismatch("device_keys must be for the uploading user and device")
    algorithms = obj.get("algorithms")
    if not isinstance(algorithms, list) or not all(isinstance(a, str) and a for a in algorithms):
        raise KeyFormatError("device_keys.algorithms must be a list of strings")
    keys = _object(obj.get("keys"), "device_keys.keys")
    for key_id, value in keys.items():
        # "<algorithm>:<device_id>" is what the spec's keys are named; another ID after the
        # colon is stored all the same (as Synapse does; SyTest uploads "ed25519:test"): it is
        # only never taken for the device's own key.
        split_key_id(key_id)
        if not isinstance(value, str) or not value:
            raise KeyFormatError(f"device key {key_id!r} must be a non-empty string")
    if "unsigned" in obj and not isinstance(obj["unsigned"], Mapping):
        raise KeyFormatError("device_keys.unsigned must be an object")
    _check_signatures_shape(obj, what)
    canonical(obj, what)
    return DeviceKeys(owner, device, tuple(algorithms), dict(keys), obj)


# --- one-time and fallback keys ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OneTimeKey:
    """A one-time or fallback key: ``<algorithm>:<key_id>`` → a string or a signed key object."""

    algorithm: str
    key_id: str
    #: the value exactly as uploaded
    value: str | JsonObject

    @property
    def full_id(self) -> str:
        return f"{self.algorithm}:{self.key_id}"

    def encoded(self) -> bytes:
        """The value's canonical JSON: what "the same key" is compared by."""
        return canonical(self.value, self.full_id)


def _parse_key_map(obj: Any, what: str) -> list[OneTimeKey]:
    keys = _object(obj, what)
    out: list[OneTimeKey] = []
    for full_id, value in keys.items():
        algorithm, key_id = split_key_id(full_id)
        if isinstance(value, Mapping):
            _string(value, "key", f"{what}.{full_id}")
            _check_signatures_shape(value, f"{what}.{full_id}")
        elif not isinstance(value, str) or not value:
            raise KeyFormatError(f"{what}.{full_id} must be a string or a key object")
        key = OneTimeKey(algorithm, key_id, value)
        key.encoded()
        out.append(key)
    return out


def parse_one_time_keys(obj: Any) -> list[OneTimeKey]:
    """Check a ``one_time_keys`` upload.

    Raises:
        KeyFormatError: not an object of ``<algorithm>:<key_id>`` → string or ``{"key": ...}``.
    """
    return _parse_key_map(obj, "one_time_keys")


def parse_fallback_keys(obj: Any) -> list[OneTimeKey]:
    """Check a ``fallback_keys`` upload: at most one key per algorithm.

    Raises:
        KeyFormatError: malformed, or two keys of one algorithm.
    """
    keys = _parse_key_map(obj, "fallback_keys")
    algorithms = [k.algorithm for k in keys]
    if len(set(algorithms)) != len(algorithms):
        raise KeyFormatError("fallback_keys holds at most one key per algorithm")
    return keys


# --- cross-signing keys --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CrossSigningKey:
    """A master, self-signing or user-signing key (``CrossSigningKey`` in the spec)."""

    user_id: str
    usage: str
    #: unpadded base64 of the ed25519 public key
    public_key: str
    json: JsonObject

    @property
    def key_id(self) -> str:
        """``ed25519:<public key>``: the key ID its signatures are made under."""
        return f"ed25519:{self.public_key}"


def parse_cross_signing_key(obj: Any, *, user_id: str, usage: str) -> CrossSigningKey:
    """Check an uploaded cross-signing key of ``user_id`` for ``usage``.

    The spec: ``keys`` holds exactly one key, ``ed25519:<public key>`` → the public key, and
    ``usage`` names what the key is for.

    Raises:
        KeyFormatError: malformed, not exactly one ed25519 key, or ``usage`` lacks ``usage``.
        KeyOwnerMismatch: ``user_id`` is another user's.
    """
    what = f"{usage}_key"
    obj = _object(obj, what)
    if _string(obj, "user_id", what) != user_id:
        raise KeyOwnerMismatch(f"{what} must be the uploading user's")
    usages = obj.get("usage")
    if not isinstance(usages, list) or not all(isinstance(u, str) for u in usages):
        raise KeyFormatError(f"{what}.usage must be a list of strings")
    if usage not in usages:
        raise KeyFormatError(f"{what}.usage must contain {usage!r}")
    keys = _object(obj.get("keys"), f"{what}.keys")
    if len(keys) != 1:
        raise KeyFormatError(f"{what}.keys must hold exactly one key")
    ((key_id, public_key),) = keys.items()
    algorithm, name = split_key_id(key_id)
    if algorithm != "ed25519" or public_key != name:
        raise KeyFormatError(f"{what}.keys must be ed25519:<public key> → <public key>")
    _check_signatures_shape(obj, what)
    canonical(obj, what)
    return CrossSigningKey(user_id, usage, name, obj)


# --- key backup ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyBackupData:
    """One backed-up session key (``KeyBackupData``): the fields the replacement rules read
    and the encrypted ``session_data`` the server never looks into."""

    first_message_index: int
    forwarded_count: int
    is_verified: bool
    #: Opaque to the server: an object in every algorithm the spec defines, stored and served
    #: whatever JSON value it is (Synapse does the same; SyTest backs up a string).
    session_data: Any

    def to_json(self) -> dict[str, Any]:
        return {
            "first_message_index": self.first_message_index,
            "forwarded_count": self.forwarded_count,
            "is_verified": self.is_verified,
            "session_data": self.session_data,
        }


def _int(obj: JsonObject, key: str, what: str) -> int:
    value = obj.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise KeyFormatError(f"{what}.{key} must be a non-negative integer")
    return value


def parse_key_backup_data(obj: Any) -> KeyBackupData:
    """Check one ``KeyBackupData``.

    Raises:
        KeyFormatError: a required field is missing or mistyped.
    """
    what = "KeyBackupData"
    obj = _object(obj, what)
    is_verified = obj.get("is_verified")
    if not isinstance(is_verified, bool):
        raise KeyFormatError(f"{what}.is_verified must be a boolean")
    if "session_data" not in obj:
        raise KeyFormatError(f"{what}.session_data is required")
    session_data = obj["session_data"]
    canonical(session_data, f"{what}.session_data")
    return KeyBackupData(
        _int(obj, "first_message_index", what),
        _int(obj, "forwarded_count", what),
        is_verified,
        session_data,
    )


@dataclass(frozen=True, slots=True)
class BackupVersionInfo:
    """What a backup version is created or updated with."""

    algorithm: str
    #: "Algorithm-dependent data": an object in every algorithm the spec defines, but stored
    #: and served whatever JSON value it is, as Synapse does (SyTest creates backups whose
    #: ``auth_data`` is a string); the server never reads it.
    auth_data: Any


def parse_backup_version_info(obj: Any) -> BackupVersionInfo:
    """Check the body of ``POST``/``PUT /room_keys/version``.

    Raises:
        KeyFormatError: ``algorithm`` is not a string, ``auth_data`` is missing, or either is
            not canonical JSON.
    """
    obj = _object(obj, "body")
    algorithm = _string(obj, "algorithm", "body")
    if "auth_data" not in obj:
        raise KeyFormatError("auth_data is required")
    auth_data = obj["auth_data"]
    canonical(auth_data, "auth_data")
    return BackupVersionInfo(algorithm, auth_data)
