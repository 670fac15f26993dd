"""Server-side full-text search of room events.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06

- ``event_search``: the searchable text of each message, name and topic event, keyed by its
  stream position (the rowid on SQLite);
- SQLite: an FTS5 index ``event_search_fts`` over ``value`` (external content: it stores only
  the index and reads text from ``event_search``), the Porter stemmer over unicode61, kept in
  step by insert and delete triggers;
- PostgreSQL: a GIN index on ``to_tsvector('english', value)``;
- the text of the events already stored is indexed here, so search finds old messages too.

Spell the columns out here: a migration never imports homeserver.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# (event type, index key, JSON path of the text)
_SOURCES = (
    ("m.room.message", "content.body", ("content", "body")),
    ("m.room.name", "content.name", ("content", "name")),
    ("m.room.topic", "content.topic", ("content", "topic")),
)


def upgrade() -> None:
    op.create_table(
        "event_search",
        sa.Column(
            "stream_ordering",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
            autoincrement=False,
        ),
        sa.Column("event_id", sa.Text(), nullable=False),
        sa.Column("room_id", sa.Text(), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("origin_server_ts", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("stream_ordering", name="pk_event_search"),
        sa.UniqueConstraint("event_id", name="uq_event_search_event_id"),
    )
    op.create_index(
        "ix_event_search_room_id_stream_ordering", "event_search", ["room_id", "stream_ordering"]
    )
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        op.execute(
            "CREATE VIRTUAL TABLE event_search_fts USING fts5("
            "value, content='event_search', content_rowid='stream_ordering', "
            "tokenize='porter unicode61')"
        )
        op.execute(
            "CREATE TRIGGER event_search_fts_insert AFTER INSERT ON event_search BEGIN "
            "INSERT INTO event_search_fts(rowid, value) VALUES (new.stream_ordering, new.value); "
            "END"
        )
        op.execute(
            "CREATE TRIGGER event_search_fts_delete AFTER DELETE ON event_search BEGIN "
            "INSERT INTO event_search_fts(event_search_fts, rowid, value) "
            "VALUES ('delete', old.stream_ordering, old.value); END"
        )
    else:
        op.execute(
            "CREATE INDEX ix_event_search_tsvector ON event_search "
            "USING gin (to_tsvector('english', value))"
        )
    for event_type, key, (outer, inner) in _SOURCES:
        if sqlite:
            text_of = f"json_extract(json, '$.{outer}.{inner}')"
            is_text = f"json_type(json, '$.{outer}.{inner}') = 'text'"
        else:
            text_of = f"(json::jsonb #>> '{{{outer},{inner}}}')"
            is_text = f"jsonb_typeof(json::jsonb #> '{{{outer},{inner}}}') = 'string'"
        op.execute(
            sa.text(
                "INSERT INTO event_search "
                "(stream_ordering, event_id, room_id, sender, key, value, origin_server_ts) "
                f"SELECT stream_ordering, event_id, room_id, sender, :key, {text_of}, "
                "origin_server_ts FROM events "
                f"WHERE type = :type AND {is_text} AND NOT outlier AND NOT redacted "
                "AND rejected_reason IS NULL"
            ).bindparams(key=key, type=event_type)
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS event_search_fts_delete")
        op.execute("DROP TRIGGER IF EXISTS event_search_fts_insert")
        op.execute("DROP TABLE IF EXISTS event_search_fts")
    else:
        op.execute("DROP INDEX IF EXISTS ix_event_search_tsvector")
    op.drop_index("ix_event_search_room_id_stream_ordering", table_name="event_search")
    op.drop_table("event_search")
