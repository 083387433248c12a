"""Database access: one engine, short transactions run off the event loop, migrations at start-up.

Handlers call ``await db.read(fn)`` / ``await db.write(fn)``; ``fn(session)`` runs in a worker
thread inside one transaction. On SQLite, writes take the write lock up front (BEGIN IMMEDIATE)
so concurrent writers queue instead of failing half-way, and WAL keeps readers unblocked.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry

from visionloop.runtime.tasks import settled

T = TypeVar("T")
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
_MIGRATION_LOCK = 7_004_242  # pg_advisory_lock key: one replica migrates at a time


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit is on disk before the hub answers. Under NORMAL a WAL commit can roll back
        # on a power cut, and a robot's outbox deletes its copy of an image once the hub answered.
        # One fsync per transaction, and group commit shares a transaction among uploads.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(connection: Any) -> None:
        write = connection.get_execution_options().get("visionloop_write", False)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")


# A pooled connection used this recently is handed out without a ping (as HikariCP does, 500 ms
# there): under load the write connection goes back and forth many times a second, and SQLAlchemy's
# pool_pre_ping would cost every transaction a round trip. One that sat idle longer is pinged first.
PING_AFTER_IDLE_S = 1.0
_LAST_USED = "visionloop.last_used"  # ConnectionPoolEntry.info: when it was connected or last checked in


def _ping_when_idle(engine: Engine) -> None:
    """Replace a pooled connection the server dropped (restart, idle timeout, failover) before use.

    SQLAlchemy's ``pool_pre_ping``, but skipped for a connection made or checked in less than
    ``PING_AFTER_IDLE_S`` ago. A failed ping raises ``DisconnectionError``: the pool then discards
    the connection and checks out another (a fresh one), up to three times.
    """

    @event.listens_for(engine, "connect")
    @event.listens_for(engine, "checkin")
    def _used(_dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: ConnectionPoolEntry, _proxy: Any) -> None:
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) < PING_AFTER_IDLE_S:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as error:
            raise DisconnectionError(f"pooled connection failed its ping: {error}") from error


class Batchable(Protocol):
    """A write that can also run together with others of its kind in one set-based call.

    ``run_together(session, items)`` returns one result per item, in order; ``item(session)``
    runs it alone (after a group failed, each item runs alone in its own savepoint).
    """

    def __call__(self, session: Session) -> Any: ...

    @staticmethod
    def run_together(session: Session, items: Sequence[Any]) -> list[Any]: ...


def _run_together(session: Session, fns: Sequence[Callable[[Session], Any]]) -> list[Any]:
    """Every fn's result in order; batchable fns of one kind go through one ``run_together`` call."""
    results: list[Any] = [None] * len(fns)
    kinds: dict[Callable[..., list[Any]], list[int]] = {}
    for index, fn in enumerate(fns):
        together = getattr(fn, "run_together", None)
        if together is None:
            results[index] = fn(session)
        else:
            kinds.setdefault(together, []).append(index)
    for together, indices in kinds.items():
        for index, result in zip(indices, together(session, [fns[i] for i in indices]), strict=True):
            results[index] = result
    return results


class Database:
    def __init__(self, url: str) -> None:
        self.url = url
        kwargs: dict[str, Any] = {}
        if url.startswith("sqlite"):  # a file never drops a connection: no pre-ping round trip
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        self.engine = create_engine(url, **kwargs)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            _sqlite_pragmas(self.engine)
        else:
            _ping_when_idle(self.engine)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        # Only SQLite needs writers queued in-process; PostgreSQL takes row locks as needed.
        self._writer_lock: threading.Lock | contextlib.nullcontext[None] = (
            threading.Lock() if self.dialect == "sqlite" else contextlib.nullcontext()
        )
        self._batcher: _WriteBatcher | None = None
        self._write = sessionmaker(self.engine.execution_options(visionloop_write=True), expire_on_commit=False)

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent, safe with several replicas)."""
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.execution_options(visionloop_write=True).begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def read_sync(self, fn: Callable[[Session], T]) -> T:
        with self._read.begin() as session:
            return fn(session)

    def write_sync(self, fn: Callable[[Session], T]) -> T:
        # SQLite has one writer at a time; queueing on a lock here wakes the next writer at once
        # instead of leaving it in SQLite's busy handler, which sleeps in growing steps.
        with self._writer_lock, self._write.begin() as session:
            return fn(session)

    def write_many_sync(self, fns: Sequence[Callable[[Session], Any]]) -> list[tuple[bool, Any]]:
        """Run the fns in one transaction, each failing on its own; (ok, result or exception) per fn.

        Optimistically without savepoints (two statements and a good deal of SQLAlchemy per fn),
        with ``Batchable`` fns of one kind run together; if any fn fails, the transaction is rolled
        back and every fn runs again, alone, in its own savepoint.
        """
        try:
            with self._writer_lock, self._write.begin() as session:
                results = _run_together(session, fns)
        except Exception as error:
            if len(fns) == 1:  # the rollback undid exactly that fn's writes, as a savepoint would
                return [(False, error)]
        else:
            return [(True, result) for result in results]
        outcomes: list[tuple[bool, Any]] = []
        with self._writer_lock, self._write.begin() as session:
            for fn in fns:
                try:
                    with session.begin_nested():
                        outcomes.append((True, fn(session)))
                except Exception as error:  # one item's failure must not fail the others
                    outcomes.append((False, error))
        return outcomes

    async def read(self, fn: Callable[[Session], T]) -> T:
        return await asyncio.to_thread(self.read_sync, fn)

    async def write(self, fn: Callable[[Session], T]) -> T:
        return await asyncio.to_thread(self.write_sync, fn)

    async def write_grouped(self, fn: Callable[[Session], T]) -> T:
        """Like ``write``, but concurrent callers share transactions (group commit).

        Many small writes arriving together (uploads from many robots) then cost one
        transaction instead of one each; every fn still succeeds or fails on its own.
        """
        if self._batcher is None:
            self._batcher = _WriteBatcher(self)
        return await self._batcher.submit(fn)

    @contextlib.asynccontextmanager
    async def only_replica(self, key: int) -> AsyncIterator[bool]:
        """Whether this process may run, for the block, a job one hub replica at a time should run.

        On PostgreSQL: PostgreSQL's session advisory lock ``key``, if no other process holds it.
        The lock lives on a connection of its own that is closed afterwards, never returned to the
        pool: however the block ends, the server releases the lock. On SQLite: always (one process).
        """
        if self.dialect != "postgresql":
            yield True
            return
        connection = await asyncio.to_thread(self.engine.connect)
        try:
            # settled: a cancelled caller still waits for the query, so the discard never runs beside it
            yield await settled(asyncio.to_thread(_try_advisory_lock, connection, key))
        finally:
            await asyncio.to_thread(_discard, connection)

    def close(self) -> None:
        self.engine.dispose()


def _try_advisory_lock(connection: Connection, key: int) -> bool:
    held = bool(connection.scalar(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}))
    connection.commit()  # the lock is the session's: no transaction stays open while it is held
    return held


def _discard(connection: Connection) -> None:
    connection.invalidate()  # closes the DB-API connection, which releases its session locks
    connection.close()


class _WriteBatcher:
    """Collects writes while a transaction runs and commits the next group together."""

    max_group = 64

    def __init__(self, db: Database) -> None:
        self._db = db
        self._pending: list[tuple[Callable[[Session], Any], asyncio.Future[Any]]] = []
        self._running = False

    async def submit(self, fn: Callable[[Session], T]) -> T:
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                group, self._pending = self._pending[: self.max_group], self._pending[self.max_group :]
                try:
                    outcomes = await asyncio.to_thread(self._db.write_many_sync, [fn for fn, _ in group])
                except Exception as error:  # the commit itself failed: every caller of the group learns it
                    outcomes = [(False, error)] * len(group)
                for (_, future), (ok, value) in zip(group, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._running = False
