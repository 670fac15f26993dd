"""The Matrix protocol library: what every homeserver must compute identically.

Layering (checked by import-linter, see setup.cfg)::

    federation.core    pure: canonical JSON, signing, hashes, event IDs, redaction,
                       auth rules, state resolution. No I/O library imports.
    federation.client  outbound server-server HTTP (httpx); imports federation.core only.
"""
