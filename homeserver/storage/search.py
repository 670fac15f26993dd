"""Full-text search of room events: the index rows and the ranked query.

One row per searchable event in ``event_search`` (see schema.py), written in the same
transaction that persists the event (:func:`index_event_for_search`, called by the event store)
and deleted when a redaction arrives. The match itself is the one statement here that differs
between the databases, so it is a construct of its own compiled per dialect
(:class:`_MatchQuery`): SQLite asks its FTS5 index with ``bm25`` ranking, PostgreSQL its GIN
index over ``to_tsvector('english', value)`` with ``ts_rank``. The rest of the code base never
knows which database it talks to.

The search term becomes a conjunction of the words in it, each matched as a prefix (what
Synapse does): ``"martians and men"`` finds events containing all of ``martians*``, ``and*``
and ``men*``. Punctuation is dropped, so no query syntax of either engine can be injected.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import BigInteger, bindparam, delete, insert
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.expression import ClauseElement, Executable

from federation.core.events import Event
from homeserver.storage.db import Conn, Database, Row
from homeserver.storage.schema import event_search

__all__ = [
    "SEARCH_KEYS",
    "SearchHit",
    "SearchStore",
    "index_event_for_search",
    "search_words",
    "searchable_text",
]

#: The keys the spec lets a search name, by event type.
SEARCH_KEYS: Mapping[str, str] = {
    "m.room.message": "content.body",
    "m.room.name": "content.name",
    "m.room.topic": "content.topic",
}
#: Longest text indexed per event, in characters (a message is at most 64 KiB anyway).
_MAX_VALUE = 65536
_MAX_WORDS = 16
_WORD = re.compile(r"\w+", re.UNICODE)


def searchable_text(event: Event) -> tuple[str, str] | None:
    """``(key, text)`` an event is searchable by, or None (spec: Server Side Search ›
    ``room_events``: ``content.body`` of ``m.room.message``, ``content.name`` of
    ``m.room.name``, ``content.topic`` and the ``text/plain`` ``m.topic`` body of
    ``m.room.topic``)."""
    key = SEARCH_KEYS.get(event.type)
    if key is None:
        return None
    content = event.content
    if event.type == "m.room.topic":
        parts: list[str] = []
        topic = content.get("topic")
        if isinstance(topic, str) and topic:
            parts.append(topic)
        rich = content.get("m.topic")
        if isinstance(rich, Mapping):
            for block in rich.get("m.text", ()) if isinstance(rich.get("m.text"), list) else ():
                if (
                    isinstance(block, Mapping)
                    and block.get("mimetype", "text/plain") == "text/plain"
                    and isinstance(block.get("body"), str)
                    and block["body"] not in parts
                ):
                    parts.append(block["body"])
        value = "\n".join(parts)
    else:
        raw = content.get(key.split(".", 1)[1])
        value = raw if isinstance(raw, str) else ""
    if not value.strip():
        return None
    return key, value[:_MAX_VALUE]


def search_words(term: str) -> list[str]:
    """The words of a search term, lower-cased, de-duplicated, at most 16."""
    words: list[str] = []
    for match in _WORD.finditer(term.lower()):
        word = match.group(0)
        if word not in words:
            words.append(word)
        if len(words) == _MAX_WORDS:
            break
    return words


_INSERT = insert(event_search).values({c.name: bindparam(c.name) for c in event_search.columns})
_DELETE = delete(event_search).where(event_search.c.event_id == bindparam("event_id"))


async def index_event_for_search(conn: Conn, event: Event, room_id: str, stream: int) -> None:
    """Inside the unit of work that persists ``event``: index its text, or, for a redaction,
    drop the redacted event's text (a redacted event must not be found by what it said)."""
    if event.type == "m.room.redaction" and event.redacts is not None:
        await conn.execute(_DELETE, {"event_id": event.redacts})
        return
    found = searchable_text(event)
    if found is None:
        return
    key, value = found
    await conn.execute(
        _INSERT,
        {
            "stream_ordering": stream,
            "event_id": event.event_id,
            "room_id": room_id,
            "sender": event.sender,
            "key": key,
            "value": value,
            "origin_server_ts": event.origin_server_ts,
        },
    )


# --- the match, per dialect ----------------------------------------------------------------------


class _MatchQuery(Executable, ClauseElement):
    """``SELECT event_id, room_id, stream_ordering, rank FROM <matches>`` for the bind
    parameters of :meth:`SearchStore._params` (each dialect binds the ones in its own syntax:
    the query words, the room IDs and the keys), ``before`` (exclusive stream bound),
    ``offset`` and ``limit``; ordered
    by rank (``order="rank"``) or newest first (``order="recent"``). With ``count=True``, one
    row: the number of matches (``before``/``offset``/``limit`` unused)."""

    inherit_cache = False

    def __init__(self, order: str, *, count: bool = False) -> None:
        self.order = order
        self.count = count


def _render(
    element: _MatchQuery,
    compiler: SQLCompiler,
    kw: dict[str, Any],
    *,
    source: str,
    where: str,
    rank: str,
) -> str:
    """The statement around one dialect's ``FROM``, match condition and rank expression."""
    if element.count:
        return f"SELECT count(*) FROM {source} WHERE {where}"
    before, offset, limit = (
        compiler.process(bindparam(name, type_=BigInteger), **kw)
        for name in ("before", "offset", "limit")
    )
    order = "rank DESC, s.stream_ordering DESC" if element.order == "rank" else ""
    return (
        f"SELECT s.event_id, s.room_id, s.stream_ordering, {rank} AS rank "
        f"FROM {source} WHERE {where} AND s.stream_ordering < {before} "
        f"ORDER BY {order or 's.stream_ordering DESC'} LIMIT {limit} OFFSET {offset}"
    )


@compiles(_MatchQuery, "sqlite")
def _match_sqlite(element: _MatchQuery, compiler: SQLCompiler, **kw: Any) -> str:
    q, rooms, keys = (
        compiler.process(bindparam(name), **kw)
        for name in ("fts_query", "room_ids_json", "keys_json")
    )
    return _render(
        element,
        compiler,
        kw,
        source="event_search_fts JOIN event_search AS s "
        "ON s.stream_ordering = event_search_fts.rowid",
        where=f"event_search_fts MATCH {q} "
        f"AND s.room_id IN (SELECT value FROM json_each({rooms})) "
        f"AND s.key IN (SELECT value FROM json_each({keys}))",
        # bm25() is smaller for better matches (negative): negated, higher is closer.
        rank="-bm25(event_search_fts)",
    )


@compiles(_MatchQuery, "postgresql")
def _match_postgresql(element: _MatchQuery, compiler: SQLCompiler, **kw: Any) -> str:
    q, rooms, keys = (
        compiler.process(bindparam(name), **kw) for name in ("ts_query", "room_ids", "keys")
    )
    return _render(
        element,
        compiler,
        kw,
        source="event_search AS s",
        where=f"to_tsvector('english', s.value) @@ to_tsquery('english', {q}) "
        f"AND s.room_id = ANY({rooms}::text[]) AND s.key = ANY({keys}::text[])",
        rank=f"ts_rank(to_tsvector('english', s.value), to_tsquery('english', {q}))",
    )


_MATCH = {"rank": _MatchQuery("rank"), "recent": _MatchQuery("recent")}
_COUNT = _MatchQuery("rank", count=True)
_MAX_STREAM = 2**62


@dataclass(frozen=True, slots=True)
class SearchHit:
    """One matching event: where it is and how well it matches (higher is better)."""

    event_id: str
    room_id: str
    stream_ordering: int
    rank: float


class SearchStore:
    """Reads the search index (writes happen with the event, in :func:`index_event_for_search`).

    Args:
        db: the database.
    """

    def __init__(self, db: Database) -> None:
        self._db = db

    @staticmethod
    def _params(
        words: Sequence[str], room_ids: Collection[str], keys: Collection[str]
    ) -> dict[str, Any]:
        """Every dialect's form of the same criteria: a compiled statement binds only the
        parameters it names, so each database picks its own and none is told apart here."""
        rooms, key_list = sorted(room_ids), sorted(keys)
        return {
            "fts_query": " AND ".join('"' + w.replace('"', "") + '"*' for w in words),
            "ts_query": " & ".join(w.replace("'", "").replace("\\", "") + ":*" for w in words),
            "room_ids_json": orjson.dumps(rooms).decode(),
            "keys_json": orjson.dumps(key_list).decode(),
            "room_ids": rooms,
            "keys": key_list,
        }

    async def search(
        self,
        words: Sequence[str],
        room_ids: Collection[str],
        keys: Collection[str],
        *,
        order: str,
        limit: int,
        before_stream: int | None = None,
        offset: int = 0,
    ) -> list[SearchHit]:
        """Matches of all ``words`` in ``room_ids``, best first (``order="rank"``) or newest
        first (``"recent"``), from ``offset`` and below ``before_stream``."""
        if not words or not room_ids or not keys:
            return []
        params = {
            **self._params(words, room_ids, keys),
            "before": before_stream if before_stream is not None else _MAX_STREAM,
            "offset": offset,
            "limit": limit,
        }
        stmt = _MATCH[order]

        async def work(conn: Conn) -> list[Row]:
            return await conn.fetch_all(stmt, params)

        rows = await self._db.read(work, name="search_events", slow=True)
        return [SearchHit(str(r[0]), str(r[1]), int(r[2]), float(r[3] or 0.0)) for r in rows]

    async def count(
        self, words: Sequence[str], room_ids: Collection[str], keys: Collection[str]
    ) -> int:
        """How many events match (before history-visibility filtering: an estimate)."""
        if not words or not room_ids or not keys:
            return 0
        params = self._params(words, room_ids, keys)

        async def work(conn: Conn) -> Any:
            return await conn.fetch_val(_COUNT, params)

        return int(await self._db.read(work, name="search_count", slow=True) or 0)
