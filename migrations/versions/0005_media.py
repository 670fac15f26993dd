"""Media repository (issue 9).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23

- ``media``: local and cached remote media items (metadata; the bytes are files named by their
  sha256 under ``media.store_path``), pending asynchronous uploads included.
- ``media_thumbnails``: thumbnails keyed by the source's sha256, box and method.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "media",
        sa.Column("origin", sa.Text(), nullable=False),
        sa.Column("media_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("content_type", sa.Text(), nullable=True),
        sa.Column("upload_name", sa.Text(), nullable=True),
        sa.Column("size", sa.BigInteger(), nullable=True),
        sa.Column("sha256", sa.Text(), nullable=True),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.Column("uploaded_ts", sa.BigInteger(), nullable=True),
        sa.Column("unused_expires_ts", sa.BigInteger(), nullable=True),
        sa.Column("last_access_ts", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("origin", "media_id", name="pk_media"),
    )
    op.create_index("ix_media_user_id_created_ts", "media", ["user_id", "created_ts"])
    op.create_index("ix_media_sha256", "media", ["sha256"])
    op.create_index("ix_media_last_access_ts", "media", ["last_access_ts"])
    op.create_index("ix_media_unused_expires_ts", "media", ["unused_expires_ts"])
    op.create_table(
        "media_thumbnails",
        sa.Column("source_sha256", sa.Text(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("animated", sa.Boolean(), nullable=False),
        sa.Column("content_type", sa.Text(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.Text(), nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "source_sha256", "width", "height", "method", "animated", name="pk_media_thumbnails"
        ),
    )
    op.create_index("ix_media_thumbnails_sha256", "media_thumbnails", ["sha256"])


def downgrade() -> None:
    op.drop_index("ix_media_thumbnails_sha256", table_name="media_thumbnails")
    op.drop_table("media_thumbnails")
    op.drop_index("ix_media_unused_expires_ts", table_name="media")
    op.drop_index("ix_media_last_access_ts", table_name="media")
    op.drop_index("ix_media_sha256", table_name="media")
    op.drop_index("ix_media_user_id_created_ts", table_name="media")
    op.drop_table("media")
