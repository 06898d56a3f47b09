"""The index through a SQLAlchemy engine: PostgreSQL, and SQLite while Alembic migrates it.

Imported only when a PostgreSQL index is opened or a schema is behind, so the
embedded default never pays for SQLAlchemy (see ``_sqlite.py``). The SQL is the
same text :class:`~sentenialx.hub.index.sql.SqlIndex` runs on SQLite.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sqlalchemy import Connection, Engine, TextClause, create_engine, event, text
from sqlalchemy import exc as sa_exc

from sentenialx.hub.errors import StoreUnavailable


@lru_cache(maxsize=512)
def _text(sql: str) -> TextClause:
    return text(sql)


class EngineTx:
    """One transaction on a SQLAlchemy connection; SQL text with ``:name`` parameters."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every row of one statement."""
        return list(self.conn.execute(_text(sql), dict(params or {})).all())

    def first(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """The first row, or None."""
        return self.conn.execute(_text(sql), dict(params or {})).first()

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement; the number of rows it changed."""
        return int(self.conn.execute(_text(sql), dict(params or {})).rowcount)

    def many(self, sql: str, seq: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement once per parameter set."""
        if seq:
            self.conn.execute(_text(sql), [dict(p) for p in seq])


class EngineDb:
    """A SQLAlchemy engine with the index's transaction rules.

    ``sqlite_connect`` (SQLite only) makes each pooled connection, configured as the
    stdlib path configures its own; ``BEGIN IMMEDIATE`` is then issued for writes.
    """

    def __init__(self, url: str, unavailable: Callable[[BaseException], StoreUnavailable], *,
                 sqlite_connect: Callable[[], Any] | None = None) -> None:
        self._unavailable = unavailable
        self.dialect = "sqlite" if sqlite_connect is not None else "postgresql"
        try:
            if sqlite_connect is not None:
                self.engine: Engine = create_engine(url, creator=sqlite_connect)

                @event.listens_for(self.engine, "begin")
                def _begin(conn: Connection) -> None:
                    conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options()
                                         .get("hub_write") else "BEGIN")
            else:
                # A server answers many requests at once; connections beyond the pool are
                # closed on return, so a burst larger than it reconnects every time.
                # Pre-ping keeps a restarted database from failing the first request.
                self.engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
        except sa_exc.NoSuchModuleError as exc:
            raise StoreUnavailable(f"cannot open index {url.split('@')[-1]}: {exc}; "
                                   "install `pip install 'sentenialx[postgres]'`") from None
        event.listen(self.engine, "handle_error", self._on_error)

    def _on_error(self, ctx: Any) -> None:
        # Engine-wide: a failure of the database itself becomes one hub error wherever the
        # engine is used. Left alone: pre-ping probes (the pool reconnects), lock and
        # serialisation errors (transaction() retries them), and a missing table (probe).
        if ctx.is_pre_ping or not isinstance(ctx.sqlalchemy_exception,
                                             sa_exc.OperationalError | sa_exc.InterfaceError):
            return
        low = str(ctx.original_exception).lower()
        if "locked" in low or "serializ" in low or "deadlock" in low or "no such table" in low:
            return
        raise self._unavailable(ctx.sqlalchemy_exception)

    @contextmanager
    def errors(self) -> Iterator[None]:
        """Database failures inside become one :class:`StoreUnavailable` line.

        Only errors of the database's state (OperationalError, InterfaceError, a dropped
        connection) are translated; constraint and SQL errors stay as they are (bugs).
        """
        try:
            yield
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            raise self._unavailable(exc) from None
        except sa_exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            raise self._unavailable(exc) from None

    @contextmanager
    def transaction(self, *, write: bool, lock: bool = False) -> Iterator[EngineTx]:
        """A transaction; with ``lock``, holding the ``hub_state`` row (writers queue on it).

        A serialisation failure or lock timeout before the body ran is retried.
        """
        for attempt in range(20):
            conn = None
            try:
                conn = self.engine.connect()
                if write:
                    conn = conn.execution_options(hub_write=True)
                tx = conn.begin()
                if lock and self.dialect == "postgresql":
                    conn.exec_driver_sql("SELECT generation FROM hub_state WHERE id = 1 FOR UPDATE")
                break
            except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
                if conn is not None:
                    conn.close()
                low = str(getattr(exc, "orig", exc)).lower()
                if ("locked" in low or "serializ" in low) and attempt < 19:
                    time.sleep(0.05 * (attempt + 1))
                    continue
                raise self._unavailable(exc) from None
        assert conn is not None  # the loop either broke with a connection or raised
        try:
            with self.errors():
                try:
                    yield EngineTx(conn)
                except BaseException:
                    if tx.is_active:
                        # The body's error is the one to report; a rollback that fails
                        # too (connection gone) has nothing to add, and the server
                        # discards an uncommitted transaction either way.
                        with contextlib.suppress(sa_exc.DBAPIError):
                            tx.rollback()
                    raise
                tx.commit()
        finally:
            conn.close()

    @contextmanager
    def snapshot(self) -> Iterator[Callable[[str, Mapping[str, Any]], list[Any]]]:
        """One read transaction as a ``query(sql, params) -> rows``."""
        with self.transaction(write=False) as tx:
            yield tx.rows

    def scalar(self, sql: str) -> Any:
        """The first column of the first row of one read, in one round trip (autocommit).

        Raises:
            StoreUnavailable: the database cannot be reached.
        """
        with self.errors(), self.engine.connect().execution_options(
                isolation_level="AUTOCOMMIT") as conn:
            row = conn.exec_driver_sql(sql).first()
        return row[0] if row else None

    def revision(self) -> str | None:
        """The schema revision recorded in the database, or None."""
        with self.errors(), self.engine.connect() as conn:
            try:
                row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
            except sa_exc.DBAPIError:
                conn.rollback()
                return None
            conn.rollback()
        return str(row[0]) if row else None

    def close(self) -> None:
        """Close the pooled connections."""
        self.engine.dispose()


__all__ = ["EngineDb", "EngineTx"]
