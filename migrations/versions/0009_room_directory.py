"""Room aliases and the room directory (issue 6).

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-23

- ``room_aliases``: local aliases, the room each points to and who created it.
- ``ix_rooms_is_public``: ``GET /publicRooms`` reads the published rooms only.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "room_aliases",
        sa.Column("alias", sa.Text(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("creator", sa.Text(), nullable=False),
        sa.Column("created_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("alias", name="pk_room_aliases"),
    )
    op.create_index("ix_room_aliases_room_id", "room_aliases", ["room_id"])
    op.create_index("ix_rooms_is_public", "rooms", ["is_public"])


def downgrade() -> None:
    op.drop_index("ix_rooms_is_public", table_name="rooms")
    op.drop_index("ix_room_aliases_room_id", table_name="room_aliases")
    op.drop_table("room_aliases")
