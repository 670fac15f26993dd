"""Federation: the outbound sender's per-destination queues and back-off.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-06

- (filled in by the federation sender work)

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
