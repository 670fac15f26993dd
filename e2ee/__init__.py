"""End-to-end encryption key management: pure domain logic, no I/O.

Layering (lower never imports higher; nothing here imports ``homeserver``)::

    errors  ←  models  ←  verify  ←  cross_signing, signatures
                      ←  backup, device_lists

- :mod:`e2ee.models`: parsing device, one-time, fallback, cross-signing and backup keys.
- :mod:`e2ee.verify`: which key must have signed what (crypto from ``federation.core.signing``).
- :mod:`e2ee.cross_signing`: checking ``/keys/device_signing/upload`` and when it needs UIA.
- :mod:`e2ee.signatures`: checking ``/keys/signatures/upload`` against a ``KeyLookup``.
- :mod:`e2ee.backup`: the replacement rule of server-side key backups.
- :mod:`e2ee.device_lists`: ``device_lists.changed`` / ``left`` from what happened in a range.
"""
