"""Sync filters (issue 7).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-23

- ``user_filters``: filters uploaded with ``POST /user/{userId}/filter``, numbered per user from
  0, the JSON as uploaded with sorted keys.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_filters",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("filter_id", sa.BigInteger(), nullable=False),
        sa.Column("filter_json", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name="fk_user_filters_user_id_users"
        ),
        sa.PrimaryKeyConstraint("user_id", "filter_id", name="pk_user_filters"),
    )


def downgrade() -> None:
    op.drop_table("user_filters")
