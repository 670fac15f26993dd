"""The relations migration (0013) indexes the events stored before it, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

import trio
from alembic import command
from sqlalchemy import BigInteger, Boolean, Text, bindparam, text

from homeserver.storage import Database, migrate
from homeserver.storage.db import Conn
from homeserver.storage.migrate import alembic_config

_INSERT_ROOM = text(
    "INSERT INTO rooms (room_id, room_version, creator, is_public, created_ts)"
    " VALUES ('!r:test', '10', '@a:test', :f, 0)"
).bindparams(bindparam("f", type_=Boolean))
_INSERT_EVENT = text(
    "INSERT INTO events (event_id, room_id, type, state_key, sender, json, depth,"
    " origin_server_ts, stream_ordering, outlier, rejected_reason, redacted, state_group)"
    " VALUES (:event_id, '!r:test', :type, NULL, :sender, :json, :depth, 0, :depth, :f,"
    " NULL, :redacted, NULL)"
).bindparams(
    bindparam("event_id", type_=Text),
    bindparam("type", type_=Text),
    bindparam("sender", type_=Text),
    bindparam("json", type_=Text),
    bindparam("depth", type_=BigInteger),
    bindparam("f", type_=Boolean),
    bindparam("redacted", type_=Boolean),
)
_RELATIONS = text(
    "SELECT event_id, relates_to_id, rel_type, aggregation_key, type, sender, depth"
    " FROM event_relations ORDER BY event_id"
)
_REDACTIONS = text("SELECT event_id, redacts, room_id FROM event_redactions ORDER BY event_id")


def _event(
    event_id: str, typ: str, content: dict[str, Any], depth: int, **extra: Any
) -> dict[str, Any]:
    pdu = {"type": typ, "room_id": "!r:test", "sender": "@a:test", "content": content, **extra}
    return {
        "event_id": event_id,
        "type": typ,
        "sender": "@a:test",
        "json": json.dumps(pdu),
        "depth": depth,
        "f": False,
        "redacted": False,
    }


def _rel(rel_type: str, parent: str, **extra: Any) -> dict[str, Any]:
    return {"m.relates_to": {"rel_type": rel_type, "event_id": parent, **extra}}


async def test_existing_events_are_indexed(empty_database_url: str) -> None:
    cfg = alembic_config(empty_database_url)
    await trio.to_thread.run_sync(lambda: command.upgrade(cfg, "0012"))
    rows = [
        _event("$a_root", "m.room.message", {"body": "root"}, 1),
        _event("$b_edit", "m.room.message", {"body": "*", **_rel("m.replace", "$a_root")}, 2),
        _event("$c_react", "m.reaction", _rel("m.annotation", "$a_root", key="👍"), 3),
        _event("$d_thread", "m.room.message", {"body": "t", **_rel("m.thread", "$a_root")}, 4),
        # a redacted child: its relation is gone (and the redaction is indexed)
        {
            **_event("$e_gone", "m.room.message", {"body": "x", **_rel("m.thread", "$a_root")}, 5),
            "redacted": True,
        },
        _event("$f_redaction", "m.room.redaction", {}, 6, redacts="$e_gone"),
        # v11: the redacted event ID is in the content
        _event("$g_redaction", "m.room.redaction", {"redacts": "$j_text"}, 7),
        # not relations
        _event("$h_bad", "m.room.message", {"m.relates_to": {"rel_type": 5, "event_id": "$a"}}, 8),
        _event("$i_reply", "m.room.message", {"m.relates_to": {"m.in_reply_to": {}}}, 9),
        _event("$j_text", "m.room.message", {"body": "m.relates_to"}, 10),
    ]

    async with Database.open(empty_database_url) as db:

        async def insert(conn: Conn) -> None:
            await conn.execute(_INSERT_ROOM, {"f": False})
            for row in rows:
                await conn.execute(_INSERT_EVENT, row)

        await db.run(insert, name="insert")
    await migrate(empty_database_url)
    async with Database.open(empty_database_url) as db:

        async def read(conn: Conn) -> tuple[list[Any], list[Any]]:
            return await conn.fetch_all(_RELATIONS), await conn.fetch_all(_REDACTIONS)

        relations, redactions = await db.read(read, name="read")
    assert [tuple(r) for r in relations] == [
        ("$b_edit", "$a_root", "m.replace", None, "m.room.message", "@a:test", 2),
        ("$c_react", "$a_root", "m.annotation", "👍", "m.reaction", "@a:test", 3),
        ("$d_thread", "$a_root", "m.thread", None, "m.room.message", "@a:test", 4),
    ]
    assert [tuple(r) for r in redactions] == [
        ("$f_redaction", "$e_gone", "!r:test"),
        ("$g_redaction", "$j_text", "!r:test"),
    ]
