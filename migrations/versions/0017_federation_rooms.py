"""Federation: inbound transactions, outliers and rejected events.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06

- ``federation_inbound_txns``: the answer to each (origin, transaction ID) received, so that a
  retransmitted transaction gets the same answer and is not processed twice;
- ``soft_failed_events``: events stored but kept out of the timeline and the forward
  extremities because they failed the auth checks against the room's current state.

Outliers and rejected events use the ``events.outlier`` and ``events.rejected_reason`` columns
of the rooms migration.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "federation_inbound_txns",
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("txn_id", sa.Text(), nullable=False),
        sa.Column("response", sa.Text(), nullable=False),
        sa.Column("received_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("origin", "txn_id", name="pk_federation_inbound_txns"),
    )
    op.create_index(
        "ix_federation_inbound_txns_received_ts", "federation_inbound_txns", ["received_ts"]
    )
    op.create_table(
        "soft_failed_events",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_soft_failed_events"),
    )


def downgrade() -> None:
    op.drop_table("soft_failed_events")
    op.drop_index("ix_federation_inbound_txns_received_ts", table_name="federation_inbound_txns")
    op.drop_table("federation_inbound_txns")
