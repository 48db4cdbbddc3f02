"""Fixed-shape statements run straight on the database driver's cursor.

SQLAlchemy's execution layer (an execution context per statement, parameter and result set-up,
event dispatch) costs more than SQLite itself takes for the short statements of a state change
or a read by id (BENCHMARKS.md). A Direct statement is still written in SQLAlchemy Core and
compiled by SQLAlchemy, once per dialect, and its values still pass through SQLAlchemy's own
bind and result processors for their types, so SQLite and PostgreSQL are served by the same
code; only the per-execution machinery is skipped. Errors are handed to SQLAlchemy's own error
handling, so callers see the same exceptions (and a lost connection is invalidated the same
way).

It reads four of SQLAlchemy's internals (INTERNALS below), which a release may change without
notice: the server depends on the SQLAlchemy minor series it was tested with, and
tests/test_direct.py fails by name when one of them is gone.

Only statements whose shape never changes qualify: no expanding IN lists, no defaults filled in
at execution. Compiling refuses the rest. When anything listens to the engine's statement
events (tests that count statements), statements take SQLAlchemy's path so the listener hears
every one.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.base import Executable

Reader = Callable[[Any], Any]

# (where, attribute): what this module reads of SQLAlchemy beyond its public API.
INTERNALS = (
    ("sqlalchemy.sql.compiler.SQLCompiler", "_bind_processors"),
    ("sqlalchemy.sql.compiler.SQLCompiler", "_result_columns"),
    ("sqlalchemy.types.TypeEngine", "_cached_result_processor"),
    ("sqlalchemy.engine.Connection", "_handle_dbapi_exception"),
)


class _Compiled:
    """A statement compiled for one dialect: its SQL, how to build the driver's parameters,
    and (once the first execution has shown the driver's column types) how to read rows."""

    def __init__(self, statement: Executable, dialect: Dialect) -> None:
        compiled: Any = statement.compile(dialect=dialect)  # type: ignore[attr-defined]
        if compiled.insert_prefetch or compiled.update_prefetch:
            raise ValueError(f"{statement} fills in column defaults at execution: not direct")
        if compiled.escaped_bind_names or any(bind.expanding for bind in compiled.bind_names):
            raise ValueError(f"{statement} has parameters whose shape varies: not direct")
        self.sql = str(compiled)
        processors = compiled._bind_processors
        # (name, processor, default): the default is the statement's own literal value, used
        # when the caller does not pass that name.
        binds = {
            name: (name, processors.get(name), None if bind.required else bind.effective_value)
            for bind, name in compiled.bind_names.items()
        }
        # Positional drivers take the values in the SQL's order, named ones a mapping.
        order = compiled.positiontup
        self.positional = order is not None
        self.binds = [binds[name] for name in order] if self.positional else list(binds.values())
        self.bound = [name for name, _, _ in self.binds]
        self.keys = tuple(entry.keyname for entry in compiled._result_columns)
        self._types = [entry.type for entry in compiled._result_columns]
        self._dialect = dialect
        self.readers: list[tuple[int, Reader]] | None = None

    def arguments(self, params: Mapping[str, Any]) -> Any:
        # Processors see None too, as in SQLAlchemy: JSON stores None as JSON null, not NULL.
        values = [
            value if process is None else process(value)
            for name, process, default in self.binds
            for value in (params.get(name, default),)
        ]
        if self.positional:
            return values
        return dict(zip(self.bound, values, strict=True))

    def learn_readers(self, description: Sequence[Any]) -> list[tuple[int, Reader]]:
        """(column index, processor) for the columns that have a processor: most (text and
        numbers) have none, and touching only the others halves the cost of reading a row."""
        readers = [
            type_._cached_result_processor(self._dialect, column[1])
            for type_, column in zip(self._types, description, strict=True)
        ]
        self.readers = [(i, read) for i, read in enumerate(readers) if read is not None]
        return self.readers


class Direct:
    """A Core statement of fixed shape, executed on the driver's cursor (see the module)."""

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}

    def _for(self, conn: Connection) -> _Compiled:
        dialect = conn.dialect
        compiled = self._compiled.get(dialect.name)
        if compiled is None:
            compiled = self._compiled[dialect.name] = _Compiled(self.statement, dialect)
        return compiled

    def keys(self, conn: Connection) -> tuple[str, ...]:
        """The names of the result's columns, in order."""
        return self._for(conn).keys

    def execute(self, conn: Connection, params: Mapping[str, Any]) -> None:
        """Run a statement that returns no rows."""
        if _observed(conn):
            conn.execute(self.statement, dict(params))
            return
        compiled = self._for(conn)
        _on_cursor(conn, compiled.sql, compiled.arguments(params), many=False, fetch=False)

    def execute_many(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Run a statement that returns no rows once per parameter set, in one driver call."""
        if _observed(conn):
            conn.execute(self.statement, [dict(row) for row in rows])
            return
        compiled = self._for(conn)
        arguments = [compiled.arguments(row) for row in rows]
        _on_cursor(conn, compiled.sql, arguments, many=True, fetch=False)

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Every row the statement returns, with values converted as SQLAlchemy would."""
        if _observed(conn):
            return [tuple(row) for row in conn.execute(self.statement, dict(params))]
        compiled = self._for(conn)
        fetched, description = _on_cursor(
            conn, compiled.sql, compiled.arguments(params), many=False, fetch=True
        )
        readers = compiled.readers
        if readers is None:
            readers = compiled.learn_readers(description)
        if not readers:
            return [tuple(row) for row in fetched]
        out = []
        for row in fetched:
            values = list(row)
            for i, read in readers:
                values[i] = read(values[i])
            out.append(tuple(values))
        return out

    def first(self, conn: Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """The first row, or None. Meant for statements that return at most a few rows."""
        found = self.rows(conn, params)
        return found[0] if found else None

    def scalar(self, conn: Connection, params: Mapping[str, Any]) -> Any:
        """The first column of the first row, or None when there is no row."""
        row = self.first(conn, params)
        return None if row is None else row[0]


def _observed(conn: Connection) -> bool:
    dispatch = conn.engine.dispatch
    return bool(dispatch.before_cursor_execute or dispatch.after_cursor_execute)


def _on_cursor(
    conn: Connection, sql: str, arguments: Any, *, many: bool, fetch: bool
) -> tuple[Sequence[Any], Any]:
    """Run on a cursor of the connection; the rows fetched and their description if `fetch`."""
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        (cursor.executemany if many else cursor.execute)(sql, arguments)
        return (cursor.fetchall(), cursor.description) if fetch else ([], None)
    except conn.dialect.loaded_dbapi.Error as exc:
        # Wraps the driver's error in SQLAlchemy's class for it and invalidates a lost
        # connection, exactly as for statements SQLAlchemy ran itself; always raises.
        conn._handle_dbapi_exception(exc, sql, arguments, cursor, None)
        raise
    finally:
        cursor.close()
