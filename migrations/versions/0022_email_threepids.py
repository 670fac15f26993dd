"""Email addresses as third-party identifiers: verification sessions and bound addresses.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-06

- (filled in by the email threepids work)

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
