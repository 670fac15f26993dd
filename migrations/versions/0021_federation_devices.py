"""Federation: other servers' devices and keys, and our device-list stream to them.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06

- ``remote_device_lists``: the users of other servers whose device list we hold, with the
  ``stream_id`` their server gave for it (an update whose ``prev_id`` is not this one means a
  missed update: the list is fetched again) and their master and self-signing keys.
- ``remote_devices``: those users' devices: display name and device keys as their server sent.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "remote_device_lists",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("stream_id", sa.BigInteger(), nullable=False),
        sa.Column("master_key_json", sa.Text(), nullable=True),
        sa.Column("self_signing_key_json", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", name="pk_remote_device_lists"),
    )
    op.create_table(
        "remote_devices",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=False),
        sa.Column("display_name", sa.Text(), nullable=True),
        sa.Column("keys_json", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", "device_id", name="pk_remote_devices"),
    )


def downgrade() -> None:
    op.drop_table("remote_devices")
    op.drop_table("remote_device_lists")
