"""Errors raised by the E2EE key logic.

    E2eeError
    ├── KeyFormatError        a key object is malformed (the API answers 400 M_BAD_JSON)
    ├── KeyOwnerMismatch      a key names another user or device (400 M_INVALID_PARAM)
    ├── InvalidSignature      a required signature is missing or does not verify
    │                         (400 M_INVALID_SIGNATURE)
    ├── KeyConflict           a one-time key ID exists with other content (400 M_INVALID_PARAM)
    ├── MissingMasterKey      a signing key needs a master key and there is none
    │                         (400 M_MISSING_PARAM)
    └── KeyIdInUse            a cross-signing public key equals one of the user's device IDs
                              (403 M_FORBIDDEN)

The homeserver's services translate these into Matrix errors; this package never imports it.
"""

from __future__ import annotations


class E2eeError(Exception):
    """Base class of every error this package raises."""


class KeyFormatError(E2eeError, ValueError):
    """A key object does not have the shape the spec gives it."""


class KeyOwnerMismatch(E2eeError):
    """A key's ``user_id`` or ``device_id`` is not the uploader's."""


class InvalidSignature(E2eeError):
    """A signature that must be there is absent, malformed, or does not verify."""


class KeyConflict(E2eeError):
    """A one-time key with this ID was uploaded before with different content."""


class MissingMasterKey(E2eeError):
    """A self-signing or user-signing key was uploaded while no master key is known."""


class KeyIdInUse(E2eeError):
    """A cross-signing public key is also the ID of one of the user's devices."""
