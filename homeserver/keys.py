"""The server's signing keys: the key file, its old keys, and rotation.

The key file has Synapse's format, one key a line: ``ed25519 <version> <unpadded base64 seed>``,
so an operator can move a key between servers. The first key is the active one.

Old keys (``homeserver rotate-signing-key``) are kept in a second file beside it,
``<signing_key_path>.old``, one line per retired key: ``ed25519 <version> <unpadded base64
public key> <expired_ts>``. They are published in ``old_verify_keys`` of
``GET /_matrix/key/v2/server`` so that other servers can still check what they signed.

Why a file and not the database: the key files are the server's identity, kept and backed up
together (moving a server means moving its key file, and its old keys must come along or events
it signed before a rotation stop verifying elsewhere); the rotation command works without a
database; and an old key holds nothing secret (only the public half is kept). The server reads
both files once at start, so rotate with the server stopped, then start it.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from federation.core.errors import SignatureError
from federation.core.signing import (
    ALGORITHM,
    SigningKey,
    VerifyKey,
    read_signing_keys,
    write_signing_keys,
)

__all__ = [
    "OldVerifyKey",
    "load_old_verify_keys",
    "load_or_create_signing_key",
    "old_keys_path",
    "rotate_signing_key",
]


@dataclass(frozen=True, slots=True)
class OldVerifyKey:
    """A retired key of ours: its public half and when it stopped being used."""

    verify_key: VerifyKey
    expired_ts: int


def _new_version() -> str:
    # Key versions are short random strings, as Synapse does (``ed25519:a_AbCd``).
    return "a_" + secrets.token_urlsafe(3).replace("-", "x").replace("_", "y")


def _write_private(path: Path, text: str) -> None:
    """Replace ``path`` atomically with ``text``, mode 0600."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_or_create_signing_key(path: Path, server_name: str) -> SigningKey:
    """Return the active signing key from ``path``, creating the file (mode 0600) if missing."""
    _ = server_name
    if path.exists():
        keys = read_signing_keys(path.read_text(encoding="utf-8"))
        if not keys:
            raise ValueError(f"{path}: no signing key in the file")
        return keys[0]
    key = SigningKey.generate(_new_version())
    _write_private(path, write_signing_keys([key]))
    return key


def old_keys_path(path: Path) -> Path:
    """Where the old keys of the key file at ``path`` are kept."""
    return path.with_name(path.name + ".old")


def load_old_verify_keys(path: Path) -> dict[str, OldVerifyKey]:
    """The retired keys of the key file at ``path`` by key ID (none if the file is missing).

    Raises:
        ValueError: a line is malformed.
    """
    old = old_keys_path(path)
    if not old.exists():
        return {}
    out: dict[str, OldVerifyKey] = {}
    for lineno, line in enumerate(old.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 4 or parts[0] != ALGORITHM or not parts[3].isdigit():
            raise ValueError(f"{old}: line {lineno}: expected 'ed25519 <version> <key> <ts>'")
        key_id = f"{ALGORITHM}:{parts[1]}"
        try:
            vk = VerifyKey.from_base64(parts[2], key_id)
        except SignatureError as e:
            raise ValueError(f"{old}: line {lineno}: {e}") from None
        out[key_id] = OldVerifyKey(vk, int(parts[3]))
    return out


def rotate_signing_key(path: Path, *, now_ms: int) -> tuple[SigningKey, SigningKey]:
    """Make a new active key; keep the previous one's public half as old (expired now).

    The old key is written to the old-keys file first, then the key file is replaced, so a
    crash in between leaves the previous key active and also listed as old (harmless).

    Returns:
        (new key, previous key).

    Raises:
        ValueError: the key file is missing or empty.
    """
    if not path.exists():
        raise ValueError(f"{path}: no signing key file to rotate")
    keys = read_signing_keys(path.read_text(encoding="utf-8"))
    if not keys:
        raise ValueError(f"{path}: no signing key in the file")
    previous = keys[0]
    new = SigningKey.generate(_new_version())
    while new.key_id == previous.key_id:  # pragma: no cover - 1 in 2**24
        new = SigningKey.generate(_new_version())
    old = load_old_verify_keys(path)
    old[previous.key_id] = OldVerifyKey(previous.verify_key, now_ms)
    _write_private(
        old_keys_path(path),
        "".join(
            f"{ALGORITHM} {kid.split(':', 1)[1]} {o.verify_key.to_base64()} {o.expired_ts}\n"
            for kid, o in old.items()
        ),
    )
    _write_private(path, write_signing_keys([new]))
    return new, previous
