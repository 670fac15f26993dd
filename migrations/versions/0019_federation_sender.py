"""Federation: the outbound sender's per-destination queues and back-off.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

- ``federation_outbox``: local PDUs not yet accepted by a destination, one row per
  (destination, event), ordered by the event's stream position.
- ``federation_destinations``: consecutive failures, current back-off interval and the time
  before which no transaction is sent, per destination.
- ``federation_sender_position``: the stream position up to which local events have been put
  into the outbox (so a restart resumes where the sender stopped and loses no event).

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "federation_outbox",
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("stream_ordering", sa.BigInteger(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("destination", "stream_ordering", name="pk_federation_outbox"),
    )
    op.create_table(
        "federation_destinations",
        sa.Column("destination", sa.Text(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("retry_interval_ms", sa.BigInteger(), nullable=False),
        sa.Column("retry_at_ts", sa.BigInteger(), nullable=False),
        sa.Column("last_success_ts", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("destination", name="pk_federation_destinations"),
    )
    op.create_table(
        "federation_sender_position",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("stream_ordering", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_federation_sender_position"),
    )


def downgrade() -> None:
    op.drop_table("federation_sender_position")
    op.drop_table("federation_destinations")
    op.drop_table("federation_outbox")
