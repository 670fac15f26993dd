"""Content reports: events, rooms and users reported to the server's operators.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

- ``content_reports``: one row per report (``POST /rooms/{roomId}/report/{eventId}``,
  ``/rooms/{roomId}/report``, ``/users/{userId}/report``).

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "content_reports",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=True,
        ),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("reporter", sa.Text(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=True),
        sa.Column("event_id", sa.Text(), nullable=True),
        sa.Column("target_user_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("received_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_content_reports"),
    )
    op.create_index("ix_content_reports_received_ts", "content_reports", ["received_ts"])


def downgrade() -> None:
    op.drop_index("ix_content_reports_received_ts", table_name="content_reports")
    op.drop_table("content_reports")
