"""Receipts, read markers and presence (issue 7).

- ``receipts``: one read receipt per (room, receipt type, user, thread), with its RECEIPTS stream
  position; ``thread_id`` is '' for unthreaded receipts.
- ``presence``: the published presence of each local user, with its PRESENCE stream position and
  the position of the user's last change of last-seen privacy.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "receipts",
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("receipt_type", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "room_id", "receipt_type", "user_id", "thread_id", name="pk_receipts"
        ),
    )
    op.create_index("ix_receipts_stream_id", "receipts", ["stream_id"])
    op.create_table(
        "presence",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("state", sa.Text(), nullable=False),
        sa.Column("status_msg", sa.Text(), nullable=True),
        sa.Column("last_active_ts", sa.BigInteger(), nullable=False),
        sa.Column("currently_active", sa.Boolean(), nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("privacy_stream_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name="pk_presence"),
    )
    op.create_index("ix_presence_stream_id", "presence", ["stream_id"])


def downgrade() -> None:
    op.drop_index("ix_presence_stream_id", table_name="presence")
    op.drop_table("presence")
    op.drop_index("ix_receipts_stream_id", table_name="receipts")
    op.drop_table("receipts")
