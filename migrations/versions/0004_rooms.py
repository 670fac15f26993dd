"""Rooms and the event graph: events, edges, auth edges, extremities, state groups, current state.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25

- ``rooms``: one row per room (version, creator, directory visibility).
- ``events``: every PDU as built or received, with depth, stream ordering and flags.
- ``event_edges`` / ``event_auth``: prev_events and auth_events edges.
- ``event_forward_extremities``: the room's current tips.
- ``state_groups`` / ``state_group_entries``: state as snapshots plus bounded deltas
  (docs/discussion/rooms_storage.md).
- ``current_state``: the room's current state, membership denormalised.
- ``event_txn_ids``: client transaction IDs for idempotent sends.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "rooms",
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("room_version", sa.Text(), nullable=False),
        sa.Column("creator", sa.Text(), nullable=False),
        sa.Column("is_public", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("room_id", name="pk_rooms"),
    )
    op.create_table(
        "events",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("state_key", sa.Text(), nullable=True),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("json", sa.Text(), nullable=False),
        sa.Column("depth", sa.BigInteger(), nullable=False),
        sa.Column("origin_server_ts", sa.BigInteger(), nullable=False),
        sa.Column("stream_ordering", sa.BigInteger(), nullable=False),
        sa.Column("outlier", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("rejected_reason", sa.Text(), nullable=True),
        sa.Column("redacted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("state_group", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("event_id", name="pk_events"),
        sa.UniqueConstraint("stream_ordering", name="uq_events_stream_ordering"),
    )
    op.create_index(
        "ix_events_room_id_depth_stream_ordering",
        "events",
        ["room_id", "depth", "stream_ordering"],
    )
    op.create_index("ix_events_room_id_stream_ordering", "events", ["room_id", "stream_ordering"])
    op.create_table(
        "event_edges",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("prev_event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "prev_event_id", name="pk_event_edges"),
    )
    op.create_index("ix_event_edges_prev_event_id", "event_edges", ["prev_event_id"])
    op.create_table(
        "event_auth",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("auth_event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", "auth_event_id", name="pk_event_auth"),
    )
    op.create_table(
        "event_forward_extremities",
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("room_id", "event_id", name="pk_event_forward_extremities"),
    )
    op.create_table(
        "state_groups",
        sa.Column("id", sa.BigInteger(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("prev_group", sa.BigInteger(), nullable=True),
        sa.Column("base_size", sa.BigInteger(), nullable=False),
        sa.Column("chain_rows", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_state_groups"),
    )
    op.create_table(
        "state_group_entries",
        sa.Column("state_group", sa.BigInteger(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("state_key", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("state_group", "type", "state_key", name="pk_state_group_entries"),
    )
    op.create_table(
        "current_state",
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("state_key", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("membership", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("room_id", "type", "state_key", name="pk_current_state"),
    )
    op.create_index(
        "ix_current_state_state_key_type_membership",
        "current_state",
        ["state_key", "type", "membership"],
    )
    op.create_table(
        "event_txn_ids",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("txn_id", sa.Text(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "user_id", "device_id", "room_id", "txn_id", name="pk_event_txn_ids"
        ),
    )


def downgrade() -> None:
    op.drop_table("event_txn_ids")
    op.drop_index("ix_current_state_state_key_type_membership", table_name="current_state")
    op.drop_table("current_state")
    op.drop_table("state_group_entries")
    op.drop_table("state_groups")
    op.drop_table("event_forward_extremities")
    op.drop_table("event_auth")
    op.drop_index("ix_event_edges_prev_event_id", table_name="event_edges")
    op.drop_table("event_edges")
    op.drop_index("ix_events_room_id_stream_ordering", table_name="events")
    op.drop_index("ix_events_room_id_depth_stream_ordering", table_name="events")
    op.drop_table("events")
    op.drop_table("rooms")
