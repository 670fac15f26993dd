"""Email addresses as third-party identifiers: verification sessions and bound addresses.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06

- ``user_threepids``: email addresses bound to accounts (case-folded), one account per
  (medium, address), with when they were validated and added. Validation sessions of email
  addresses live in ``threepid_sessions`` (medium ``email``) beside the phone ones.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_threepids",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("medium", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("validated_ts", sa.BigInteger(), nullable=False),
        sa.Column("added_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("medium", "address", name="pk_user_threepids"),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name="fk_user_threepids_user_id_users"
        ),
    )
    op.create_index("ix_user_threepids_user_id", "user_threepids", ["user_id"])


def downgrade() -> None:
    op.drop_index("ix_user_threepids_user_id", table_name="user_threepids")
    op.drop_table("user_threepids")
