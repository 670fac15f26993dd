"""Initial schema: stream positions, users, devices, access and refresh tokens.

Revision ID: 0001
Revises:
Create Date: 2026-11-23

Spell the columns out here: a migration never imports homeserver (the schema moves on, the
migration must not).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stream_positions",
        sa.Column("stream", sa.Text(), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stream", name="pk_stream_positions"),
    )
    op.create_table(
        "users",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("password_hash", sa.Text(), nullable=True),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("is_guest", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("deactivated", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name="pk_users"),
        sa.UniqueConstraint("phone", name="uq_users_phone"),
    )
    op.create_table(
        "devices",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("last_seen_ts", sa.BigInteger(), nullable=True),
        sa.Column("last_seen_ip", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.user_id"], name="fk_devices_user_id_users"),
        sa.PrimaryKeyConstraint("user_id", "device_id", name="pk_devices"),
    )
    op.create_table(
        "refresh_tokens",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("expires_ts", sa.BigInteger(), nullable=True),
        sa.Column("next_token_hash", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id", "device_id"],
            ["devices.user_id", "devices.device_id"],
            name="fk_refresh_tokens_user_id_device_id_devices",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_refresh_tokens"),
    )
    op.create_index(
        "ix_refresh_tokens_user_id_device_id", "refresh_tokens", ["user_id", "device_id"]
    )
    op.create_table(
        "access_tokens",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("valid_until_ms", sa.BigInteger(), nullable=True),
        sa.Column("refresh_token_hash", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id", "device_id"],
            ["devices.user_id", "devices.device_id"],
            name="fk_access_tokens_user_id_device_id_devices",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["refresh_token_hash"],
            ["refresh_tokens.token_hash"],
            name="fk_access_tokens_refresh_token_hash_refresh_tokens",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_access_tokens"),
    )
    op.create_index("ix_access_tokens_user_id_device_id", "access_tokens", ["user_id", "device_id"])
    op.create_index("ix_access_tokens_refresh_token_hash", "access_tokens", ["refresh_token_hash"])


def downgrade() -> None:
    op.drop_index("ix_access_tokens_refresh_token_hash", table_name="access_tokens")
    op.drop_index("ix_access_tokens_user_id_device_id", table_name="access_tokens")
    op.drop_table("access_tokens")
    op.drop_index("ix_refresh_tokens_user_id_device_id", table_name="refresh_tokens")
    op.drop_table("refresh_tokens")
    op.drop_table("devices")
    op.drop_table("users")
    op.drop_table("stream_positions")
