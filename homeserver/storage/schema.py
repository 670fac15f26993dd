"""Every table, as SQLAlchemy Core metadata.

This is the schema the migrations in ``migrations/versions`` must produce: a test upgrades an empty
database to head and checks that Alembic's ``compare_metadata`` finds no difference, on SQLite and
on PostgreSQL. Change both together (``alembic revision --autogenerate`` drafts the migration).

Rules that keep the two databases and the raw-driver execution in ``db.py`` simple:

- Column types are ``Text``, ``BigInteger``, ``Integer``, ``Boolean`` and ``LargeBinary`` only, so
  no value needs converting on its way in or out (SQLite's 0/1 booleans are converted in db.py).
- Times are ``BigInteger`` milliseconds since the epoch (``*_ts`` columns), as Matrix has them.
- No Python-side column defaults: statements run without SQLAlchemy's execution layer, so a
  default would silently not apply. Server defaults are fine.
- Every constraint is named by the naming convention, so migrations can refer to it and
  :class:`~homeserver.storage.db.UniqueViolation` names the same constraint on both databases.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
    UniqueConstraint,
    false,
)

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

#: The newest position of each stream (see ``stream_ids.py``). A missing row means position 0.
stream_positions = Table(
    "stream_positions",
    metadata,
    Column("stream", Text, nullable=False),
    Column("position", BigInteger, nullable=False),
    PrimaryKeyConstraint("stream"),
)

#: Local accounts. Users are deactivated, never deleted (their ID must not be reused).
users = Table(
    "users",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("password_hash", Text, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    Column("is_admin", Boolean, nullable=False, server_default=false()),
    Column("is_guest", Boolean, nullable=False, server_default=false()),
    Column("deactivated", Boolean, nullable=False, server_default=false()),
    # E.164 number the account registered or logs in with (one account per number)
    Column("phone", Text, nullable=True),
    # when ``phone`` was bound (added in 0002)
    Column("phone_added_ts", BigInteger, nullable=True),
    PrimaryKeyConstraint("user_id"),
    UniqueConstraint("phone"),
)

#: A user's devices (one per login session).
devices = Table(
    "devices",
    metadata,
    Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
    Column("device_id", Text, nullable=False),
    Column("display_name", Text, nullable=True),
    Column("last_seen_ts", BigInteger, nullable=True),
    Column("last_seen_ip", Text, nullable=True),
    PrimaryKeyConstraint("user_id", "device_id"),
)

#: Refresh tokens (MSC2918 / spec v1.3). Only a hash of the token is stored.
refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("token_hash", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("expires_ts", BigInteger, nullable=True),
    # set when the token is used; the replacement it was exchanged for
    Column("next_token_hash", Text, nullable=True),
    PrimaryKeyConstraint("token_hash"),
    ForeignKeyConstraint(
        ["user_id", "device_id"], ["devices.user_id", "devices.device_id"], ondelete="CASCADE"
    ),
    Index(None, "user_id", "device_id"),
    # accounts (0002): find the predecessor of a refresh token on its first use
    Index(None, "next_token_hash"),
)

#: Access tokens. Only a hash of the token is stored. Deleting a device deletes its tokens.
access_tokens = Table(
    "access_tokens",
    metadata,
    Column("token_hash", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    Column("valid_until_ms", BigInteger, nullable=True),
    # the refresh token this access token was issued with, if any
    Column(
        "refresh_token_hash",
        Text,
        ForeignKey("refresh_tokens.token_hash", ondelete="CASCADE"),
        nullable=True,
    ),
    PrimaryKeyConstraint("token_hash"),
    ForeignKeyConstraint(
        ["user_id", "device_id"], ["devices.user_id", "devices.device_id"], ondelete="CASCADE"
    ),
    Index(None, "user_id", "device_id"),
    Index(None, "refresh_token_hash"),
)


# --- accounts (0002) ----------------------------------------------------------------------------

#: Registration tokens for ``m.login.registration_token`` (Synapse's admin API shape).
registration_tokens = Table(
    "registration_tokens",
    metadata,
    Column("token", Text, nullable=False),
    # None: unlimited
    Column("uses_allowed", Integer, nullable=True),
    Column("pending", Integer, nullable=False, server_default="0"),
    Column("completed", Integer, nullable=False, server_default="0"),
    # ms since the epoch; None: never expires
    Column("expiry_time", BigInteger, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("token"),
)

#: User-interactive authentication sessions, bound to the request that started them.
uia_sessions = Table(
    "uia_sessions",
    metadata,
    Column("session_id", Text, nullable=False),
    # hash of method + path + the request's relevant body fields
    Column("request_key", Text, nullable=False),
    # the authenticated user who started it (None on /register)
    Column("user_id", Text, nullable=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("created_ts", BigInteger, nullable=False),
    Column("expires_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("session_id"),
    Index(None, "expires_ts"),
)

#: The stages completed in a UIA session and what each proved (JSON object).
uia_stages = Table(
    "uia_stages",
    metadata,
    Column(
        "session_id",
        Text,
        ForeignKey("uia_sessions.session_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("stage", Text, nullable=False),
    Column("result", Text, nullable=False),
    Column("completed_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("session_id", "stage"),
)

#: Phone number (msisdn) validation sessions. The code is stored only as a hash.
threepid_sessions = Table(
    "threepid_sessions",
    metadata,
    Column("sid", Text, nullable=False),
    Column("medium", Text, nullable=False),
    # E.164 with the "+" (as users.phone); the API shows it without, as the spec's msisdn
    Column("address", Text, nullable=False),
    Column("client_secret", Text, nullable=False),
    Column("send_attempt", Integer, nullable=False),
    Column("code_hash", Text, nullable=True),
    Column("code_expires_ts", BigInteger, nullable=False),
    Column("last_sent_ts", BigInteger, nullable=False),
    Column("failed_attempts", Integer, nullable=False, server_default="0"),
    Column("validated_ts", BigInteger, nullable=True),
    Column("created_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("sid"),
    UniqueConstraint("medium", "address", "client_secret"),
    Index(None, "created_ts"),
)


# --- account surface (0003) ---------------------------------------------------------------------

#: Profile fields of local users (displayname, avatar_url, m.tz, custom keys), one row each.
profile_fields = Table(
    "profile_fields",
    metadata,
    Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
    Column("field", Text, nullable=False),
    # the JSON-encoded value
    Column("value_json", Text, nullable=False),
    # the case-folded display name, for the user directory; NULL on other fields
    Column("search_text", Text, nullable=True),
    PrimaryKeyConstraint("user_id", "field"),
)

#: Account data, global (room_id '') and per room, with the ACCOUNT_DATA position of its write.
account_data = Table(
    "account_data",
    metadata,
    Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
    Column("room_id", Text, nullable=False),
    Column("data_type", Text, nullable=False),
    Column("content_json", Text, nullable=False),
    Column("stream_id", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "room_id", "data_type"),
    Index(None, "user_id", "stream_id"),
)

#: Whose devices changed at which DEVICE_LISTS position (kept after the device is deleted).
device_list_changes = Table(
    "device_list_changes",
    metadata,
    Column("stream_id", BigInteger, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    PrimaryKeyConstraint("stream_id", "user_id", "device_id"),
    Index(None, "user_id", "stream_id"),
)

#: OpenID tokens (``/user/{userId}/openid/request_token``). Only a hash of the token is stored.
openid_tokens = Table(
    "openid_tokens",
    metadata,
    Column("token_hash", Text, nullable=False),
    Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
    Column("valid_until_ms", BigInteger, nullable=False),
    PrimaryKeyConstraint("token_hash"),
    Index(None, "valid_until_ms"),
)


# --- rooms (0004) -------------------------------------------------------------------------------
# The event graph and room state; design and growth bound in docs/discussion/rooms_storage.md.

#: Rooms this server knows.
rooms = Table(
    "rooms",
    metadata,
    Column("room_id", Text, nullable=False),
    Column("room_version", Text, nullable=False),
    Column("creator", Text, nullable=False),
    # published in the room directory (``visibility: public``)
    Column("is_public", Boolean, nullable=False, server_default=false()),
    Column("created_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("room_id"),
)

#: Every event (PDU) exactly as built or received, with server-local metadata beside it.
events = Table(
    "events",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("room_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("state_key", Text, nullable=True),
    Column("sender", Text, nullable=False),
    # the PDU as canonical JSON, never rewritten (redaction is applied when reading)
    Column("json", Text, nullable=False),
    # the topological ordering (``/messages``)
    Column("depth", BigInteger, nullable=False),
    Column("origin_server_ts", BigInteger, nullable=False),
    # the EVENTS stream position (``/sync``)
    Column("stream_ordering", BigInteger, nullable=False),
    Column("outlier", Boolean, nullable=False, server_default=false()),
    Column("rejected_reason", Text, nullable=True),
    Column("redacted", Boolean, nullable=False, server_default=false()),
    # the state group holding the room state *after* this event (NULL for outliers)
    Column("state_group", BigInteger, nullable=True),
    PrimaryKeyConstraint("event_id"),
    UniqueConstraint("stream_ordering"),
    Index(None, "room_id", "depth", "stream_ordering"),
    Index(None, "room_id", "stream_ordering"),
)

#: prev_events edges: ``event_id`` follows ``prev_event_id``.
event_edges = Table(
    "event_edges",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("prev_event_id", Text, nullable=False),
    PrimaryKeyConstraint("event_id", "prev_event_id"),
    Index(None, "prev_event_id"),
)

#: auth_events edges (in v12 also the implied edge to the create event).
event_auth = Table(
    "event_auth",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("auth_event_id", Text, nullable=False),
    PrimaryKeyConstraint("event_id", "auth_event_id"),
)

#: The events of each room that nothing refers to as a prev_event yet.
event_forward_extremities = Table(
    "event_forward_extremities",
    metadata,
    Column("room_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    PrimaryKeyConstraint("room_id", "event_id"),
)

#: State groups: a full snapshot (``prev_group`` NULL) or a delta over ``prev_group``.
state_groups = Table(
    "state_groups",
    metadata,
    # = the stream_ordering of the event that created the group
    Column("id", BigInteger, nullable=False),
    Column("room_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("prev_group", BigInteger, nullable=True),
    # entries in the snapshot at the base of this group's chain
    Column("base_size", BigInteger, nullable=False),
    # entries in the deltas between that snapshot and this group, this one included
    Column("chain_rows", BigInteger, nullable=False),
    PrimaryKeyConstraint("id"),
)

#: The entries of a state group (a snapshot's full state, or a delta; NULL event_id: removed).
state_group_entries = Table(
    "state_group_entries",
    metadata,
    Column("state_group", BigInteger, nullable=False),
    Column("type", Text, nullable=False),
    Column("state_key", Text, nullable=False),
    Column("event_id", Text, nullable=True),
    PrimaryKeyConstraint("state_group", "type", "state_key"),
)

#: The current state of each room, with membership denormalised for member/room lists.
current_state = Table(
    "current_state",
    metadata,
    Column("room_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("state_key", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    # content.membership of m.room.member events, else NULL
    Column("membership", Text, nullable=True),
    PrimaryKeyConstraint("room_id", "type", "state_key"),
    Index(None, "state_key", "type", "membership"),
)

#: Client transaction IDs of sends, for idempotency: (user, device, room, txn) → event.
event_txn_ids = Table(
    "event_txn_ids",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("txn_id", Text, nullable=False),
    Column("room_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "device_id", "room_id", "txn_id"),
)

# --- end rooms (0004) ---------------------------------------------------------------------------


# --- media (0005) --------------------------------------------------------------------------------
# The media repository; layout and life cycle in docs/discussion/media.md.

#: Media items, local (``origin`` is this server) and cached remote ones. The bytes live in the
#: content-addressed file store under ``sha256``; identical uploads share one file.
media = Table(
    "media",
    metadata,
    Column("origin", Text, nullable=False),
    Column("media_id", Text, nullable=False),
    # the local uploader (or creator of a pending ID); NULL for remote media
    Column("user_id", Text, nullable=True),
    Column("content_type", Text, nullable=True),
    Column("upload_name", Text, nullable=True),
    # NULL until the content is there (a pending asynchronous upload)
    Column("size", BigInteger, nullable=True),
    Column("sha256", Text, nullable=True),
    # when the ID was created (local) or the cache entry filled (remote)
    Column("created_ts", BigInteger, nullable=False),
    Column("uploaded_ts", BigInteger, nullable=True),
    # a pending ID expires unused at this time; NULL once uploaded
    Column("unused_expires_ts", BigInteger, nullable=True),
    # last download or thumbnail (coarse: updated at most once an hour); retention reads it
    Column("last_access_ts", BigInteger, nullable=True),
    PrimaryKeyConstraint("origin", "media_id"),
    Index(None, "user_id", "created_ts"),
    Index(None, "sha256"),
    Index(None, "last_access_ts"),
    Index(None, "unused_expires_ts"),
)

#: Thumbnails, keyed by the source's content hash: identical uploads share their thumbnails.
media_thumbnails = Table(
    "media_thumbnails",
    metadata,
    Column("source_sha256", Text, nullable=False),
    # the requested box and method this thumbnail answers
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("method", Text, nullable=False),
    Column("animated", Boolean, nullable=False),
    Column("content_type", Text, nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("sha256", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("source_sha256", "width", "height", "method", "animated"),
    Index(None, "sha256"),
)

# media repository

# --- end media (0005) ----------------------------------------------------------------------------


# --- e2ee (0006) ---------------------------------------------------------------------------------
# end-to-end encryption keys, backups, to-device; see docs/discussion/e2ee.md.
# No foreign keys to devices: deleting a device deletes its rows here in the same transaction
# (storage/e2ee_cleanup.py), and nothing here may block a device's deletion.

#: A device's identity keys exactly as uploaded (the signed JSON, never re-serialised).
e2e_device_keys = Table(
    "e2e_device_keys",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("key_json", Text, nullable=False),
    PrimaryKeyConstraint("user_id", "device_id"),
)

#: Unclaimed one-time keys; claiming one deletes its row (``DELETE ... RETURNING``).
e2e_one_time_keys = Table(
    "e2e_one_time_keys",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("algorithm", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    # the key's value as uploaded: a JSON string or a signed key object
    Column("key_json", Text, nullable=False),
    PrimaryKeyConstraint("user_id", "device_id", "algorithm", "key_id"),
)

#: The fallback key of each device and algorithm; ``used`` once it was handed out.
e2e_fallback_keys = Table(
    "e2e_fallback_keys",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("algorithm", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    Column("key_json", Text, nullable=False),
    Column("used", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("user_id", "device_id", "algorithm"),
)

#: A user's current cross-signing keys (usage: master, self_signing, user_signing).
e2e_cross_signing_keys = Table(
    "e2e_cross_signing_keys",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("usage", Text, nullable=False),
    # unpadded base64 ed25519 public key (the key ID is ed25519:<public_key>)
    Column("public_key", Text, nullable=False),
    Column("key_json", Text, nullable=False),
    PrimaryKeyConstraint("user_id", "usage"),
)

#: Signatures uploaded through /keys/signatures/upload, merged into keys when they are queried.
e2e_cross_signing_signatures = Table(
    "e2e_cross_signing_signatures",
    metadata,
    Column("target_user_id", Text, nullable=False),
    # a device ID, or the public key of a master key
    Column("target_key_id", Text, nullable=False),
    Column("signer_user_id", Text, nullable=False),
    Column("signer_key_id", Text, nullable=False),
    Column("signature", Text, nullable=False),
    PrimaryKeyConstraint("target_user_id", "target_key_id", "signer_user_id", "signer_key_id"),
    Index(None, "signer_user_id", "signer_key_id"),
)

#: Server-side key backup versions; deleted versions stay (numbers are never reused).
e2e_room_keys_versions = Table(
    "e2e_room_keys_versions",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("algorithm", Text, nullable=False),
    Column("auth_data_json", Text, nullable=False),
    # bumped whenever the version's keys change
    Column("etag", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, server_default=false()),
    PrimaryKeyConstraint("user_id", "version"),
)

#: The backed-up session keys of each backup version.
e2e_room_keys = Table(
    "e2e_room_keys",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("version", BigInteger, nullable=False),
    Column("room_id", Text, nullable=False),
    Column("session_id", Text, nullable=False),
    Column("first_message_index", BigInteger, nullable=False),
    Column("forwarded_count", BigInteger, nullable=False),
    Column("is_verified", Boolean, nullable=False),
    Column("session_data_json", Text, nullable=False),
    PrimaryKeyConstraint("user_id", "version", "room_id", "session_id"),
)

#: Pending to-device messages per recipient device, with their TO_DEVICE stream position.
to_device_messages = Table(
    "to_device_messages",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("stream_id", BigInteger, nullable=False),
    # the event as /sync hands it out: {"type", "sender", "content"}
    Column("message_json", Text, nullable=False),
    PrimaryKeyConstraint("user_id", "device_id", "stream_id"),
)

#: Transaction IDs of /sendToDevice per sending device, for idempotency (kept for a day).
to_device_txns = Table(
    "to_device_txns",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("txn_id", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "device_id", "txn_id"),
)

# --- end e2ee (0006) -----------------------------------------------------------------------------


# --- filters (0007) ------------------------------------------------------------------------------
# sync filters

#: Filters uploaded with ``POST /user/{userId}/filter``: numbered per user from 0 (as Synapse),
#: the JSON as uploaded with its keys sorted (an identical upload gets the same ID back).
user_filters = Table(
    "user_filters",
    metadata,
    Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
    Column("filter_id", BigInteger, nullable=False),
    Column("filter_json", Text, nullable=False),
    PrimaryKeyConstraint("user_id", "filter_id"),
)

# --- end filters (0007) --------------------------------------------------------------------------


# --- receipts_presence (0008) --------------------------------------------------------------------
# receipts, read markers and presence

#: Read receipts (``m.read``, ``m.read.private``): one per (room, type, user, thread), moved only
#: forward; ``stream_id`` is the RECEIPTS position of its last write.
receipts = Table(
    "receipts",
    metadata,
    Column("room_id", Text, nullable=False),
    Column("receipt_type", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    # '' for an unthreaded receipt, else "main" or the thread root's event ID
    Column("thread_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("ts", BigInteger, nullable=False),
    Column("stream_id", BigInteger, nullable=False),
    PrimaryKeyConstraint("room_id", "receipt_type", "user_id", "thread_id"),
    Index(None, "stream_id"),
)

#: Presence of local users as last published, with the PRESENCE position of that change.
#: ``last_active_ts`` may trail the server's memory by ``presence.last_active_write_interval_s``.
presence = Table(
    "presence",
    metadata,
    Column("user_id", Text, nullable=False),
    # online, unavailable or offline
    Column("state", Text, nullable=False),
    Column("status_msg", Text, nullable=True),
    # ms since the epoch; 0: never active
    Column("last_active_ts", BigInteger, nullable=False),
    Column("currently_active", Boolean, nullable=False),
    Column("stream_id", BigInteger, nullable=False),
    # the PRESENCE position of the user's last change of last-seen privacy (0: never)
    Column("privacy_stream_id", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id"),
    Index(None, "stream_id"),
)

# --- end receipts_presence (0008) ----------------------------------------------------------------


# --- room_directory (0009) -----------------------------------------------------------------------
# room aliases and the room directory

#: Local room aliases (``#localpart:our.server``) and the room each points to. An alias names
#: one room; a room may have many aliases. ``creator`` may delete it again.
room_aliases = Table(
    "room_aliases",
    metadata,
    Column("alias", Text, nullable=False),
    Column("room_id", Text, nullable=False),
    Column("creator", Text, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("alias"),
    Index(None, "room_id"),
)

#: ``GET /publicRooms`` lists the published rooms (``rooms.is_public``), a small share of all.
Index("ix_rooms_is_public", rooms.c.is_public)

# --- end room_directory (0009) -------------------------------------------------------------------


# --- rooms_access (0010) -------------------------------------------------------------------------
# knock, restricted joins, forgotten rooms

#: Rooms a user has forgotten (``POST /rooms/{roomId}/forget``). The row names the user's member
#: event at the time: the room counts as forgotten only while that event is still the user's
#: current membership, so re-joining, a new invite or a knock "un-forgets" it with no extra write.
forgotten_rooms = Table(
    "forgotten_rooms",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("room_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    Column("forgotten_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "room_id"),
)

#: ``GET /timestamp_to_event``: the nearest event of a room to a time.
Index("ix_events_room_id_origin_server_ts", events.c.room_id, events.c.origin_server_ts)
#: ``unsigned.transaction_id``: which transaction ID (if any) created an event.
Index("ix_event_txn_ids_event_id", event_txn_ids.c.event_id)

# --- end rooms_access (0010) ---------------------------------------------------------------------


# --- registration_lock (0011) --------------------------------------------------------------------
# registration-lock PINs

#: Registration-lock PINs (argon2id hashes), the account's last activity and wrong-PIN counts.
registration_locks = Table(
    "registration_locks",
    metadata,
    Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
    Column("pin_hash", Text, nullable=False),
    Column("set_ts", BigInteger, nullable=False),
    # newest known activity of the account (PIN set, logins, device last-seen flushes)
    Column("last_active_ts", BigInteger, nullable=False),
    Column("failed_attempts", Integer, nullable=False, server_default="0"),
    # start of the window that failed_attempts counts in (None: no wrong PIN yet)
    Column("failed_window_start_ts", BigInteger, nullable=True),
    PrimaryKeyConstraint("user_id"),
)

#: Single-use credentials that were used up: rotated refresh tokens (their hash; a reuse revokes
#: the device's session) and phone verification sessions a login consumed (``kind``).
spent_credentials = Table(
    "spent_credentials",
    metadata,
    Column("kind", Text, nullable=False),
    Column("credential", Text, nullable=False),
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=True),
    Column("spent_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("kind", "credential"),
    Index(None, "spent_ts"),
)

# --- end registration_lock (0011) ----------------------------------------------------------------


# --- sync (0012) ---------------------------------------------------------------------------------
# sync bookkeeping

#: A user's membership events by stream position: "what happened to my memberships since X"
#: for ``/sync`` costs in proportion to the answer (partial: only m.room.member rows).
Index(
    "ix_events_member_state_key_stream_ordering",
    events.c.state_key,
    events.c.stream_ordering,
    sqlite_where=events.c.type == "m.room.member",
    postgresql_where=events.c.type == "m.room.member",
)

# --- end sync (0012) -----------------------------------------------------------------------------


# --- relations (0013) ----------------------------------------------------------------------------
# relations, threads and redactions' back-references

#: Each event's ``content.m.relates_to`` with a ``rel_type`` (client-server API › Forming
#: relationships between events), written with the event, deleted when the event is redacted.
#: The child's event type, sender and positions are copied so that ``/relations``, the bundled
#: aggregations and ``/threads`` read this table (and the child events) only.
event_relations = Table(
    "event_relations",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("relates_to_id", Text, nullable=False),
    Column("rel_type", Text, nullable=False),
    # ``m.annotation``'s key (a reaction's emoji)
    Column("aggregation_key", Text, nullable=True),
    Column("room_id", Text, nullable=False),
    Column("type", Text, nullable=False),
    Column("sender", Text, nullable=False),
    Column("depth", BigInteger, nullable=False),
    Column("stream_ordering", BigInteger, nullable=False),
    PrimaryKeyConstraint("event_id"),
    Index(None, "relates_to_id", "rel_type", "depth", "stream_ordering"),
    # ``/threads``: the thread roots of a room by their newest reply
    Index(None, "room_id", "rel_type", "stream_ordering"),
)

#: Which ``m.room.redaction`` events redact which event (``unsigned.redacted_because``).
event_redactions = Table(
    "event_redactions",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("redacts", Text, nullable=False),
    Column("room_id", Text, nullable=False),
    PrimaryKeyConstraint("event_id"),
    Index(None, "redacts"),
)

# --- end relations (0013) ------------------------------------------------------------------------

# --- search (0014) -------------------------------------------------------------------------------
# server-side full-text search of room events

#: The searchable text of room events (``POST /search``, category ``room_events``): one row per
#: event, for ``m.room.message`` (``content.body``), ``m.room.name`` (``content.name``) and
#: ``m.room.topic`` (``content.topic`` and the plain-text ``m.topic`` body). Keyed by the event's
#: stream position, which on SQLite is the rowid of the row, so the FTS5 index
#: ``event_search_fts`` (created by the migration on SQLite only, kept by triggers; not in this
#: metadata) can point at it. PostgreSQL indexes ``to_tsvector('english', value)`` with a GIN
#: expression index made by the migration (autogenerate cannot compare expression indexes).
#: A redaction deletes the row.
event_search = Table(
    "event_search",
    metadata,
    Column(
        "stream_ordering",
        BigInteger().with_variant(Integer, "sqlite"),
        nullable=False,
        autoincrement=False,
    ),
    Column("event_id", Text, nullable=False),
    Column("room_id", Text, nullable=False),
    Column("sender", Text, nullable=False),
    # content.body, content.name or content.topic
    Column("key", Text, nullable=False),
    Column("value", Text, nullable=False),
    Column("origin_server_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("stream_ordering"),
    UniqueConstraint("event_id"),
    Index(None, "room_id", "stream_ordering"),
)

# --- end search (0014) ---------------------------------------------------------------------------

# --- reports (0015) ------------------------------------------------------------------------------
# content reports: events, rooms and users reported by users to the server's operators

#: One report each: ``kind`` is ``event`` (``room_id`` and ``event_id`` set), ``room``
#: (``room_id``) or ``user`` (``target_user_id``). Kept for the operators; nothing deletes them.
content_reports = Table(
    "content_reports",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), nullable=False, autoincrement=True),
    Column("kind", Text, nullable=False),
    Column("reporter", Text, nullable=False),
    Column("room_id", Text, nullable=True),
    Column("event_id", Text, nullable=True),
    Column("target_user_id", Text, nullable=True),
    Column("reason", Text, nullable=True),
    # the legacy ``score`` of event reports (-100 most offensive .. 0), when given
    Column("score", Integer, nullable=True),
    Column("received_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("id"),
    Index(None, "received_ts"),
)

# --- end reports (0015) --------------------------------------------------------------------------

# --- federation_keys (0016) ----------------------------------------------------------------------
# federation: server signing keys, ours and other servers'

#: Other servers' signing keys as fetched (from the origin or through a notary), one row per
#: ``(server, key ID)``. ``key_json`` is the whole signed key response the key came in, kept so
#: that we can answer as a notary with the origin's own signature; ``valid_until_ts`` is that
#: response's (not capped: the 7-day cap is applied on use, from ``fetched_ts``); ``expired_ts``
#: is set when the key was listed in ``old_verify_keys``. A row is only replaced by a response at
#: least as valid as the one stored (a server forgetting a key does not make us forget it).
server_keys = Table(
    "server_keys",
    metadata,
    Column("server_name", Text, nullable=False),
    Column("key_id", Text, nullable=False),
    # unpadded base64 of the 32-byte ed25519 public key
    Column("verify_key", Text, nullable=False),
    Column("valid_until_ts", BigInteger, nullable=False),
    Column("expired_ts", BigInteger, nullable=True),
    Column("fetched_ts", BigInteger, nullable=False),
    # the origin itself, or the notary that relayed the response
    Column("fetched_from", Text, nullable=False),
    Column("key_json", Text, nullable=False),
    PrimaryKeyConstraint("server_name", "key_id"),
)

# --- end federation_keys (0016) ------------------------------------------------------------------

# --- federation_rooms (0017) ---------------------------------------------------------------------
# federation: inbound transactions, outliers and rejected events

#: Transactions received from other servers (``PUT /_matrix/federation/v1/send/{txnId}``):
#: the answer given the first time, so that a retransmission gets the same answer and its
#: PDUs and EDUs are not processed twice.
federation_inbound_txns = Table(
    "federation_inbound_txns",
    metadata,
    Column("origin", Text, nullable=False),
    Column("txn_id", Text, nullable=False),
    # the JSON answer (``{"pdus": {event_id: {} | {"error": ...}}}``)
    Column("response", Text, nullable=False),
    Column("received_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("origin", "txn_id"),
    Index(None, "received_ts"),
)

#: Events that passed the auth checks against their own state but failed them against the
#: room's current state (spec: Soft failure). They are stored (``events.outlier`` is set so no
#: client read returns them) with their state group, so that later events can build on them,
#: but they are never forward extremities.
soft_failed_events = Table(
    "soft_failed_events",
    metadata,
    Column("event_id", Text, nullable=False),
    Column("room_id", Text, nullable=False),
    Column("reason", Text, nullable=False),
    PrimaryKeyConstraint("event_id"),
)

# --- end federation_rooms (0017) -----------------------------------------------------------------

# --- sync_conformance (0018) ---------------------------------------------------------------------
# sync and membership conformance bookkeeping

# --- end sync_conformance (0018) -----------------------------------------------------------------

# --- federation_sender (0019) --------------------------------------------------------------------
# federation: the outbound sender's per-destination queues and back-off

#: Local PDUs still to be sent to a destination (deleted once the destination accepted them).
federation_outbox = Table(
    "federation_outbox",
    metadata,
    Column("destination", Text, nullable=False),
    # the event's EVENTS stream position: the order the destination receives them in
    Column("stream_ordering", BigInteger, nullable=False),
    Column("room_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    PrimaryKeyConstraint("destination", "stream_ordering"),
)

#: Back-off per destination; no row: never failed.
federation_destinations = Table(
    "federation_destinations",
    metadata,
    Column("destination", Text, nullable=False),
    # consecutive failed transactions
    Column("failures", Integer, nullable=False),
    Column("retry_interval_ms", BigInteger, nullable=False),
    # no transaction before this time
    Column("retry_at_ts", BigInteger, nullable=False),
    Column("last_success_ts", BigInteger, nullable=True),
    PrimaryKeyConstraint("destination"),
)

#: How far the sender has read the local events into the outbox (one row, ``name = 'events'``).
federation_sender_position = Table(
    "federation_sender_position",
    metadata,
    Column("name", Text, nullable=False),
    Column("stream_ordering", BigInteger, nullable=False),
    PrimaryKeyConstraint("name"),
)

# --- end federation_sender (0019) ----------------------------------------------------------------

# --- pushers (0020) ------------------------------------------------------------------------------
# pushers and the notifications they were sent

#: HTTP pushers (``POST /pushers/set``): where a user's notifications go. The device that set
#: one owns it: deleting the device (logout, password change) deletes its pushers.
pushers = Table(
    "pushers",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("app_id", Text, nullable=False),
    Column("pushkey", Text, nullable=False),
    # the device whose access token set it (NULL: set by an admin path, owned by no device)
    Column("device_id", Text, nullable=True),
    Column("kind", Text, nullable=False),
    Column("app_display_name", Text, nullable=False),
    Column("device_display_name", Text, nullable=False),
    Column("profile_tag", Text, nullable=True),
    Column("lang", Text, nullable=False),
    # the pusher's ``data`` object (``url``, ``format`` and whatever the client added)
    Column("data_json", Text, nullable=False),
    Column("enabled", Boolean, nullable=False),
    Column("created_ts", BigInteger, nullable=False),
    # the sender's position: notifications up to this EVENTS position have been sent (or
    # given up on); a restart resumes after it
    Column("last_stream_ordering", BigInteger, nullable=False),
    # when the gateway started failing (NULL: it answers)
    Column("failing_since", BigInteger, nullable=True),
    PrimaryKeyConstraint("user_id", "app_id", "pushkey"),
    ForeignKeyConstraint(
        ["user_id", "device_id"], ["devices.user_id", "devices.device_id"], ondelete="CASCADE"
    ),
    Index(None, "app_id", "pushkey"),
)

#: The events that notified a local user (push rules' ``notify``), for ``GET /notifications``
#: and the pushers; pruned by age.
push_notifications = Table(
    "push_notifications",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("room_id", Text, nullable=False),
    Column("event_id", Text, nullable=False),
    # the event's EVENTS stream position
    Column("stream_ordering", BigInteger, nullable=False),
    # the actions of the push rule that matched (JSON array)
    Column("actions_json", Text, nullable=False),
    Column("highlight", Boolean, nullable=False),
    Column("ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("user_id", "event_id"),
    Index(None, "user_id", "stream_ordering"),
    Index(None, "ts"),
)

#: How far the push sender has evaluated events into ``push_notifications`` (one row,
#: ``name = 'events'``).
push_sender_position = Table(
    "push_sender_position",
    metadata,
    Column("name", Text, nullable=False),
    Column("stream_ordering", BigInteger, nullable=False),
    PrimaryKeyConstraint("name"),
)

# --- end pushers (0020) --------------------------------------------------------------------------

# --- federation_devices (0021) -------------------------------------------------------------------
# federation: other servers' devices and keys, and our device-list stream to them

#: Other servers' users whose device list we hold: the ``stream_id`` their server gave it (an
#: update with another ``prev_id`` means one went missing) and their cross-signing keys.
remote_device_lists = Table(
    "remote_device_lists",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("stream_id", BigInteger, nullable=False),
    Column("master_key_json", Text, nullable=True),
    Column("self_signing_key_json", Text, nullable=True),
    PrimaryKeyConstraint("user_id"),
)

#: Their devices, as their server sent them (display name, device keys).
remote_devices = Table(
    "remote_devices",
    metadata,
    Column("user_id", Text, nullable=False),
    Column("device_id", Text, nullable=False),
    Column("display_name", Text, nullable=True),
    Column("keys_json", Text, nullable=True),
    PrimaryKeyConstraint("user_id", "device_id"),
)

# --- end federation_devices (0021) ---------------------------------------------------------------

# --- email_threepids (0022) ----------------------------------------------------------------------
# email addresses as third-party identifiers: verification sessions and bound addresses
# (validation sessions of email addresses live in ``threepid_sessions``, medium "email")

#: Email addresses bound to accounts (case-folded); each address belongs to one account only.
user_threepids = Table(
    "user_threepids",
    metadata,
    Column("user_id", Text, ForeignKey("users.user_id"), nullable=False),
    Column("medium", Text, nullable=False),
    Column("address", Text, nullable=False),
    Column("validated_ts", BigInteger, nullable=False),
    Column("added_ts", BigInteger, nullable=False),
    PrimaryKeyConstraint("medium", "address"),
    Index(None, "user_id"),
)

# --- end email_threepids (0022) ------------------------------------------------------------------


def constraint_name(table: str, columns: Sequence[str]) -> str | None:
    """The primary key, unique constraint or unique index of ``table`` over exactly ``columns``.

    SQLite reports a unique violation as ``table.column`` pairs, not by name; this maps them back
    so the error names the same constraint as on PostgreSQL.
    """
    t = metadata.tables.get(table)
    if t is None:
        return None
    wanted = set(columns)
    if {c.name for c in t.primary_key.columns} == wanted:
        return str(t.primary_key.name)
    for constraint in t.constraints:
        if (
            isinstance(constraint, UniqueConstraint)
            and {c.name for c in constraint.columns} == wanted
        ):
            return str(constraint.name)
    for index in t.indexes:
        if index.unique and {c.name for c in index.columns} == wanted:
            return str(index.name)
    return None
