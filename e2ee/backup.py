"""Server-side key backup: which of two backups of one session the server keeps.

Spec: end_to_end_encryption.md › Server-side key backups:

    "When a client uploads a key for a session that the server already has a key for, the
    server will choose to either keep the existing key or replace it with the new key based on
    the key metadata as follows:

    - if the keys have different values for ``is_verified``, then it will keep the key that has
      ``is_verified`` set to ``true``;
    - if they have the same values for ``is_verified``, then it will keep the key with a lower
      ``first_message_index``;
    - and finally, if ``is_verified`` and ``first_message_index`` are equal, then it will keep
      the key with a lower ``forwarded_count``."

When all three are equal the existing key is kept (nothing is better about the new one).
"""

from __future__ import annotations

from e2ee.models import KeyBackupData

__all__ = ["should_replace"]


def should_replace(existing: KeyBackupData | None, new: KeyBackupData) -> bool:
    """Whether ``new`` replaces ``existing`` in the backup (always, when there is none)."""
    if existing is None:
        return True
    if existing.is_verified != new.is_verified:
        return new.is_verified
    if existing.first_message_index != new.first_message_index:
        return new.first_message_index < existing.first_message_index
    return new.forwarded_count < existing.forwarded_count
