"""Event, room and user reports; other client-API additions.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06

- (filled in by the reporting work)

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
