"""Pure Matrix protocol code: no trio, httpx, quart, hypercorn or sqlalchemy.

Modules:
    errors          the error tree of the protocol core
    ids             identifier grammar (user, room, event IDs, aliases, server names)
    canonicaljson   canonical JSON encoding (appendices: Canonical JSON)
    signing         ed25519 keys, unpadded base64, JSON signing and verification
    room_versions   frozen RoomVersion records: every behaviour that differs by version
    events          the PDU model and event building
    hashing         content hash, reference hash, event IDs
    builder         building and signing events; format, signature and hash checks on receipt
    redaction       the redaction algorithm of every room version
    auth_rules      authorisation rules for room versions 1-12
    stateres        state resolution v1, v2 and v2.1
"""
