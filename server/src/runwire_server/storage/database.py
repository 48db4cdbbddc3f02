"""The database handle: engine set-up per dialect and the one way to run a unit of work."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import secrets
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Protocol, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, func, make_url, select
from sqlalchemy.exc import DataError, DBAPIError, InvalidatePoolError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from runwire_server.deadlines import call_deadline
from runwire_server.errors import DeadlineExceeded, InvalidArgument, Unavailable
from runwire_server.storage.group_commit import GroupCommit
from runwire_server.storage.models import EventSequence, Meta

T = TypeVar("T")

# Set while a unit of work that writes is starting, so SQLite takes its write lock up front
# (BEGIN IMMEDIATE) instead of failing to upgrade a read lock half-way through.
_WRITE_INTENT: contextvars.ContextVar[bool] = contextvars.ContextVar("write_intent", default=False)
_BUSY_TIMEOUT_MS = 30_000
_PG_QUERY_CANCELED = "57014"
_IDLE_BEFORE_PING_S = 1.0  # see _pooled_engine


class _Session(Session):
    """A session that remembers its connection for as long as the same transaction lasts.

    Every statement of a state change asks the session for its connection, and SQLAlchemy
    finds it through the transaction each time, which shows in a lifecycle's profile. A
    savepoint or a new transaction is a new transaction object, so asking then goes through
    SQLAlchemy again (which is what emits the SAVEPOINT).
    """

    _held: tuple[Any, Connection] | None = None  # (the transaction, its connection)

    def connection(self, bind_arguments: Any = None, execution_options: Any = None) -> Connection:
        if bind_arguments is not None or execution_options is not None:
            return super().connection(bind_arguments, execution_options)
        held = self._held
        if held is None or held[0] is not self._transaction:
            connection = super().connection()
            held = self._held = (self._transaction, connection)
        return held[1]


class SchemaMismatch(RuntimeError):
    """The database was made by another version of Runwire."""


class CommitHooks(Protocol):
    def before_commit(self, session: Session) -> None: ...
    def after_commit(self, session: Session) -> None: ...
    def after_rollback(self, session: Session) -> None: ...


class Database:
    """Runs units of work (plain functions of a Session) in their own transaction.

    On SQLite each unit runs inline on the event loop: SQLite serializes writers anyway, and a
    thread hop costs more than the short transactions themselves. On other databases units run
    on a thread pool so that network round trips do not block the loop. On both, writes that
    arrive together share one transaction (storage.group_commit).
    """

    def __init__(self, url: str, *, pool_size: int = 8) -> None:
        parsed = make_url(url)
        self.url = parsed
        self.is_sqlite = parsed.get_backend_name() == "sqlite"
        self.engine = _sqlite_engine(url) if self.is_sqlite else _pooled_engine(url, pool_size)
        self.is_postgresql = parsed.get_backend_name() == "postgresql"
        self._sessions = sessionmaker(self.engine, class_=_Session, expire_on_commit=False)
        self._executor = None if self.is_sqlite else ThreadPoolExecutor(pool_size, "runwire-db")
        self._group = GroupCommit(self._run_batch, self.run_sync, self._executor)
        self._reader: Connection | None = None  # SQLite: see read_one
        self._autocommit = self.engine.execution_options(isolation_level="AUTOCOMMIT")

    def prepare_schema(self, *, migrate: bool = True) -> None:
        """Bring the schema to this server's version, or refuse to serve an older one."""
        from runwire_server import schema

        current, head = schema.current(self.engine), schema.head()
        if current is not None and not schema.known(current):
            raise SchemaMismatch(
                f"the database at {self.url.render_as_string(hide_password=True)} is at "
                f"schema version {current}, which this server does not know (it needs {head}): "
                "a newer Runwire made it; run that version or a later one"
            )
        if migrate:
            schema.upgrade(self.engine)
        elif current != head:
            raise SchemaMismatch(
                f"the database at {self.url.render_as_string(hide_password=True)} is at "
                f"schema version {current or 'none'}, this server needs {head}: run "
                "`runwire database upgrade` (or start without RUNWIRE_MIGRATE_ON_START=false)"
            )

        def first_sequence(session: Session) -> None:
            if session.get(EventSequence, 1) is None:
                session.add(EventSequence(id=1, value=0))

        with contextlib.suppress(DBAPIError):  # another replica made it first
            self.run_sync(first_sequence)

    def observe_write_batches(self, observe: Callable[[int, bool], None]) -> None:
        """Report each group-commit batch: its size and whether it committed as one."""
        self._group.observe = observe

    def add_commit_hooks(self, hooks: CommitHooks) -> None:
        """Call `hooks` around the commit of every transaction (the events outbox: it stores a
        transaction's events as it commits and publishes them once it has)."""
        for moment in ("before_commit", "after_commit", "after_rollback"):
            event.listen(self._sessions, moment, getattr(hooks, moment))

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        self.engine.dispose()

    async def read(self, work: Callable[[Session], T]) -> T:
        return await self._run(work, write=False)

    async def write(self, work: Callable[[Session], T]) -> T:
        result: T = await self._group.submit(work, call_deadline.get())
        return result

    async def _run(self, work: Callable[[Session], T], *, write: bool) -> T:
        if self._executor is None:
            return self.run_sync(work, write=write)
        loop = asyncio.get_running_loop()
        # Executor threads do not inherit the caller's context: carry the deadline over.
        deadline = call_deadline.get()

        def call() -> T:
            return self.run_sync(work, write=write, deadline=deadline)

        return await loop.run_in_executor(
            self._executor, call if write else lambda: _again_if_cut(call)
        )

    def run_sync(
        self, work: Callable[[Session], T], *, write: bool = True, deadline: float | None = None
    ) -> T:
        if deadline is None:
            deadline = call_deadline.get()
        _refuse_if_past(deadline)
        tokens = _WRITE_INTENT.set(write), call_deadline.set(deadline)
        try:
            with _mapped_errors(deadline), self._sessions.begin() as session:
                self._bound(session, deadline)
                return work(session)
        finally:
            _WRITE_INTENT.reset(tokens[0])
            call_deadline.reset(tokens[1])

    async def read_one(self, work: Callable[[Connection], T], *, by_key: bool = False) -> T:
        """Run a read whose statements need no shared snapshot (a read by id is one statement;
        a page reads the watch cursor first, then the page) on `work`'s connection.

        A session with its BEGIN and COMMIT costs more than a read by id itself (on PostgreSQL,
        two more round trips), so it runs outside any transaction. On SQLite it runs on the
        event loop, on a connection kept for such reads; elsewhere on the thread pool, on a
        pooled connection in autocommit mode. There a caller's deadline needs a transaction
        (its statement timeout is set for the transaction only), except for a read `by_key`,
        which waits on no row lock and reads one row.
        """
        if self._executor is not None:
            deadline = call_deadline.get()
            if deadline is not None and not by_key:
                return await self.read(lambda session: work(session.connection()))
            _refuse_if_past(deadline)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, self._read_alone, work, deadline)
        deadline = call_deadline.get()
        _refuse_if_past(deadline)
        if self._reader is None:
            self._reader = self.engine.connect()
        reader = self._reader
        try:
            with _mapped_errors(deadline):
                return work(reader)
        finally:
            if reader.in_transaction():
                # SQLAlchemy began one (a statement listener sent the statement its way):
                # never leave the kept connection holding an old snapshot.
                reader.rollback()

    def _bound(self, session: Session, deadline: float | None) -> None:
        """On PostgreSQL the database itself cancels a statement (or lock wait) of the
        transaction past the deadline."""
        if deadline is not None and self.is_postgresql:
            session.execute(
                select(func.set_config("statement_timeout", _remaining_ms(deadline), True))
            )

    def _read_alone(self, work: Callable[[Connection], T], deadline: float | None) -> T:
        token = call_deadline.set(deadline)

        def read() -> T:
            _refuse_if_past(deadline)
            with _mapped_errors(deadline), self._autocommit.connect() as conn:
                return work(conn)

        try:
            return _again_if_cut(read)
        finally:
            call_deadline.reset(token)

    def _run_batch(
        self,
        works: Sequence[tuple[Callable[[Session], Any], contextvars.Context]],
        deadline: float | None,
    ) -> list[Any]:
        """Run units back to back in one write transaction, each in its caller's context (and
        so under its caller's deadline). Errors are not mapped: the caller runs each unit again
        on its own when any fails."""
        tokens = _WRITE_INTENT.set(True), call_deadline.set(deadline)
        try:
            with self._sessions.begin() as session:
                self._bound(session, deadline)
                return [context.run(work, session) for work, context in works]
        finally:
            _WRITE_INTENT.reset(tokens[0])
            call_deadline.reset(tokens[1])

    def page_token_secret(self) -> bytes:
        """The secret that signs page tokens, made once and shared by every replica."""

        def load(session: Session) -> str:
            row = session.get(Meta, "page_token_secret")
            if row is None:
                row = Meta(key="page_token_secret", value=secrets.token_hex(32))
                session.add(row)
                session.flush()
            return row.value

        try:
            return bytes.fromhex(self.run_sync(load))
        except Unavailable:
            raise
        except DBAPIError:
            # Another replica created it first.
            return bytes.fromhex(self.run_sync(load))


def _again_if_cut(read: Callable[[], T]) -> T:
    """`read()`, run once more if it found its pooled connection closed by the database (a
    restart, say): SQLAlchemy has then discarded the pool's older connections, and a read is
    safe to repeat."""
    try:
        return read()
    except Unavailable as exc:
        cause = exc.__cause__
        if not (isinstance(cause, DBAPIError) and cause.connection_invalidated):
            raise
    return read()


def _refuse_if_past(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() >= deadline:
        raise DeadlineExceeded("the deadline passed before the work began; nothing was done")


@contextlib.contextmanager
def _mapped_errors(deadline: float | None) -> Iterator[None]:
    """Database errors as the errors of the call: the one place they are translated."""
    try:
        yield
    except OperationalError as exc:
        if _deadline_passed(exc, deadline):
            raise DeadlineExceeded(
                "the deadline passed while the database worked; nothing was written"
            ) from exc
        raise Unavailable(f"database unavailable: {_headline(exc)}") from exc
    except DataError as exc:
        # A value the database refuses (validation should have named the field first).
        raise InvalidArgument(
            "request", f"holds a value the database cannot store: {_headline(exc)}"
        ) from exc
    except DBAPIError as exc:
        if exc.connection_invalidated:
            raise Unavailable("database connection lost") from exc
        raise


def _headline(exc: DBAPIError) -> str:
    """The database's own first line: PostgreSQL appends the SQL and its context, which can
    take kilobytes, and a status message past 8 KiB of metadata reaches the client as
    RESOURCE_EXHAUSTED instead of the status it was."""
    text = str(exc.orig).strip().splitlines()
    return text[0][:300] if text else type(exc.orig).__name__


def _remaining_ms(deadline: float) -> str:
    return str(max(1, int((deadline - time.monotonic()) * 1000)))


def _deadline_passed(exc: OperationalError, deadline: float | None) -> bool:
    if getattr(exc.orig, "sqlstate", None) == _PG_QUERY_CANCELED:
        return True
    return deadline is not None and time.monotonic() >= deadline


def _past_deadline() -> int:
    """SQLite progress handler: a non-zero answer interrupts the running statement."""
    deadline = call_deadline.get()
    return int(deadline is not None and time.monotonic() >= deadline)


# Most JSON columns of a run hold an empty object or list or null (labels, context, a state's
# result), and a read by id decodes eight of them: these few values skip the json module's
# general path.


def _json_dumps(value: Any) -> str:
    if value == {}:
        return "{}"
    if value == []:
        return "[]"
    return json.dumps(value)


def _json_loads(text: str) -> Any:
    if text == "{}":
        return {}
    if text == "[]":
        return []
    if text == "null":
        return None
    return json.loads(text)


def _pooled_engine(url: str, pool_size: int) -> Engine:
    """A pool that tests a connection before handing it out only when it sat unused.

    SQLAlchemy's `pool_pre_ping` pings at every checkout, which doubles the round trips of a
    read by id. A connection in steady use has just answered; one that sat idle may have been
    closed by the database, a proxy or a firewall meanwhile, and is pinged. A connection that
    dies between pings fails its statement: SQLAlchemy then discards every older connection of
    the pool, reads are repeated once (_again_if_cut), a batch's writes are run again each on
    its own (storage.group_commit), and a write that ran alone answers UNAVAILABLE, which a
    client retries.
    """
    engine = create_engine(url, pool_size=pool_size)
    dialect = engine.dialect

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        if dialect.name == "postgresql":
            # Times then come back in UTC, as the server hands them out, with no conversion
            # of every value read (storage.types); behind a proxy that drops session settings
            # they are converted instead.
            autocommit = dbapi_connection.autocommit
            dbapi_connection.autocommit = True
            cursor = dbapi_connection.cursor()
            cursor.execute("SET TIME ZONE 'UTC'")
            cursor.close()
            dbapi_connection.autocommit = autocommit
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["checked_in"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("checked_in", 0.0) < _IDLE_BEFORE_PING_S:
            return
        try:
            dialect.do_ping(dbapi_connection)
        except dialect.loaded_dbapi.Error as exc:
            # A closed connection most often means a restart, which closed them all: as with
            # pool_pre_ping, the pool discards every connection it holds and opens a new one.
            raise InvalidatePoolError(f"a pooled connection was closed: {exc}") from exc

    return engine


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.database and parsed.database != ":memory:":
        Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        json_serializer=_json_dumps,
        json_deserializer=_json_loads,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Manage transactions ourselves (pysqlite's own handling breaks SAVEPOINT and
        # BEGIN IMMEDIATE).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: an acknowledged commit survives power loss, not just a process crash.
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={_BUSY_TIMEOUT_MS}")
        cursor.close()
        dbapi_connection.set_progress_handler(_past_deadline, 10_000)

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        write = _WRITE_INTENT.get()
        if write:
            # Wait for another process's write lock no longer than the caller will wait.
            deadline = call_deadline.get()
            busy = _BUSY_TIMEOUT_MS
            if deadline is not None:
                remaining = int(_remaining_ms(deadline))
                # Whole seconds above one, so that the setting rarely changes.
                busy = min(busy, remaining if remaining < 1000 else remaining // 1000 * 1000)
            if conn.info.get("busy_timeout") != busy:
                conn.exec_driver_sql(f"PRAGMA busy_timeout={busy}")
                conn.info["busy_timeout"] = busy
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine
