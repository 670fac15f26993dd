"""Sync bookkeeping (issue 7).

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-23

- a partial index on ``events (state_key, stream_ordering)`` for ``m.room.member`` rows: a user's
  membership changes since a position, for ``/sync``.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_MEMBER_ONLY = sa.text("type = 'm.room.member'")


def upgrade() -> None:
    op.create_index(
        "ix_events_member_state_key_stream_ordering",
        "events",
        ["state_key", "stream_ordering"],
        sqlite_where=_MEMBER_ONLY,
        postgresql_where=_MEMBER_ONLY,
    )


def downgrade() -> None:
    op.drop_index("ix_events_member_state_key_stream_ordering", table_name="events")
