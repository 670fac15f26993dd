"""Federation: other servers' devices and keys, and our device-list stream to them.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-06

- (filled in by the federation devices work)

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
