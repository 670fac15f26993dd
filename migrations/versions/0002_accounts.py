"""Accounts: registration tokens, user-interactive auth sessions, phone verification.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

- ``registration_tokens``: the admin's tokens for ``m.login.registration_token``.
- ``uia_sessions`` / ``uia_stages``: user-interactive authentication sessions, bound to the
  request that started them, and the stages completed in each (with what each stage proved).
- ``threepid_sessions``: phone number validation (``requestToken`` → code → ``submitToken``);
  the code is stored only as a hash.
- ``ix_refresh_tokens_next_token_hash``: a refresh token's predecessor, on its first use.
- ``users.phone_added_ts``: when the account's phone number was bound (``GET /account/3pid``).

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("phone_added_ts", sa.BigInteger(), nullable=True))
    op.create_index("ix_refresh_tokens_next_token_hash", "refresh_tokens", ["next_token_hash"])
    op.create_table(
        "registration_tokens",
        sa.Column("token", sa.Text(), nullable=False),
        sa.Column("uses_allowed", sa.Integer(), nullable=True),
        sa.Column("pending", sa.Integer(), server_default="0", nullable=False),
        sa.Column("completed", sa.Integer(), server_default="0", nullable=False),
        sa.Column("expiry_time", sa.BigInteger(), nullable=True),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("token", name="pk_registration_tokens"),
    )
    op.create_table(
        "uia_sessions",
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("request_key", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), server_default="", nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("expires_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("session_id", name="pk_uia_sessions"),
    )
    op.create_index("ix_uia_sessions_expires_ts", "uia_sessions", ["expires_ts"])
    op.create_table(
        "uia_stages",
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("stage", sa.Text(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
        sa.Column("completed_ts", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["session_id"],
            ["uia_sessions.session_id"],
            name="fk_uia_stages_session_id_uia_sessions",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("session_id", "stage", name="pk_uia_stages"),
    )
    op.create_table(
        "threepid_sessions",
        sa.Column("sid", sa.Text(), nullable=False),
        sa.Column("medium", sa.Text(), nullable=False),
        sa.Column("address", sa.Text(), nullable=False),
        sa.Column("client_secret", sa.Text(), nullable=False),
        sa.Column("send_attempt", sa.Integer(), nullable=False),
        sa.Column("code_hash", sa.Text(), nullable=True),
        sa.Column("code_expires_ts", sa.BigInteger(), nullable=False),
        sa.Column("last_sent_ts", sa.BigInteger(), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("validated_ts", sa.BigInteger(), nullable=True),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("sid", name="pk_threepid_sessions"),
        sa.UniqueConstraint(
            "medium",
            "address",
            "client_secret",
            name="uq_threepid_sessions_medium_address_client_secret",
        ),
    )
    op.create_index("ix_threepid_sessions_created_ts", "threepid_sessions", ["created_ts"])


def downgrade() -> None:
    op.drop_index("ix_threepid_sessions_created_ts", table_name="threepid_sessions")
    op.drop_table("threepid_sessions")
    op.drop_table("uia_stages")
    op.drop_index("ix_uia_sessions_expires_ts", table_name="uia_sessions")
    op.drop_table("uia_sessions")
    op.drop_table("registration_tokens")
    op.drop_index("ix_refresh_tokens_next_token_hash", table_name="refresh_tokens")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("phone_added_ts")
