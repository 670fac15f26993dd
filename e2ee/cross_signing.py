"""Uploading cross-signing keys: what is checked, and when re-authentication is needed.

Spec: end_to_end_encryption.md › Cross-signing; ``POST /keys/device_signing/upload``
(cross_signing.yaml):

- each key is the uploader's, has its usage and exactly one ed25519 key;
- the self-signing and user-signing keys "must be signed by the accompanying master signing
  key, or by the user's most recently uploaded master signing key if no master signing key is
  included in the request" (``400 M_INVALID_SIGNATURE``; none at all: ``400 M_MISSING_PARAM``);
- "The public key of one of the keys is the same as one of the user's device IDs" is ``403``;
- user-interactive authentication is needed unless there is no master key yet, or the request
  holds no new keys (every uploaded key equals the stored one).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from e2ee.errors import KeyIdInUse, MissingMasterKey
from e2ee.models import (
    MASTER,
    SELF_SIGNING,
    USAGES,
    USER_SIGNING,
    CrossSigningKey,
    JsonObject,
    canonical,
    parse_cross_signing_key,
)
from e2ee.verify import verify_signed_by_cross_signing_key

__all__ = [
    "CrossSigningUpload",
    "check_cross_signing_upload",
    "needs_reauthentication",
    "stored_key",
]

_FIELDS = {MASTER: "master_key", SELF_SIGNING: "self_signing_key", USER_SIGNING: "user_signing_key"}


@dataclass(frozen=True, slots=True)
class CrossSigningUpload:
    """The keys of one ``/keys/device_signing/upload``, by usage (absent ones left out)."""

    keys: Mapping[str, CrossSigningKey]

    @classmethod
    def parse(cls, body: Mapping[str, Any], user_id: str) -> CrossSigningUpload:
        """Read ``master_key``, ``self_signing_key`` and ``user_signing_key`` of a body.

        Raises:
            KeyFormatError: a key is malformed.
            KeyOwnerMismatch: a key is another user's.
        """
        keys: dict[str, CrossSigningKey] = {}
        for usage in USAGES:
            obj = body.get(_FIELDS[usage])
            if obj is not None:
                keys[usage] = parse_cross_signing_key(obj, user_id=user_id, usage=usage)
        return cls(keys)


def needs_reauthentication(
    upload: CrossSigningUpload, existing: Mapping[str, CrossSigningKey]
) -> bool:
    """Whether the upload needs user-interactive authentication (see the module docstring)."""
    if MASTER not in existing:
        return False
    for usage, key in upload.keys.items():
        stored = existing.get(usage)
        if stored is None or canonical(stored.json, usage) != canonical(key.json, usage):
            return True
    return False


def check_cross_signing_upload(
    upload: CrossSigningUpload,
    existing: Mapping[str, CrossSigningKey],
    device_ids: Collection[str],
) -> list[CrossSigningKey]:
    """Check an upload against the user's stored keys and devices.

    Args:
        upload: the parsed upload.
        existing: the user's stored keys by usage.
        device_ids: the user's device IDs.

    Returns:
        The keys to store, master first.

    Raises:
        MissingMasterKey: a signing key is uploaded and no master key is uploaded or stored.
        InvalidSignature: a self-signing or user-signing key is not signed by the master key.
        KeyIdInUse: a public key equals one of the user's device IDs.
    """
    master = upload.keys.get(MASTER) or existing.get(MASTER)
    for usage in (SELF_SIGNING, USER_SIGNING):
        key = upload.keys.get(usage)
        if key is None:
            continue
        if master is None:
            raise MissingMasterKey(f"a {usage} key needs a master key")
        verify_signed_by_cross_signing_key(key.json, master)
    devices = set(device_ids)
    for key in upload.keys.values():
        if key.public_key in devices:
            raise KeyIdInUse("a cross-signing public key is also one of your device IDs")
    return [upload.keys[u] for u in USAGES if u in upload.keys]


def stored_key(json: JsonObject, user_id: str, usage: str) -> CrossSigningKey:
    """A stored key back as a :class:`CrossSigningKey` (it was checked on upload)."""
    return parse_cross_signing_key(json, user_id=user_id, usage=usage)
