"""Knock, restricted joins, forgotten rooms (issue 6).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23

- ``forgotten_rooms``: rooms a user forgot, with the member event current at the time.
- index ``events (room_id, origin_server_ts)`` for ``/timestamp_to_event``.
- index ``event_txn_ids (event_id)`` for ``unsigned.transaction_id``.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "forgotten_rooms",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("forgotten_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "room_id", name="pk_forgotten_rooms"),
    )
    op.create_index("ix_events_room_id_origin_server_ts", "events", ["room_id", "origin_server_ts"])
    op.create_index("ix_event_txn_ids_event_id", "event_txn_ids", ["event_id"])


def downgrade() -> None:
    op.drop_index("ix_event_txn_ids_event_id", table_name="event_txn_ids")
    op.drop_index("ix_events_room_id_origin_server_ts", table_name="events")
    op.drop_table("forgotten_rooms")
