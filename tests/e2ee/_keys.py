"""Keys made and signed the way a client makes them: pynacl ed25519 over canonical JSON.

Deliberately independent of the server's code (``json.dumps`` with sorted keys, not
``federation.core.canonicaljson``), so a test using these checks the server against what
clients compute.
"""

from __future__ import annotations

import base64
import copy
import json
import secrets
from typing import Any

import nacl.signing


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def canonical(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sign(
    obj: dict[str, Any], user_id: str, key_id: str, key: nacl.signing.SigningKey
) -> dict[str, Any]:
    """A copy of ``obj`` with ``user_id``'s signature by ``key`` under ``key_id`` added."""
    out = copy.deepcopy(obj)
    unsigned = {k: v for k, v in out.items() if k not in ("signatures", "unsigned")}
    sig = key.sign(canonical(unsigned)).signature
    out.setdefault("signatures", {}).setdefault(user_id, {})[key_id] = b64(sig)
    return out


def verifies(obj: dict[str, Any], user_id: str, key_id: str, public_key: str) -> bool:
    """Check a signature as a client does."""
    sig = obj.get("signatures", {}).get(user_id, {}).get(key_id)
    if sig is None:
        return False
    unsigned = {k: v for k, v in obj.items() if k not in ("signatures", "unsigned")}
    raw = base64.b64decode(public_key + "=" * (-len(public_key) % 4))
    try:
        nacl.signing.VerifyKey(raw).verify(
            canonical(unsigned), base64.b64decode(sig + "=="[: (-len(sig) % 4)])
        )
    except Exception:
        return False
    return True


class ClientDevice:
    """A device's ed25519 identity key and the key objects it uploads."""

    def __init__(self, user_id: str, device_id: str) -> None:
        self.user_id = user_id
        self.device_id = device_id
        self.ed25519 = nacl.signing.SigningKey.generate()
        self.curve25519 = b64(secrets.token_bytes(32))

    @property
    def ed25519_public(self) -> str:
        return b64(bytes(self.ed25519.verify_key))

    @property
    def key_id(self) -> str:
        return f"ed25519:{self.device_id}"

    def device_keys(self, **extra: Any) -> dict[str, Any]:
        obj = {
            "user_id": self.user_id,
            "device_id": self.device_id,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": {
                f"curve25519:{self.device_id}": self.curve25519,
                f"ed25519:{self.device_id}": self.ed25519_public,
            },
            **extra,
        }
        return sign(obj, self.user_id, self.key_id, self.ed25519)

    def one_time_keys(self, count: int, start: int = 0) -> dict[str, Any]:
        return {
            f"signed_curve25519:AAAA{i:04d}": sign(
                {"key": b64(secrets.token_bytes(32))}, self.user_id, self.key_id, self.ed25519
            )
            for i in range(start, start + count)
        }

    def fallback_key(self, key_id: str = "FB1") -> dict[str, Any]:
        key = sign(
            {"key": b64(secrets.token_bytes(32)), "fallback": True},
            self.user_id,
            self.key_id,
            self.ed25519,
        )
        return {f"signed_curve25519:{key_id}": key}


class CrossSigning:
    """A user's master, self-signing and user-signing keys."""

    def __init__(self, user_id: str) -> None:
        self.user_id = user_id
        self.master = nacl.signing.SigningKey.generate()
        self.self_signing = nacl.signing.SigningKey.generate()
        self.user_signing = nacl.signing.SigningKey.generate()

    @staticmethod
    def public(key: nacl.signing.SigningKey) -> str:
        return b64(bytes(key.verify_key))

    def key_id(self, key: nacl.signing.SigningKey) -> str:
        return f"ed25519:{self.public(key)}"

    def key_object(self, usage: str, key: nacl.signing.SigningKey) -> dict[str, Any]:
        obj = {
            "user_id": self.user_id,
            "usage": [usage],
            "keys": {self.key_id(key): self.public(key)},
        }
        if usage != "master":
            obj = sign(obj, self.user_id, self.key_id(self.master), self.master)
        return obj

    def upload_body(self) -> dict[str, Any]:
        return {
            "master_key": self.key_object("master", self.master),
            "self_signing_key": self.key_object("self_signing", self.self_signing),
            "user_signing_key": self.key_object("user_signing", self.user_signing),
        }
