"""End-to-end encryption keys, backups, to-device (issue 8).

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23

- ``e2e_device_keys``: each device's identity keys, exactly as uploaded.
- ``e2e_one_time_keys`` / ``e2e_fallback_keys``: unclaimed one-time keys, and the fallback key
  of each device and algorithm with its ``used`` flag.
- ``e2e_cross_signing_keys`` / ``e2e_cross_signing_signatures``: current cross-signing keys
  and the signatures uploaded for devices and master keys.
- ``e2e_room_keys_versions`` / ``e2e_room_keys``: server-side key backup.
- ``to_device_messages`` / ``to_device_txns``: pending to-device messages per device, and the
  transaction IDs of ``/sendToDevice`` for idempotency.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "e2e_device_keys",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("key_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "device_id", name="pk_e2e_device_keys"),
    )
    op.create_table(
        "e2e_one_time_keys",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("key_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "user_id", "device_id", "algorithm", "key_id", name="pk_e2e_one_time_keys"
        ),
    )
    op.create_table(
        "e2e_fallback_keys",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("algorithm", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("key_json", sa.Text(), nullable=False),
        sa.Column("used", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("user_id", "device_id", "algorithm", name="pk_e2e_fallback_keys"),
    )
    op.create_table(
        "e2e_cross_signing_keys",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("usage", sa.Text(), nullable=False),
        sa.Column("public_key", sa.Text(), nullable=False),
        sa.Column("key_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "usage", name="pk_e2e_cross_signing_keys"),
    )
    op.create_table(
        "e2e_cross_signing_signatures",
        sa.Column("target_user_id", sa.Text(), nullable=False),
        sa.Column("target_key_id", sa.Text(), nullable=False),
        sa.Column("signer_user_id", sa.Text(), nullable=False),
        sa.Column("signer_key_id", sa.Text(), nullable=False),
        sa.Column("signature", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "target_user_id",
            "target_key_id",
            "signer_user_id",
            "signer_key_id",
            name="pk_e2e_cross_signing_signatures",
        ),
    )
    op.create_index(
        "ix_e2e_cross_signing_signatures_signer_user_id_signer_key_id",
        "e2e_cross_signing_signatures",
        ["signer_user_id", "signer_key_id"],
    )
    op.create_table(
        "e2e_room_keys_versions",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("algorithm", sa.Text(), nullable=False),
        sa.Column("auth_data_json", sa.Text(), nullable=False),
        sa.Column("etag", sa.BigInteger(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.PrimaryKeyConstraint("user_id", "version", name="pk_e2e_room_keys_versions"),
    )
    op.create_table(
        "e2e_room_keys",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("first_message_index", sa.BigInteger(), nullable=False),
        sa.Column("forwarded_count", sa.BigInteger(), nullable=False),
        sa.Column("is_verified", sa.Boolean(), nullable=False),
        sa.Column("session_data_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint(
            "user_id", "version", "room_id", "session_id", name="pk_e2e_room_keys"
        ),
    )
    op.create_table(
        "to_device_messages",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("message_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "device_id", "stream_id", name="pk_to_device_messages"),
    )
    op.create_table(
        "to_device_txns",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("txn_id", sa.Text(), nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "device_id", "txn_id", name="pk_to_device_txns"),
    )


def downgrade() -> None:
    op.drop_table("to_device_txns")
    op.drop_table("to_device_messages")
    op.drop_table("e2e_room_keys")
    op.drop_table("e2e_room_keys_versions")
    op.drop_index(
        "ix_e2e_cross_signing_signatures_signer_user_id_signer_key_id",
        table_name="e2e_cross_signing_signatures",
    )
    op.drop_table("e2e_cross_signing_signatures")
    op.drop_table("e2e_cross_signing_keys")
    op.drop_table("e2e_fallback_keys")
    op.drop_table("e2e_one_time_keys")
    op.drop_table("e2e_device_keys")
