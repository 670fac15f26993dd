"""Registration-lock PINs and spent single-use credentials (issue 5).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-23

- ``registration_locks``: a user's PIN (argon2id hash), the account's newest known activity
  and the wrong-PIN count of the current window.
- ``spent_credentials``: rotated refresh tokens (hashes) and phone verification sessions used by
  a login, so that a reuse is recognised.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registration_locks",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("pin_hash", sa.Text(), nullable=False),
        sa.Column("set_ts", sa.BigInteger(), nullable=False),
        sa.Column("last_active_ts", sa.BigInteger(), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("failed_window_start_ts", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name="fk_registration_locks_user_id_users"
        ),
        sa.PrimaryKeyConstraint("user_id", name="pk_registration_locks"),
    )
    op.create_table(
        "spent_credentials",
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("credential", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=True),
        sa.Column("spent_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("kind", "credential", name="pk_spent_credentials"),
    )
    op.create_index("ix_spent_credentials_spent_ts", "spent_credentials", ["spent_ts"])


def downgrade() -> None:
    op.drop_index("ix_spent_credentials_spent_ts", table_name="spent_credentials")
    op.drop_table("spent_credentials")
    op.drop_table("registration_locks")
