"""The server's signing key file: read it, or create it on first start.

The file has Synapse's format, one key a line: ``ed25519 <version> <unpadded base64 seed>``, so
an operator can move a key between servers. The first key is the active one.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from federation.core.signing import SigningKey, read_signing_keys, write_signing_keys


def load_or_create_signing_key(path: Path, server_name: str) -> SigningKey:
    """Return the active signing key from ``path``, creating the file (mode 0600) if missing."""
    _ = server_name
    if path.exists():
        keys = read_signing_keys(path.read_text(encoding="utf-8"))
        if not keys:
            raise ValueError(f"{path}: no signing key in the file")
        return keys[0]
    path.parent.mkdir(parents=True, exist_ok=True)
    # Key versions are short random strings, as Synapse does (``ed25519:a_AbCd``).
    key = SigningKey.generate("a_" + secrets.token_urlsafe(3).replace("-", "x").replace("_", "y"))
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(write_signing_keys([key]))
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    return key
