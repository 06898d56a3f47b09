"""A SQLite index file through the standard library's :mod:`sqlite3` (no SQLAlchemy).

The embedded default opens, reads and writes its index with this alone, so a
command on it never imports SQLAlchemy; Alembic and SQLAlchemy are loaded only when
the schema is behind (see :meth:`SqlIndex.migrate`).

Each thread has two connections: a read-only one (every read, and the resolve path)
and a writing one (``BEGIN IMMEDIATE``: the write lock is taken when the transaction
starts, so two writers queue on the busy timeout instead of failing to upgrade a
read lock). Both are configured here and nowhere else.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from typing import Any

from sentenialx.hub.errors import StoreUnavailable
from sentenialx.hub.index.lowspace import low_space_reason, read_only_uri

BUSY_MS = 60_000
"""How long a writer waits for another writer's lock before the attempt fails."""


@lru_cache(maxsize=256)
def _row_type(fields: tuple[str, ...]) -> Any:
    return namedtuple("Row", fields, rename=True)  # noqa: PYI024 - built per column list


def _named_row(cur: sqlite3.Cursor, row: tuple[Any, ...]) -> Any:
    # Rows read by name and by position, as SQLAlchemy's rows are.
    return _row_type(tuple(d[0] for d in cur.description))._make(row)


def is_state_error(exc: BaseException) -> bool:
    """True for a failure of the database's state (locked, full, I/O, corrupt, gone).

    Constraint violations, misuse and bad SQL are bugs and are not translated.
    """
    return isinstance(exc, sqlite3.OperationalError) or type(exc) is sqlite3.DatabaseError


class SqliteTx:
    """One transaction on a stdlib connection; SQL text with ``:name`` parameters."""

    __slots__ = ("_cur",)

    def __init__(self, conn: sqlite3.Connection, *, named: bool = True) -> None:
        self._cur = conn.cursor()
        if named:
            self._cur.row_factory = _named_row

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every row of one statement."""
        return self._cur.execute(sql, params or {}).fetchall()

    def first(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """The first row, or None."""
        return self._cur.execute(sql, params or {}).fetchone()

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement; the number of rows it changed."""
        return self._cur.execute(sql, params or {}).rowcount

    def many(self, sql: str, seq: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement once per parameter set."""
        if seq:
            self._cur.executemany(sql, seq)


class SqliteFile:
    """The index file's connections and transactions (see module doc)."""

    def __init__(self, path: str, unavailable: Callable[[BaseException], StoreUnavailable]) -> None:
        self.path = path
        self._unavailable = unavailable
        # Set when a nearly full disk has the file read as an immutable snapshot (see
        # lowspace.py); every write then fails naming this reason.
        self.low_space = low_space_reason(path)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._readers: list[sqlite3.Connection] = []
        self._writers: list[sqlite3.Connection] = []

    # -- connections ----------------------------------------------------------------
    def _remember(self, conn: sqlite3.Connection, into: list[sqlite3.Connection]
                  ) -> sqlite3.Connection:
        with self._lock:
            into.append(conn)
        return conn

    def connect(self) -> sqlite3.Connection:
        """A new writing connection, configured (autocommit: BEGIN is issued by us).

        Raises:
            sqlite3.Error: the file cannot be opened.
        """
        if self.low_space:
            # Read from the main file alone: no -shm to create, nothing written.
            conn = sqlite3.connect(read_only_uri(self.path), uri=True, timeout=BUSY_MS / 1000,
                                   isolation_level=None, check_same_thread=False)
        else:
            conn = sqlite3.connect(self.path, timeout=BUSY_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
        if not self.low_space:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    def writer(self) -> sqlite3.Connection:
        """This thread's writing connection."""
        conn: sqlite3.Connection | None = getattr(self._local, "w", None)
        if conn is None:
            conn = self._local.w = self._remember(self.connect(), self._writers)
        return conn

    def reader(self) -> sqlite3.Connection:
        """This thread's read-only connection (plain tuple rows)."""
        conn: sqlite3.Connection | None = getattr(self._local, "r", None)
        if conn is None:
            # Read-only, and on a nearly full disk without a -shm to create (no SIGBUS).
            conn = sqlite3.connect(read_only_uri(self.path), uri=True, check_same_thread=False,
                                   isolation_level=None)
            conn.execute(f"PRAGMA busy_timeout={BUSY_MS}")
            conn = self._local.r = self._remember(conn, self._readers)
        return conn

    def close(self) -> None:
        """Close every connection this object opened, readers first.

        SQLite checkpoints and removes the WAL only when the last connection closes
        and that one can write, so the writers close last.
        """
        with self._lock:
            conns = self._readers + self._writers
            self._readers, self._writers = [], []
        self._local = threading.local()
        for conn in conns:
            conn.close()

    # -- transactions ---------------------------------------------------------------
    @contextmanager
    def transaction(self, *, write: bool, lock: bool = False,
                    named: bool = True) -> Iterator[SqliteTx]:
        """A transaction: ``BEGIN IMMEDIATE`` on the writer, or ``BEGIN`` on the reader.

        ``lock`` asks that writers be serialised, which ``BEGIN IMMEDIATE`` already does
        for every write here. ``named``: rows read by name as well as by position
        (plain tuples, a little faster, otherwise). Database failures inside become one
        :class:`StoreUnavailable` line.
        """
        try:
            conn = self.writer() if write else self.reader()
            self._begin(conn, "BEGIN IMMEDIATE" if write else "BEGIN")
        except sqlite3.Error as exc:
            if not is_state_error(exc):
                raise
            raise self._unavailable(exc) from None
        try:
            yield SqliteTx(conn, named=named)
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error:
                    # The connection is unusable; the next use opens a new one.
                    self._forget(conn)
            if isinstance(exc, sqlite3.Error) and is_state_error(exc):
                raise self._unavailable(exc) from None
            raise

    @staticmethod
    def _begin(conn: sqlite3.Connection, sql: str) -> None:
        # The busy timeout already waited for the lock; a writer that still finds it
        # taken (a long checkpoint, a writer between statements) tries again.
        for attempt in range(20):
            try:
                conn.execute(sql)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc).lower() or attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))

    def _forget(self, conn: sqlite3.Connection) -> None:
        for name in ("w", "r"):
            if getattr(self._local, name, None) is conn:
                setattr(self._local, name, None)
        with self._lock:
            for conns in (self._readers, self._writers):
                if conn in conns:
                    conns.remove(conn)
        conn.close()

    @contextmanager
    def snapshot(self) -> Iterator[Callable[[str, Mapping[str, Any]], list[Any]]]:
        """One read transaction as a ``query(sql, params) -> rows`` (plain tuples)."""
        with self.transaction(write=False, named=False) as tx:
            yield tx.rows

    def scalar(self, sql: str) -> Any:
        """The first column of the first row of one read (None when no row).

        Raises:
            StoreUnavailable: the file cannot be read.
        """
        try:
            row = self.reader().execute(sql).fetchone()
        except sqlite3.Error as exc:
            raise self._unavailable(exc) from None
        return row[0] if row else None

    def revision(self) -> str | None:
        """The schema revision recorded in the file, or None (no file, no schema yet)."""
        if not os.path.isfile(self.path) or os.path.getsize(self.path) == 0:
            return None
        try:
            row = self.reader().execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc).lower():
                return None
            raise self._unavailable(exc) from None
        except sqlite3.DatabaseError as exc:
            raise self._unavailable(exc) from None
        return str(row[0]) if row else None



__all__ = ["BUSY_MS", "SqliteFile", "SqliteTx", "is_state_error"]
