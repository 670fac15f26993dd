"""Stream positions: allocated inside the writer's transaction, committed in order.

Each stream (:class:`~homeserver.streams.StreamName`) has one row in ``stream_positions`` holding
its newest position. A write that clients must learn about through ``/sync`` calls
:func:`next_position` in the same transaction as the write, and stores the position with it.

The ordering guarantee
----------------------
``/sync`` hands out "everything up to position P" and later asks for "everything after P". That is
only correct if, once a reader can see position P committed, every position below P is committed
too: if N+1 could commit before N, a reader would hand out a token at N+1 and the row at N, when
it commits, would never be delivered.

We get the guarantee by **serialising allocation in the transaction**: :func:`next_position` is an
upsert that increments the stream's row and returns the new value, so it takes that row's write
lock and keeps it until the transaction ends:

- PostgreSQL: ``INSERT ... ON CONFLICT DO UPDATE ... RETURNING`` locks the row; a concurrent
  allocator blocks until the holder commits (or rolls back) and then increments the committed
  value (READ COMMITTED re-reads the row). So positions commit in order, and a rolled-back
  transaction gives its position back: no gaps either.
- SQLite: every write transaction is ``BEGIN IMMEDIATE`` on the one writer, already serial.

The price: writers of one stream are serialised from the allocation to their commit. So allocate
**last**, just before the transaction ends (build the event, check auth, then allocate and insert).
The alternative, Synapse's approach of allocating from a sequence and tracking in-flight positions
so readers only see the position below the lowest one in flight, scales to several writer
processes but needs in-memory state per process and cross-process notification; we will move to
it if one writer per stream becomes the bottleneck. :func:`current_position` reads the committed
row, which by the above is a position below which everything is committed.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, bindparam, select, text

from homeserver.storage.db import Conn, Database
from homeserver.storage.schema import stream_positions
from homeserver.streams import StreamName, StreamToken

__all__ = [
    "StreamIdGenerator",
    "current_position",
    "current_positions",
    "next_position",
    "next_positions",
]

# Same SQL for both databases (SQLite >= 3.35 has UPSERT ... RETURNING).
_ALLOCATE = text(
    "INSERT INTO stream_positions (stream, position) VALUES (:stream, :count) "
    "ON CONFLICT (stream) DO UPDATE SET position = stream_positions.position + :count "
    "RETURNING position"
).bindparams(bindparam("stream"), bindparam("count", type_=BigInteger))

_CURRENT = select(stream_positions.c.position).where(
    stream_positions.c.stream == bindparam("stream")
)
_ALL = select(stream_positions.c.stream, stream_positions.c.position)


async def next_position(conn: Conn, stream: StreamName) -> int:
    """Allocate the next position of ``stream`` in the caller's transaction.

    The stream's row stays locked until the transaction ends: call this as late as possible.
    """
    position: int = await conn.fetch_val(_ALLOCATE, {"stream": stream.value, "count": 1})
    return position


async def next_positions(conn: Conn, stream: StreamName, count: int) -> range:
    """Allocate ``count`` consecutive positions of ``stream`` in the caller's transaction."""
    if count < 1:
        raise ValueError("count must be at least 1")
    last: int = await conn.fetch_val(_ALLOCATE, {"stream": stream.value, "count": count})
    return range(last - count + 1, last + 1)


async def current_position(conn: Conn, stream: StreamName) -> int:
    """The newest committed position of ``stream`` (0 if none was ever allocated)."""
    position = await conn.fetch_val(_CURRENT, {"stream": stream.value})
    return 0 if position is None else int(position)


async def current_positions(conn: Conn) -> dict[StreamName, int]:
    """The newest committed position of every stream (0 for streams never written)."""
    known = {name.value: name for name in StreamName}
    positions = dict.fromkeys(StreamName, 0)
    for stream, position in await conn.fetch_all(_ALL):
        if stream in known:
            positions[known[stream]] = int(position)
    return positions


class StreamIdGenerator:
    """Reads stream positions in their own transactions (writers use :func:`next_position`)."""

    def __init__(self, db: Database) -> None:
        self._db = db

    async def current_token(self) -> StreamToken:
        """A token at the newest committed position of every stream."""

        async def work(conn: Conn) -> dict[StreamName, int]:
            return await current_positions(conn)

        return StreamToken(await self._db.read(work, name="current_stream_token"))

    async def current_position(self, stream: StreamName) -> int:
        """The newest committed position of ``stream``."""

        async def work(conn: Conn) -> int:
            return await current_position(conn, stream)

        return await self._db.read(work, name="current_stream_position")

    async def advance(self, stream: StreamName) -> int:
        """Allocate a position in a transaction of its own (for streams with no rows to write)."""

        async def work(conn: Conn) -> int:
            return await next_position(conn, stream)

        return await self._db.run(work, name="advance_stream")
