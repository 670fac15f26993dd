"""Pushers and the notifications they were sent.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-06

- ``pushers``: a user's HTTP pushers (``POST /pushers/set``), keyed by (user, app ID, pushkey),
  owned by the device that set them (deleting the device deletes them), with the push sender's
  per-pusher position (``last_stream_ordering``) and when its gateway started failing.
- ``push_notifications``: the events that notified each local user (``GET /notifications``,
  and what the pushers send), by stream position.
- ``push_sender_position``: the stream position up to which events have been evaluated into
  ``push_notifications`` (a restart resumes there).

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pushers",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("app_id", sa.Text(), nullable=False),
        sa.Column("pushkey", sa.Text(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=True),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("app_display_name", sa.Text(), nullable=False),
        sa.Column("device_display_name", sa.Text(), nullable=False),
        sa.Column("profile_tag", sa.Text(), nullable=True),
        sa.Column("lang", sa.Text(), nullable=False),
        sa.Column("data_json", sa.Text(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("last_stream_ordering", sa.BigInteger(), nullable=False),
        sa.Column("failing_since", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("user_id", "app_id", "pushkey", name="pk_pushers"),
        sa.ForeignKeyConstraint(
            ["user_id", "device_id"],
            ["devices.user_id", "devices.device_id"],
            name="fk_pushers_user_id_device_id_devices",
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_pushers_app_id_pushkey", "pushers", ["app_id", "pushkey"])
    op.create_table(
        "push_notifications",
        sa.Column("user_id", sa.Text(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("stream_ordering", sa.BigInteger(), nullable=False),
        sa.Column("actions_json", sa.Text(), nullable=False),
        sa.Column("highlight", sa.Boolean(), nullable=False),
        sa.Column("ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", "event_id", name="pk_push_notifications"),
    )
    op.create_index(
        "ix_push_notifications_user_id_stream_ordering",
        "push_notifications",
        ["user_id", "stream_ordering"],
    )
    op.create_index("ix_push_notifications_ts", "push_notifications", ["ts"])
    op.create_table(
        "push_sender_position",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("stream_ordering", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_push_sender_position"),
    )


def downgrade() -> None:
    op.drop_table("push_sender_position")
    op.drop_index("ix_push_notifications_ts", table_name="push_notifications")
    op.drop_index("ix_push_notifications_user_id_stream_ordering", table_name="push_notifications")
    op.drop_table("push_notifications")
    op.drop_index("ix_pushers_app_id_pushkey", table_name="pushers")
    op.drop_table("pushers")
