"""User-interactive authentication sessions: the ``uia_sessions`` and ``uia_stages`` tables.

A session is bound to the request that started it (``request_key``) and to the user who
started it; each completed stage is a row with a small JSON result (what the stage proved,
e.g. the user ID a password authenticated or the phone number an SMS code validated).

Besides its stages, a session keeps one JSON object of data (what the operation's first requests
said, what the operation produced): it is the ``uia_stages`` row of the reserved stage name
:data:`DATA_STAGE`, which is not a stage type (those are namespaced, ``m.login.*``), so it never
shows among the completed stages.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import bindparam, delete, insert, select

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import uia_sessions, uia_stages

__all__ = ["DATA_STAGE", "UiaSessionRow", "UiaStore"]

#: The ``uia_stages.stage`` of the row that holds the session's data.
DATA_STAGE = "_data"


@dataclass(frozen=True, slots=True)
class UiaSessionRow:
    session_id: str
    request_key: str
    user_id: str | None
    description: str
    created_ts: int
    expires_ts: int
    #: stage name → its JSON result, in completion order
    stages: tuple[tuple[str, str], ...]
    #: the session's data (a JSON object), if any was stored
    data: str | None = None


_INSERT = insert(uia_sessions).values(
    session_id=bindparam("session_id"),
    request_key=bindparam("request_key"),
    user_id=bindparam("user_id"),
    description=bindparam("description"),
    created_ts=bindparam("created_ts"),
    expires_ts=bindparam("expires_ts"),
)
_GET = select(
    uia_sessions.c.session_id,
    uia_sessions.c.request_key,
    uia_sessions.c.user_id,
    uia_sessions.c.description,
    uia_sessions.c.created_ts,
    uia_sessions.c.expires_ts,
).where(uia_sessions.c.session_id == bindparam("session_id"))
_GET_STAGES = (
    select(uia_stages.c.stage, uia_stages.c.result)
    .where(uia_stages.c.session_id == bindparam("session_id"))
    .order_by(uia_stages.c.completed_ts, uia_stages.c.stage)
)
_HAS_STAGE = select(uia_stages.c.stage).where(
    uia_stages.c.session_id == bindparam("session_id"), uia_stages.c.stage == bindparam("stage")
)
_INSERT_STAGE = insert(uia_stages).values(
    session_id=bindparam("session_id"),
    stage=bindparam("stage"),
    result=bindparam("result"),
    completed_ts=bindparam("completed_ts"),
)
_STAGE_OF_EXPIRED = select(uia_stages.c.result).where(
    uia_stages.c.stage == bindparam("stage"),
    uia_stages.c.session_id.in_(
        select(uia_sessions.c.session_id).where(uia_sessions.c.expires_ts <= bindparam("now"))
    ),
)
_DELETE_STAGES_OF_EXPIRED = delete(uia_stages).where(
    uia_stages.c.session_id.in_(
        select(uia_sessions.c.session_id).where(uia_sessions.c.expires_ts <= bindparam("now"))
    )
)
_DELETE_EXPIRED = delete(uia_sessions).where(uia_sessions.c.expires_ts <= bindparam("now"))
_DELETE_STAGES = delete(uia_stages).where(uia_stages.c.session_id == bindparam("session_id"))
_DELETE_ONE_STAGE = delete(uia_stages).where(
    uia_stages.c.session_id == bindparam("session_id"), uia_stages.c.stage == bindparam("stage")
)
_DELETE = delete(uia_sessions).where(uia_sessions.c.session_id == bindparam("session_id"))


class UiaStore:
    """Create, read, complete and expire UIA sessions."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def create_session(
        self,
        session_id: str,
        *,
        request_key: str,
        user_id: str | None,
        description: str,
        created_ts: int,
        expires_ts: int,
    ) -> None:
        """Create a session with no completed stage."""

        async def work(conn: Conn) -> None:
            await conn.execute(
                _INSERT,
                {
                    "session_id": session_id,
                    "request_key": request_key,
                    "user_id": user_id,
                    "description": description,
                    "created_ts": created_ts,
                    "expires_ts": expires_ts,
                },
            )

        await self._db.run(work, name="uia_create_session")

    async def get_session(self, session_id: str) -> UiaSessionRow | None:
        """The session and its completed stages, or ``None``."""

        async def work(conn: Conn) -> UiaSessionRow | None:
            row = await conn.fetch_one(_GET, {"session_id": session_id})
            if row is None:
                return None
            stages = await conn.fetch_all(_GET_STAGES, {"session_id": session_id})
            sid, key, user_id, description, created_ts, expires_ts = row
            data = next((str(r) for s, r in stages if s == DATA_STAGE), None)
            return UiaSessionRow(
                sid,
                key,
                user_id,
                description,
                created_ts,
                expires_ts,
                tuple((str(s), str(r)) for s, r in stages if s != DATA_STAGE),
                data,
            )

        return await self._db.read(work, name="uia_get_session")

    async def complete_stage(self, session_id: str, stage: str, result: str, *, now: int) -> None:
        """Record ``stage`` as completed (a stage completed before keeps its first result)."""

        async def work(conn: Conn) -> None:
            params = {"session_id": session_id, "stage": stage}
            if await conn.fetch_one(_HAS_STAGE, params) is None:
                await conn.execute(_INSERT_STAGE, {**params, "result": result, "completed_ts": now})

        await self._db.run(work, name="uia_complete_stage")

    async def set_data(self, session_id: str, data: str, *, now: int) -> None:
        """Replace the session's data (a JSON object)."""

        async def work(conn: Conn) -> None:
            params = {"session_id": session_id, "stage": DATA_STAGE}
            await conn.execute(_DELETE_ONE_STAGE, params)
            await conn.execute(_INSERT_STAGE, {**params, "result": data, "completed_ts": now})

        await self._db.run(work, name="uia_set_data")

    async def settle(self, session_id: str, data: str, *, now: int) -> None:
        """Replace the completed stages by ``data``: the operation was carried out and what
        the stages reserved was used up (an expiry gives nothing back), and a replay of the
        session finds the outcome in ``data``."""

        async def work(conn: Conn) -> None:
            await conn.execute(_DELETE_STAGES, {"session_id": session_id})
            await conn.execute(
                _INSERT_STAGE,
                {
                    "session_id": session_id,
                    "stage": DATA_STAGE,
                    "result": data,
                    "completed_ts": now,
                },
            )

        await self._db.run(work, name="uia_settle")

    async def delete_session(self, session_id: str) -> None:
        async def work(conn: Conn) -> None:
            await conn.execute(_DELETE_STAGES, {"session_id": session_id})
            await conn.execute(_DELETE, {"session_id": session_id})

        await self._db.run(work, name="uia_delete_session")

    async def delete_expired(self, now: int, *, collect_stage: str) -> list[str]:
        """Delete sessions that expired at or before ``now``.

        Returns:
            the results of ``collect_stage`` in the deleted sessions (so the caller can undo
            what that stage reserved).
        """

        async def work(conn: Conn) -> list[str]:
            rows = await conn.fetch_all(_STAGE_OF_EXPIRED, {"now": now, "stage": collect_stage})
            await conn.execute(_DELETE_STAGES_OF_EXPIRED, {"now": now})
            await conn.execute(_DELETE_EXPIRED, {"now": now})
            return [str(r[0]) for r in rows]

        return await self._db.run(work, name="uia_delete_expired")
