"""Relations, threads and redactions' back-references.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-06

- ``event_relations``: each event's ``m.relates_to`` (with a ``rel_type``): parent, relation
  type, annotation key, and the child's room, type, sender and positions; indexed by parent
  (``/relations``, bundled aggregations) and by room (``/threads``).
- ``event_redactions``: which redaction redacts which event (``unsigned.redacted_because``).
- Both are filled from the events already stored (their JSON is read here, in Python, so the
  same code runs on SQLite and PostgreSQL).

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 500


def upgrade() -> None:
    op.create_table(
        "event_relations",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("relates_to_id", sa.Text(), nullable=False),
        sa.Column("rel_type", sa.Text(), nullable=False),
        sa.Column("aggregation_key", sa.Text(), nullable=True),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("depth", sa.BigInteger(), nullable=False),
        sa.Column("stream_ordering", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_event_relations"),
    )
    op.create_index(
        "ix_event_relations_relates_to_id_rel_type_depth_stream_ordering",
        "event_relations",
        ["relates_to_id", "rel_type", "depth", "stream_ordering"],
    )
    op.create_index(
        "ix_event_relations_room_id_rel_type_stream_ordering",
        "event_relations",
        ["room_id", "rel_type", "stream_ordering"],
    )
    op.create_table(
        "event_redactions",
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("redacts", sa.Text(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name="pk_event_redactions"),
    )
    op.create_index("ix_event_redactions_redacts", "event_redactions", ["redacts"])
    _backfill()


def _backfill() -> None:
    """Index the relations and redactions of the events stored before this revision."""
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT event_id, room_id, type, sender, depth, stream_ordering, redacted, json"
            " FROM events WHERE outlier = :f AND (type = 'm.room.redaction'"
            " OR json LIKE '%m.relates_to%')"
        ),
        {"f": False},
    ).fetchall()
    relations: list[dict[str, Any]] = []
    redactions: list[dict[str, Any]] = []
    for event_id, room_id, typ, sender, depth, stream, redacted, raw in rows:
        try:
            pdu = json.loads(raw)
        except ValueError:
            continue
        content = pdu.get("content")
        if not isinstance(content, dict):
            continue
        if typ == "m.room.redaction":
            target = content.get("redacts", pdu.get("redacts"))
            if isinstance(target, str):
                redactions.append({"event_id": event_id, "redacts": target, "room_id": room_id})
        relates = content.get("m.relates_to")
        if redacted or not isinstance(relates, dict):
            continue
        parent, rel_type = relates.get("event_id"), relates.get("rel_type")
        if not isinstance(parent, str) or not isinstance(rel_type, str):
            continue
        key = relates.get("key") if rel_type == "m.annotation" else None
        relations.append(
            {
                "event_id": event_id,
                "relates_to_id": parent,
                "rel_type": rel_type,
                "aggregation_key": key if isinstance(key, str) else None,
                "room_id": room_id,
                "type": typ,
                "sender": sender,
                "depth": depth,
                "stream_ordering": stream,
            }
        )
    redacted_ids = {r["redacts"] for r in redactions}
    relations = [r for r in relations if r["event_id"] not in redacted_ids]
    for table, batch in (("event_relations", relations), ("event_redactions", redactions)):
        if not batch:
            continue
        columns = list(batch[0])
        stmt = sa.text(
            f"INSERT INTO {table} ({', '.join(columns)})"
            f" VALUES ({', '.join(':' + c for c in columns)})"
        )
        for i in range(0, len(batch), _BATCH):
            bind.execute(stmt, batch[i : i + _BATCH])


def downgrade() -> None:
    op.drop_index("ix_event_redactions_redacts", table_name="event_redactions")
    op.drop_table("event_redactions")
    op.drop_index(
        "ix_event_relations_room_id_rel_type_stream_ordering", table_name="event_relations"
    )
    op.drop_index(
        "ix_event_relations_relates_to_id_rel_type_depth_stream_ordering",
        table_name="event_relations",
    )
    op.drop_table("event_relations")
