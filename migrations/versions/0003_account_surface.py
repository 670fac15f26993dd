"""Account surface: profiles, account data, device-list changes, OpenID tokens.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24

- ``profile_fields``: one row per profile field of a local user (JSON value), with the
  case-folded display name in ``search_text`` for the user directory.
- ``account_data``: global (``room_id = ''``) and per-room account data with the
  ``account_data`` stream position of each write.
- ``device_list_changes``: whose devices changed at which ``device_lists`` stream position.
- ``openid_tokens``: hashes of OpenID tokens and their expiry.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "profile_fields",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("field", sa.Text(), nullable=False),
        sa.Column("value_json", sa.Text(), nullable=False),
        sa.Column("search_text", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name="fk_profile_fields_user_id_users"
        ),
        sa.PrimaryKeyConstraint("user_id", "field", name="pk_profile_fields"),
    )
    op.create_table(
        "account_data",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("data_type", sa.Text(), nullable=False),
        sa.Column("content_json", sa.Text(), nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name="fk_account_data_user_id_users"
        ),
        sa.PrimaryKeyConstraint("user_id", "room_id", "data_type", name="pk_account_data"),
    )
    op.create_index("ix_account_data_user_id_stream_id", "account_data", ["user_id", "stream_id"])
    op.create_table(
        "device_list_changes",
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("stream_id", "user_id", "device_id", name="pk_device_list_changes"),
    )
    op.create_index(
        "ix_device_list_changes_user_id_stream_id",
        "device_list_changes",
        ["user_id", "stream_id"],
    )
    op.create_table(
        "openid_tokens",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("valid_until_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.user_id"], name="fk_openid_tokens_user_id_users"
        ),
        sa.PrimaryKeyConstraint("token_hash", name="pk_openid_tokens"),
    )
    op.create_index("ix_openid_tokens_valid_until_ms", "openid_tokens", ["valid_until_ms"])


def downgrade() -> None:
    op.drop_index("ix_openid_tokens_valid_until_ms", table_name="openid_tokens")
    op.drop_table("openid_tokens")
    op.drop_index("ix_device_list_changes_user_id_stream_id", table_name="device_list_changes")
    op.drop_table("device_list_changes")
    op.drop_index("ix_account_data_user_id_stream_id", table_name="account_data")
    op.drop_table("account_data")
    op.drop_table("profile_fields")
