"""The database: one async transaction API over SQLite and PostgreSQL.

This is the only module that runs SQL or knows which database it talks to. Everything else hands
it a *unit of work*, an ``async def work(conn: Conn) -> T`` that calls only the five ``Conn``
methods, and gets back ``T`` or an error from the tree below::

    async def work(conn: Conn) -> UserRow | None:
        row = await conn.fetch_one(_GET_USER, {"user_id": user_id})
        ...
    user = await db.read(work, name="get_user")     # a read-only snapshot
    await db.run(work, name="create_user")          # a read-write transaction, retried on conflicts

The unit crosses to the database once, whole (measured in docs/discussion/storage.md):

- **SQLite** runs it *inline on the Trio thread*: a thread hop costs more than a short SQLite
  statement. One connection in WAL mode (``synchronous=NORMAL``); writes take ``BEGIN IMMEDIATE``
  under a ``trio.Lock``. The coroutine is driven synchronously (``coro.send(None)``), so it cannot
  interleave with other tasks; if it awaits anything but its ``Conn`` it is stopped with
  :class:`UnitOfWorkError`. ``busy_timeout`` is 0 on this connection: when another *process*
  holds the write lock we get ``SQLITE_BUSY`` at once and retry after a ``trio.sleep`` instead of
  blocking the event loop inside SQLite. WAL checkpoints run in a background task on a second
  connection via ``trio.to_thread`` (``wal_autocheckpoint=0``), which keeps the p99 low.
  ``db.read(..., slow=True)`` runs a long read on a reader connection in a worker thread.
- **PostgreSQL** runs it on an asyncio event loop living in one side thread, with an asyncpg
  pool. The whole unit (acquire, ``BEGIN``, statements, ``COMMIT``, retries) is one coroutine
  handed over with ``asyncio.run_coroutine_threadsafe``; Trio waits on a ``trio.Event`` set from
  the future's done-callback through the Trio token, so no Trio worker thread is tied up.

Statements are SQLAlchemy Core constructs, compiled once per dialect and cached by identity (build
them at module level), then executed through the raw drivers with positional parameters
(``?`` for sqlite3, ``$n`` for asyncpg). Column types are kept simple so no SQLAlchemy result
processing is needed; the one exception, SQLite's 0/1 booleans, is converted here.

Errors (callers never see a driver exception)::

    StorageError
    ├── IntegrityError               a constraint failed (.constraint names it where known)
    │   ├── UniqueViolation
    │   └── ForeignKeyViolation
    ├── TransactionConflict          serialization failure, deadlock, SQLITE_BUSY: retries ran out
    ├── DatabaseUnavailable          cannot connect, connection lost, pool exhausted, disk full
    └── UnitOfWorkError              a unit of work broke the contract (programming error)

Cancellation: on SQLite a unit never yields, so it cannot be cancelled half-way. On PostgreSQL a
cancelled Trio caller cancels the asyncio task (the transaction rolls back unless COMMIT already
went out) and waits, shielded and bounded, for it to finish before raising ``Cancelled``; a unit
whose caller was cancelled may therefore have committed. Units are retried on conflicts, so their
Python side effects must be repeatable.
"""

from __future__ import annotations

import abc
import asyncio
import logging
import random
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar, cast

import asyncpg
import outcome
import trio
from sqlalchemy import Boolean, text
from sqlalchemy.dialects.postgresql.asyncpg import dialect as _PgDialect
from sqlalchemy.dialects.sqlite.pysqlite import dialect as _SqliteDialect
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

from homeserver.storage.schema import constraint_name

__all__ = [
    "Conn",
    "Database",
    "DatabaseUnavailable",
    "ForeignKeyViolation",
    "IntegrityError",
    "Params",
    "PoolStats",
    "Row",
    "Statement",
    "StorageError",
    "TransactionConflict",
    "UniqueViolation",
    "UnitOfWorkError",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: A result row: plain Python values in the order the statement selects them.
Row = tuple[Any, ...]
#: Named parameters of a statement (``bindparam`` names).
Params = Mapping[str, Any]
#: A SQLAlchemy Core construct: ``select``/``insert``/``update``/``delete``/``text``.
Statement = ClauseElement

# How many times a unit of work is re-run after a conflict.
_PG_CONFLICT_RETRIES = 8
_SQLITE_BUSY_RETRIES = 60  # with the backoff below: about 5 s before TransactionConflict
_SQLITE_BACKOFF_MAX = 0.1
# A unit that holds the Trio thread longer than this is logged: it delays every request.
_SLOW_INLINE_SECONDS = 0.05
_CHECKPOINT_INTERVAL = 1.0
_SLOW_READERS = 4
_PG_ACQUIRE_TIMEOUT = 30.0
_PG_CANCEL_GRACE = 5.0
_COMPILE_CACHE_MAX = 5000


# --- errors -------------------------------------------------------------------------------------


class StorageError(Exception):
    """A database operation failed. The base of every error this package raises."""


class IntegrityError(StorageError):
    """A statement violated a constraint.

    Attributes:
        constraint: the constraint's name (from the schema's naming convention) where the
            database says which, else ``None``.
    """

    def __init__(self, message: str, *, constraint: str | None = None) -> None:
        super().__init__(message)
        self.constraint = constraint


class UniqueViolation(IntegrityError):
    """A row with the same primary key or unique value exists."""


class ForeignKeyViolation(IntegrityError):
    """A row refers to a row that does not exist (or is still referred to)."""


class TransactionConflict(StorageError):
    """The unit of work kept conflicting with others and its retries ran out."""


class _Retry(TransactionConflict):
    """Internal: this attempt conflicted; roll back and run the unit again."""


class DatabaseUnavailable(StorageError):
    """The database cannot be reached or used: connect failed, connection lost, disk full."""


class UnitOfWorkError(StorageError):
    """A unit of work broke the contract: it awaited something other than its ``Conn``, or it
    swallowed a failed statement's error and returned normally (the transaction is rolled back)."""


# --- the unit-of-work API -----------------------------------------------------------------------


class Conn(Protocol):
    """What a unit of work may call. Nothing else in a unit may be awaited."""

    async def execute(self, stmt: Statement, params: Params | None = None) -> int:
        """Run a statement; return the number of rows it changed."""
        ...

    async def execute_many(self, stmt: Statement, params: Sequence[Params]) -> None:
        """Run a statement once per parameter set."""
        ...

    async def fetch_all(self, stmt: Statement, params: Params | None = None) -> list[Row]:
        """Run a statement; return all its rows."""
        ...

    async def fetch_one(self, stmt: Statement, params: Params | None = None) -> Row | None:
        """Run a statement; return its first row or ``None``."""
        ...

    async def fetch_val(self, stmt: Statement, params: Params | None = None) -> Any:
        """Run a statement; return the first column of its first row, or ``None``."""
        ...


Work = Callable[[Conn], Coroutine[Any, Any, T]]


@dataclass(frozen=True, slots=True)
class PoolStats:
    """Connection usage, for metrics."""

    in_use: int
    size: int
    max_size: int


# --- compiled statements ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Compiled:
    stmt: object  # keeps the statement alive, so its id() stays unique while cached
    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    bool_columns: tuple[int, ...]

    def bind(self, params: Params | None) -> tuple[Any, ...]:
        p: Params = params if params is not None else {}
        try:
            if not self.defaults:
                return tuple([p[n] for n in self.names])
            return tuple([p[n] if n in p else self.defaults[n] for n in self.names])
        except KeyError as e:
            raise UnitOfWorkError(f"missing parameter {e} for {self.sql!r}") from None

    def convert(self, row: Row) -> Row:
        if not self.bool_columns:
            return row
        values = list(row)
        for i in self.bool_columns:
            if values[i] is not None:
                values[i] = bool(values[i])
        return tuple(values)


class _StatementCache:
    """Compiled forms of statements for one dialect, keyed by the statement's identity."""

    def __init__(self, dialect: Dialect, *, convert_bools: bool) -> None:
        self._dialect = dialect
        self._convert_bools = convert_bools
        self._cache: dict[int, _Compiled] = {}

    def get(self, stmt: Statement) -> _Compiled:
        compiled = self._cache.get(id(stmt))
        if compiled is not None and compiled.stmt is stmt:
            return compiled
        compiled = self._compile(stmt)
        if len(self._cache) >= _COMPILE_CACHE_MAX:
            logger.warning("statement cache full: are statements built per call?")
            self._cache.clear()
        self._cache[id(stmt)] = compiled
        return compiled

    def _compile(self, stmt: Statement) -> _Compiled:
        compiled = cast(SQLCompiler, stmt.compile(dialect=self._dialect))
        sql = compiled.string
        if "__[POSTCOMPILE_" in sql:
            raise UnitOfWorkError(
                "expanding IN parameters are not supported; use = ANY(...) or a join: " + sql
            )
        names = tuple(compiled.positiontup or ())
        defaults: dict[str, Any] = {}
        for name in set(names):
            bind = compiled.binds.get(name)
            if bind is not None and not bind.required:
                defaults[name] = bind.effective_value
        bools: tuple[int, ...] = ()
        if self._convert_bools:
            columns = getattr(stmt, "exported_columns", ())
            bools = tuple(i for i, c in enumerate(columns) if isinstance(c.type, Boolean))
        return _Compiled(stmt, sql, names, defaults, bools)


# --- the database -------------------------------------------------------------------------------


class Database(abc.ABC):
    """A connection pool with the unit-of-work API. Open with :meth:`Database.open`."""

    #: ``"sqlite"`` or ``"postgresql"``: for logs and metrics only, never for branching.
    dialect_name: str

    @classmethod
    @asynccontextmanager
    async def open(cls, url: str, *, pool_size: int = 10) -> AsyncIterator[Database]:
        """Open the database at ``url`` for the duration of the ``async with`` block.

        Args:
            url: ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` or
                ``postgresql://user:password@host:port/dbname``.
            pool_size: the most PostgreSQL connections to hold (SQLite: slow-read threads).

        Raises:
            DatabaseUnavailable: the database cannot be opened.
            ValueError: the URL is not one of the forms above.
        """
        if url.startswith("sqlite:"):
            async with _SqliteDatabase.open_path(sqlite_path(url), pool_size) as db:
                yield db
        elif url.startswith(("postgresql:", "postgres:", "postgresql+asyncpg:")):
            async with _PostgresDatabase.open_url(url, pool_size) as pg:
                yield pg
        else:
            raise ValueError(f"unsupported database URL scheme: {url.split(':', 1)[0]!r}")

    @abc.abstractmethod
    async def run(self, work: Work[T], *, name: str) -> T:
        """Run ``work`` in a read-write transaction and commit it.

        The transaction rolls back if ``work`` raises; the exception propagates unchanged.
        Conflicts with concurrent transactions re-run ``work`` a bounded number of times.

        Args:
            work: the unit of work.
            name: a short name for logs and metrics.

        Raises:
            StorageError: one of the tree in the module docstring.
        """

    @abc.abstractmethod
    async def read(self, work: Work[T], *, name: str, slow: bool = False) -> T:
        """Run ``work`` in a read-only transaction that sees one snapshot.

        Args:
            work: the unit of work; it must not write.
            name: a short name for logs and metrics.
            slow: the read may take long: keep it off the event loop (SQLite runs it in a worker
                thread on a reader connection; PostgreSQL ignores this).
        """

    async def ping(self) -> None:
        """Check that the database answers.

        Raises:
            DatabaseUnavailable: it does not.
        """
        try:
            await self.read(_ping, name="ping")
        except DatabaseUnavailable:
            raise
        except StorageError as e:
            raise DatabaseUnavailable(str(e)) from e

    @abc.abstractmethod
    def pool_stats(self) -> PoolStats:
        """Connections in use and held, for metrics."""


_PING = text("SELECT 1")


async def _ping(conn: Conn) -> None:
    await conn.fetch_val(_PING)


def sqlite_path(url: str) -> str:
    """The file path in a ``sqlite:///path`` URL (``sqlite:////abs`` for an absolute path)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise ValueError("SQLite URLs look like sqlite:///relative.db or sqlite:////abs.db")
    path = url[len(prefix) :].split("?", 1)[0]
    if path == ":memory:":
        raise ValueError("in-memory SQLite is not supported (WAL needs a file); use a temp file")
    return path


def _drive(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine that must finish without suspending (a SQLite unit of work)."""
    try:
        coro.send(None)
    except StopIteration as stop:
        return cast(T, stop.value)
    coro.close()
    raise UnitOfWorkError("a unit of work awaited something other than its Conn")


# --- SQLite -------------------------------------------------------------------------------------


_SQLITE_UNAVAILABLE = (
    "SQLITE_CANTOPEN",
    "SQLITE_IOERR",
    "SQLITE_FULL",
    "SQLITE_NOTADB",
    "SQLITE_CORRUPT",
    "SQLITE_READONLY",
    "SQLITE_PERM",
)


def _map_sqlite(e: sqlite3.Error) -> StorageError:
    errname = getattr(e, "sqlite_errorname", "") or ""
    message = str(e)
    if errname.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "database is locked" in message:
        return _Retry(message)
    if isinstance(e, sqlite3.IntegrityError):
        if errname in ("SQLITE_CONSTRAINT_UNIQUE", "SQLITE_CONSTRAINT_PRIMARYKEY"):
            return UniqueViolation(message, constraint=_sqlite_constraint(message))
        if errname == "SQLITE_CONSTRAINT_FOREIGNKEY":
            return ForeignKeyViolation(message)
        return IntegrityError(message)
    if errname.startswith(_SQLITE_UNAVAILABLE) or (
        isinstance(e, sqlite3.ProgrammingError) and "closed" in message
    ):
        return DatabaseUnavailable(message)
    return StorageError(message)


def _sqlite_constraint(message: str) -> str | None:
    # "UNIQUE constraint failed: users.phone" or "...: devices.user_id, devices.device_id"
    _, _, cols = message.partition("failed: ")
    pairs = [c.strip().split(".", 1) for c in cols.split(",") if "." in c]
    if not pairs or len({t for t, _ in pairs}) != 1:
        return None
    return constraint_name(pairs[0][0], [c for _, c in pairs])


class _SqliteConn:
    __slots__ = ("_cache", "_raw", "failed")

    def __init__(self, raw: sqlite3.Connection, cache: _StatementCache) -> None:
        self._raw = raw
        self._cache = cache
        self.failed = False

    def _cursor(self, c: _Compiled, params: Params | None) -> sqlite3.Cursor:
        try:
            return self._raw.execute(c.sql, c.bind(params))
        except sqlite3.Error as e:
            self.failed = True
            raise _map_sqlite(e) from e

    async def execute(self, stmt: Statement, params: Params | None = None) -> int:
        cur = self._cursor(self._cache.get(stmt), params)
        count = cur.rowcount
        cur.close()
        return count

    async def execute_many(self, stmt: Statement, params: Sequence[Params]) -> None:
        c = self._cache.get(stmt)
        try:
            self._raw.executemany(c.sql, [c.bind(p) for p in params])
        except sqlite3.Error as e:
            self.failed = True
            raise _map_sqlite(e) from e

    async def fetch_all(self, stmt: Statement, params: Params | None = None) -> list[Row]:
        c = self._cache.get(stmt)
        cur = self._cursor(c, params)
        try:
            rows: list[Row] = cur.fetchall()
        except sqlite3.Error as e:
            self.failed = True
            raise _map_sqlite(e) from e
        return [c.convert(r) for r in rows] if c.bool_columns else rows

    async def fetch_one(self, stmt: Statement, params: Params | None = None) -> Row | None:
        c = self._cache.get(stmt)
        cur = self._cursor(c, params)
        try:
            row: Row | None = cur.fetchone()
        except sqlite3.Error as e:
            self.failed = True
            raise _map_sqlite(e) from e
        cur.close()
        return c.convert(row) if row is not None else None

    async def fetch_val(self, stmt: Statement, params: Params | None = None) -> Any:
        row = await self.fetch_one(stmt, params)
        return None if row is None else row[0]


def _sqlite_connect(path: str, *, busy_timeout_ms: int, query_only: bool = False) -> Any:
    try:
        raw = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, cached_statements=512
        )
        raw.execute("PRAGMA journal_mode=WAL")
        raw.execute("PRAGMA synchronous=NORMAL")
        raw.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        raw.execute("PRAGMA foreign_keys=ON")
        raw.execute("PRAGMA wal_autocheckpoint=0")
        raw.execute("PRAGMA journal_size_limit=67108864")
        raw.execute("PRAGMA temp_store=MEMORY")
        if query_only:
            raw.execute("PRAGMA query_only=ON")
    except sqlite3.Error as e:
        raise DatabaseUnavailable(f"cannot open SQLite database {path!r}: {e}") from e
    return raw


class _SqliteDatabase(Database):
    dialect_name = "sqlite"

    def __init__(self, path: str, raw: sqlite3.Connection, readers: int) -> None:
        self._path = path
        self._raw = raw
        self._cache = _StatementCache(_SqliteDialect(), convert_bools=True)
        self._write_lock = trio.Lock()
        self._writes = 0
        self._readers: list[sqlite3.Connection] = []
        self._reader_slots = trio.Semaphore(max(1, readers))
        self._readers_busy = 0

    @classmethod
    @asynccontextmanager
    async def open_path(cls, path: str, pool_size: int) -> AsyncIterator[_SqliteDatabase]:
        raw = await trio.to_thread.run_sync(lambda: _sqlite_connect(path, busy_timeout_ms=0))
        db = cls(path, raw, min(pool_size, _SLOW_READERS))
        try:
            async with _background(db._checkpoint_loop):
                yield db
        finally:
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(db._close)

    # write path

    async def run(self, work: Work[T], *, name: str) -> T:
        attempt = 0
        async with self._write_lock:
            while True:
                try:
                    result = self._attempt(work, name, "BEGIN IMMEDIATE")
                except _Retry as e:
                    attempt += 1
                    if attempt > _SQLITE_BUSY_RETRIES:
                        raise TransactionConflict(f"{name}: database stayed locked: {e}") from e
                    delay = min(_SQLITE_BACKOFF_MAX, 0.001 * 2**attempt)
                    await trio.sleep(delay * (0.5 + random.random()))
                    continue
                self._writes += 1
                return result

    async def read(self, work: Work[T], *, name: str, slow: bool = False) -> T:
        if slow:
            return await self._read_in_thread(work, name)
        await trio.lowlevel.checkpoint()
        attempt = 0
        while True:
            try:
                return self._attempt(work, name, "BEGIN")
            except _Retry as e:
                attempt += 1
                if attempt > _SQLITE_BUSY_RETRIES:
                    raise TransactionConflict(f"{name}: {e}") from e
                await trio.sleep(min(_SQLITE_BACKOFF_MAX, 0.001 * 2**attempt))

    def _attempt(self, work: Work[T], name: str, begin: str) -> T:
        return _run_sqlite_unit(self._raw, self._cache, work, name, begin, inline=True)

    # slow reads

    async def _read_in_thread(self, work: Work[T], name: str) -> T:
        async with self._reader_slots:
            self._readers_busy += 1
            try:
                if self._readers:
                    raw: sqlite3.Connection = self._readers.pop()
                else:
                    raw = await trio.to_thread.run_sync(
                        lambda: _sqlite_connect(self._path, busy_timeout_ms=5000, query_only=True)
                    )
                try:
                    return await trio.to_thread.run_sync(
                        lambda: _run_sqlite_unit(
                            raw, self._cache, work, name, "BEGIN", inline=False
                        )
                    )
                finally:
                    self._readers.append(raw)
            finally:
                self._readers_busy -= 1

    # checkpoints

    async def _checkpoint_loop(self) -> None:
        raw = await trio.to_thread.run_sync(
            lambda: _sqlite_connect(self._path, busy_timeout_ms=5000)
        )
        try:
            seen = self._writes
            while True:
                await trio.sleep(_CHECKPOINT_INTERVAL)
                if self._writes == seen:
                    continue
                seen = self._writes
                await trio.to_thread.run_sync(_checkpoint, raw, "PASSIVE")
        finally:
            raw.close()

    def _close(self) -> None:
        for reader in self._readers:
            reader.close()
        self._readers.clear()
        try:
            _checkpoint(self._raw, "TRUNCATE")
        finally:
            self._raw.close()

    def pool_stats(self) -> PoolStats:
        in_use = self._readers_busy + (1 if self._write_lock.locked() else 0)
        return PoolStats(
            in_use=in_use,
            size=1 + len(self._readers) + self._readers_busy,
            max_size=1 + _SLOW_READERS,
        )


def _checkpoint(raw: sqlite3.Connection, mode: str) -> None:
    try:
        busy, log_frames, done = raw.execute(f"PRAGMA wal_checkpoint({mode})").fetchone()
    except sqlite3.Error as e:
        logger.warning("WAL checkpoint (%s) failed: %s", mode, e)
        return
    if busy:
        logger.debug("WAL checkpoint (%s) incomplete: %s of %s frames", mode, done, log_frames)


def _run_sqlite_unit(
    raw: sqlite3.Connection,
    cache: _StatementCache,
    work: Work[T],
    name: str,
    begin: str,
    *,
    inline: bool,
) -> T:
    started = time.perf_counter()
    try:
        raw.execute(begin)
    except sqlite3.Error as e:
        raise _map_sqlite(e) from e
    conn = _SqliteConn(raw, cache)
    try:
        result = _drive(work(conn))
        if conn.failed:
            raise UnitOfWorkError(f"{name}: a statement failed but the unit of work returned")
        try:
            raw.execute("COMMIT")
        except sqlite3.Error as e:
            raise _map_sqlite(e) from e
    except BaseException:
        if raw.in_transaction:
            try:
                raw.execute("ROLLBACK")
            except sqlite3.Error as e:
                logger.warning("%s: rollback failed: %s", name, e)
        raise
    finally:
        elapsed = time.perf_counter() - started
        if inline and elapsed > _SLOW_INLINE_SECONDS:
            logger.warning("%s held the event loop for %.0f ms", name, elapsed * 1000)
    return result


@asynccontextmanager
async def _background(task: Callable[[], Coroutine[Any, Any, None]]) -> AsyncIterator[None]:
    """Run ``task`` while the block runs; the block's exception comes out unwrapped."""
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(task)
        try:
            yield
        except BaseException as e:  # re-raised below, outside the nursery
            body_error = e
        finally:
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error


# --- PostgreSQL ---------------------------------------------------------------------------------


_PG_UNAVAILABLE: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.InsufficientResourcesError,
)


def _map_pg(e: BaseException) -> StorageError:
    if isinstance(e, StorageError):
        return e
    if isinstance(
        e, asyncpg.exceptions.SerializationError | asyncpg.exceptions.DeadlockDetectedError
    ):
        return _Retry(str(e))
    if isinstance(e, asyncpg.exceptions.UniqueViolationError):
        return UniqueViolation(str(e), constraint=e.constraint_name)
    if isinstance(e, asyncpg.exceptions.ForeignKeyViolationError):
        return ForeignKeyViolation(str(e), constraint=e.constraint_name)
    if isinstance(e, asyncpg.exceptions.IntegrityConstraintViolationError):
        return IntegrityError(str(e), constraint=getattr(e, "constraint_name", None))
    if isinstance(e, _PG_UNAVAILABLE):
        return DatabaseUnavailable(f"{type(e).__name__}: {e}")
    return StorageError(f"{type(e).__name__}: {e}")


def _pg_count(status: str) -> int:
    last = status.rsplit(" ", 1)[-1]
    return int(last) if last.isdigit() else 0


class _PgConn:
    __slots__ = ("_cache", "_raw", "failed")

    def __init__(self, raw: Any, cache: _StatementCache) -> None:
        self._raw = raw
        self._cache = cache
        self.failed = False

    def _fail(self, e: Exception) -> StorageError:
        self.failed = True
        return _map_pg(e)

    async def execute(self, stmt: Statement, params: Params | None = None) -> int:
        c = self._cache.get(stmt)
        try:
            status: str = await self._raw.execute(c.sql, *c.bind(params))
        except (asyncpg.PostgresError, *_PG_UNAVAILABLE) as e:
            raise self._fail(e) from e
        return _pg_count(status)

    async def execute_many(self, stmt: Statement, params: Sequence[Params]) -> None:
        c = self._cache.get(stmt)
        try:
            await self._raw.executemany(c.sql, [c.bind(p) for p in params])
        except (asyncpg.PostgresError, *_PG_UNAVAILABLE) as e:
            raise self._fail(e) from e

    async def fetch_all(self, stmt: Statement, params: Params | None = None) -> list[Row]:
        c = self._cache.get(stmt)
        try:
            records = await self._raw.fetch(c.sql, *c.bind(params))
        except (asyncpg.PostgresError, *_PG_UNAVAILABLE) as e:
            raise self._fail(e) from e
        return [tuple(r) for r in records]

    async def fetch_one(self, stmt: Statement, params: Params | None = None) -> Row | None:
        c = self._cache.get(stmt)
        try:
            record = await self._raw.fetchrow(c.sql, *c.bind(params))
        except (asyncpg.PostgresError, *_PG_UNAVAILABLE) as e:
            raise self._fail(e) from e
        return None if record is None else tuple(record)

    async def fetch_val(self, stmt: Statement, params: Params | None = None) -> Any:
        c = self._cache.get(stmt)
        try:
            return await self._raw.fetchval(c.sql, *c.bind(params))
        except (asyncpg.PostgresError, *_PG_UNAVAILABLE) as e:
            raise self._fail(e) from e


def _asyncpg_dsn(url: str) -> str:
    if url.startswith("postgresql+asyncpg:"):
        return "postgresql:" + url[len("postgresql+asyncpg:") :]
    return url


def _run_loop(loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(loop)
    try:
        loop.run_forever()
    finally:
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()


class _PostgresDatabase(Database):
    dialect_name = "postgresql"

    def __init__(self, loop: asyncio.AbstractEventLoop, token: trio.lowlevel.TrioToken) -> None:
        self._loop = loop
        self._token = token
        self._pool: Any = None
        self._max_size = 0
        self._in_use = 0  # changed on the loop thread only
        self._cache = _StatementCache(
            _PgDialect(),  # type: ignore[no-untyped-call]
            convert_bools=False,
        )

    @classmethod
    @asynccontextmanager
    async def open_url(cls, url: str, pool_size: int) -> AsyncIterator[_PostgresDatabase]:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(
            target=_run_loop, args=(loop,), name="homeserver-db-asyncio", daemon=True
        )
        thread.start()
        db = cls(loop, trio.lowlevel.current_trio_token())
        try:
            await db._cross(db._create_pool(_asyncpg_dsn(url), pool_size))
            yield db
        finally:
            with trio.CancelScope(shield=True):
                if db._pool is not None:
                    await db._cross(db._close_pool())
                loop.call_soon_threadsafe(loop.stop)
                await trio.to_thread.run_sync(thread.join)

    async def _create_pool(self, dsn: str, pool_size: int) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                dsn,
                min_size=min(2, pool_size),
                max_size=pool_size,
                timeout=10,
                statement_cache_size=512,
                server_settings={"application_name": "homeserver"},
            )
        except (asyncpg.PostgresError, *_PG_UNAVAILABLE) as e:
            raise DatabaseUnavailable(f"cannot connect to PostgreSQL: {_map_pg(e)}") from e
        self._max_size = pool_size

    async def _close_pool(self) -> None:
        try:
            await asyncio.wait_for(self._pool.close(), 10)
        except (TimeoutError, asyncpg.PostgresError, *_PG_UNAVAILABLE):
            self._pool.terminate()

    async def _cross(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` as a task on the asyncio loop thread; wait for it without blocking Trio.

        This is ``asyncio.run_coroutine_threadsafe`` minus its ``concurrent.futures.Future``:
        that future counts as done the moment it is cancelled, while we must wait until the task
        has really finished (rolled back, released its connection) before we return.
        """
        loop, token = self._loop, self._token
        done = trio.Event()
        box: list[outcome.Outcome[T]] = []
        tasks: list[asyncio.Task[None]] = []

        def wake() -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:
                pass

        async def wrapper() -> None:
            try:
                box.append(outcome.Value(await coro))
            except BaseException as e:  # handed to the Trio side, which re-raises it
                box.append(outcome.Error(e))

        def finished(_: object) -> None:
            if not box:  # cancelled before its first step
                coro.close()
            wake()

        def start() -> None:
            task = loop.create_task(wrapper())
            task.add_done_callback(finished)
            tasks.append(task)

        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError as e:  # the loop is closed
            coro.close()
            raise DatabaseUnavailable("the database is closed") from e
        try:
            await done.wait()
        except trio.Cancelled:
            # FIFO: this runs after the task was created
            loop.call_soon_threadsafe(lambda: tasks[0].cancel())
            with trio.CancelScope(shield=True), trio.move_on_after(_PG_CANCEL_GRACE):
                await done.wait()
            raise
        if not box:
            raise DatabaseUnavailable("the database is closing")
        result = box[0]
        if isinstance(result, outcome.Error) and isinstance(result.error, asyncio.CancelledError):
            raise DatabaseUnavailable("the database is closing")
        return result.unwrap()

    async def run(self, work: Work[T], *, name: str) -> T:
        return await self._cross(self._unit(work, name, readonly=False))

    async def read(self, work: Work[T], *, name: str, slow: bool = False) -> T:
        return await self._cross(self._unit(work, name, readonly=True))

    async def _unit(self, work: Work[T], name: str, *, readonly: bool) -> T:
        try:
            raw = await self._pool.acquire(timeout=_PG_ACQUIRE_TIMEOUT)
        except (asyncpg.PostgresError, *_PG_UNAVAILABLE) as e:
            raise DatabaseUnavailable(f"{name}: no connection: {_map_pg(e)}") from e
        self._in_use += 1
        try:
            attempt = 0
            while True:
                try:
                    return await self._attempt(raw, work, name, readonly)
                except _Retry as e:
                    attempt += 1
                    if attempt > _PG_CONFLICT_RETRIES:
                        raise TransactionConflict(f"{name}: {e}") from e
                    await asyncio.sleep(min(0.1, 0.002 * 2**attempt) * random.random())
        finally:
            self._in_use -= 1
            await self._pool.release(raw)

    async def _attempt(self, raw: Any, work: Work[T], name: str, readonly: bool) -> T:
        conn = _PgConn(raw, self._cache)
        try:
            if readonly:
                tx = raw.transaction(isolation="repeatable_read", readonly=True)
            else:
                tx = raw.transaction()
            async with tx:
                result = await work(conn)
                if conn.failed:
                    raise UnitOfWorkError(
                        f"{name}: a statement failed but the unit of work returned"
                    )
            return result
        except (asyncpg.PostgresError, *_PG_UNAVAILABLE) as e:
            raise _map_pg(e) from e
        except RuntimeError as e:
            if "bad yield" in str(e):  # it awaited a Trio primitive on the asyncio loop
                raise UnitOfWorkError(f"{name}: awaited something other than its Conn") from e
            raise

    def pool_stats(self) -> PoolStats:
        size = self._pool.get_size() if self._pool is not None else 0
        return PoolStats(in_use=self._in_use, size=size, max_size=self._max_size)
