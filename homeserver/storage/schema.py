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
# media repository (issue 9)

# --- end media (0005) ----------------------------------------------------------------------------


# --- e2ee (0006) ---------------------------------------------------------------------------------
# end-to-end encryption keys, backups, to-device (issue 8)

# --- end e2ee (0006) -----------------------------------------------------------------------------


# --- filters (0007) ------------------------------------------------------------------------------
# sync filters (issue 7)

# --- end filters (0007) --------------------------------------------------------------------------


# --- receipts_presence (0008) --------------------------------------------------------------------
# receipts, read markers and presence (issue 7)

# --- end receipts_presence (0008) ----------------------------------------------------------------


# --- room_directory (0009) -----------------------------------------------------------------------
# room aliases and the room directory (issue 6)

# --- end room_directory (0009) -------------------------------------------------------------------


# --- rooms_access (0010) -------------------------------------------------------------------------
# knock, restricted joins, forgotten rooms (issue 6)

# --- end rooms_access (0010) ---------------------------------------------------------------------


# --- registration_lock (0011) --------------------------------------------------------------------
# registration-lock PINs (issue 5)

# --- end registration_lock (0011) ----------------------------------------------------------------


# --- sync (0012) ---------------------------------------------------------------------------------
# sync bookkeeping (issue 7)

# --- end sync (0012) -----------------------------------------------------------------------------


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
