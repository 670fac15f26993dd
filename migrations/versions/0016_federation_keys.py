"""Federation: server signing keys, ours and other servers'.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06

- ``server_keys``: other servers' signing keys as fetched (from the origin or a notary), one row
  per (server, key ID), with the signed key response they came in (to answer as a notary).

Our own old keys are not here: they live beside the signing key file (``homeserver/keys.py``).

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "server_keys",
        sa.Column("server_name", sa.Text(), nullable=False),
        sa.Column("key_id", sa.Text(), nullable=False),
        sa.Column("verify_key", sa.Text(), nullable=False),
        sa.Column("valid_until_ts", sa.BigInteger(), nullable=False),
        sa.Column("expired_ts", sa.BigInteger(), nullable=True),
        sa.Column("fetched_ts", sa.BigInteger(), nullable=False),
        sa.Column("fetched_from", sa.Text(), nullable=False),
        sa.Column("key_json", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("server_name", "key_id", name="pk_server_keys"),
    )


def downgrade() -> None:
    op.drop_table("server_keys")
