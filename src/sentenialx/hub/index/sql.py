"""The SQL index (SQLAlchemy Core) on SQLite or PostgreSQL.

Correctness under many writers rests on one rule: every write transaction first
takes the single ``hub_state`` row (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR
UPDATE`` on PostgreSQL) and bumps its generation. Writers are therefore
serialised, version allocation and alias compare-and-set see a stable world,
the event chain has one tail, and readers can tell from the generation alone
whether anything changed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    TextClause,
    and_,
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url

from sentenialx.hub.errors import (
    AlreadyExists,
    Conflict,
    NotFound,
    StoreUnavailable,
    one_line,
)
from sentenialx.hub.events import GENESIS, Event, chain
from sentenialx.hub.index import lookup
from sentenialx.hub.index import schema as S
from sentenialx.hub.index.base import dumps
from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.refs import Ref, Version
from sentenialx.hub.values import AliasInfo, AliasMove, VersionInfo


@lru_cache(maxsize=256)
def _text(sql: str) -> TextClause:
    return text(sql)


def _sa_query(c: Connection) -> lookup.Query:
    """A :data:`lookup.Query` over a SQLAlchemy connection (in its transaction)."""

    def q(sql: str, params: Mapping[str, Any]) -> Sequence[Any]:
        return c.execute(_text(sql), dict(params)).all()

    return q


def utcnow() -> str:
    """ISO-8601 UTC timestamp with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and pick psycopg 3 as the driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def idempotency_conflict(key: str, model: str, version: str) -> str:
    """The one-line refusal of a key reused for another request."""
    return (f"idempotency key {key[:80]!r} was used to register {model}@{version} from other"
            " inputs; nothing was stored (use a new key for a new registration)")


class SqlIndex:
    """The index on a SQL database (see module doc for the locking rule)."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        u = make_url(self.url)
        self.dialect = u.get_backend_name()
        self._sqlite_path = u.database if self.dialect == "sqlite" else None
        self._local = threading.local()
        # Set when a nearly full disk has us read the SQLite file as an immutable snapshot
        # (see index/lowspace.py); every write then fails with this reason.
        self._low_space: str | None = None
        try:
            with self._db_errors():
                self.engine = self._make_engine()
                self._ensure_schema()
        except sa_exc.NoSuchModuleError as exc:
            raise StoreUnavailable(f"cannot open index {self.safe_url}: {exc}; "
                                   "install `pip install 'sentenialx[postgres]'`") from None

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden."""
        return make_url(self.url).render_as_string(hide_password=True)

    # -- failures ---------------------------------------------------------------------
    @property
    def where(self) -> str:
        """What a failure names: the SQLite file, or the PostgreSQL URL without password."""
        if self._sqlite_path:
            return self._sqlite_path
        u = make_url(self.url)
        return u.set(drivername=u.get_backend_name()).render_as_string(hide_password=True)

    def unavailable(self, exc: BaseException) -> StoreUnavailable:
        """One line for a database failure: which database, what state, what to do."""
        orig = getattr(exc, "orig", None) or exc
        text = one_line(orig, limit=160)
        low = text.lower()
        code = str(getattr(orig, "sqlstate", "") or "")
        connect = "check --index and that the database is running, then try again"
        if "database or disk is full" in low or "no space left" in low or code == "53100":
            state, hint = "cannot be written: the disk is full", "free space there and try again"
        elif self._low_space and ("readonly database" in low or "read-only" in low):
            state, hint = f"cannot be written: {self._low_space}", "free space there and try again"
        elif "readonly database" in low or "read-only" in low or code == "25006":
            state, hint = "cannot be written: it is read-only", "make it writable or use a copy"
        elif "disk i/o error" in low:
            state, hint = "failed: disk I/O error", "check the disk (it may be full) and try again"
        elif "unable to open database file" in low:
            state, hint = "cannot be opened (unable to open database file)", \
                "check that its folder exists and is writable"
        elif "refused" in low:
            state, hint = "unreachable (connection refused)", connect
        elif "timeout" in low or "timed out" in low:
            state, hint = "unreachable (timed out)", connect
        elif "translate host name" in low or "name or service not known" in low:
            state, hint = "unreachable (host name not found)", connect
        elif "authentication failed" in low or code == "28P01":
            state, hint = "refused the login (authentication failed)", "check the user and password"
        elif (getattr(exc, "connection_invalidated", False) or code.startswith("08")
              or code.startswith("57P") or "closed the connection" in low
              or "terminating connection" in low or "connection" in low and "lost" in low):
            state, hint = "lost the connection", connect
        else:
            state, hint = f"failed ({text})", "try again"
        return StoreUnavailable(f"index {self.where} {state}; {hint}", where=self.where)

    @contextmanager
    def _db_errors(self) -> Iterator[None]:
        """Database failures inside become :meth:`unavailable`; in process, only hub errors.

        Only errors of the database's state (OperationalError, InterfaceError, a dropped
        connection) are translated; constraint and SQL errors stay as they are (bugs).
        """
        try:
            yield
        except (sa_exc.OperationalError, sa_exc.InterfaceError) as exc:
            raise self.unavailable(exc) from None
        except sa_exc.DBAPIError as exc:
            if not exc.connection_invalidated:
                raise
            raise self.unavailable(exc) from None

    def _on_error(self, ctx: Any) -> None:
        # Engine-wide: a failure of the database itself becomes one hub error wherever the
        # engine is used. Left alone: pre-ping probes (the pool reconnects), lock and
        # serialisation errors (write() retries them), and a missing table (schema probe).
        if ctx.is_pre_ping or not isinstance(ctx.sqlalchemy_exception,
                                             sa_exc.OperationalError | sa_exc.InterfaceError):
            return
        low = str(ctx.original_exception).lower()
        if "locked" in low or "serializ" in low or "deadlock" in low or "no such table" in low:
            return
        raise self.unavailable(ctx.sqlalchemy_exception)

    # -- engine -----------------------------------------------------------------------
    def _make_engine(self) -> Engine:
        engine = self._make_engine_for_dialect()
        event.listen(engine, "handle_error", self._on_error)
        return engine

    def _make_engine_for_dialect(self) -> Engine:
        if self.dialect == "sqlite":
            from sentenialx.hub.index.lowspace import low_space_reason, read_only_uri

            path = self._sqlite_path or ""
            self._low_space = low_space_reason(path)
            if self._low_space:
                # Read from the main file alone: no -shm to create, nothing written.
                uri = read_only_uri(path)
                engine = create_engine(self.url, creator=lambda: sqlite3.connect(
                    uri, uri=True, timeout=60, check_same_thread=False))
            else:
                engine = create_engine(self.url, connect_args={"timeout": 60,
                                                               "check_same_thread": False})
            snapshot = bool(self._low_space)

            @event.listens_for(engine, "connect")
            def _connect(dbapi_conn: Any, _rec: Any) -> None:
                # We issue BEGIN ourselves (pysqlite's implicit transactions defer locks
                # and turn concurrent writers into "database is locked" errors).
                dbapi_conn.isolation_level = None
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA busy_timeout=60000")
                if not snapshot:
                    cur.execute("PRAGMA journal_mode=WAL")
                    cur.execute("PRAGMA synchronous=FULL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

            @event.listens_for(engine, "begin")
            def _begin(conn: Connection) -> None:
                if conn.get_execution_options().get("hub_write"):
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                else:
                    conn.exec_driver_sql("BEGIN")

            return engine
        return create_engine(self.url, pool_pre_ping=True, pool_size=2, max_overflow=4)

    def _ensure_schema(self) -> None:
        with self.engine.connect() as conn:
            current = self._schema_revision(conn)
        if current == S.HEAD:
            return
        self.migrate()

    @staticmethod
    def _schema_revision(conn: Connection) -> str | None:
        try:
            row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        except sa_exc.DBAPIError:
            conn.rollback()
            return None
        conn.rollback()
        return row[0] if row else None

    def migrate(self) -> None:
        """Create or upgrade the schema with Alembic, then make sure the state row exists."""
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", os.path.join(os.path.dirname(__file__), "migrations"))
        lock = self._migration_lock()
        try:
            with self.engine.connect().execution_options(hub_write=True) as conn:
                with conn.begin():
                    if self.dialect == "postgresql":
                        # Two first-time openers must not both create tables.
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727372)")
                    cfg.attributes["connection"] = conn
                    if self._schema_revision_in_tx(conn) != S.HEAD:
                        command.upgrade(cfg, "head")
                    if conn.execute(select(S.hub_state.c.id)).first() is None:
                        conn.execute(insert(S.hub_state).values(
                            id=1, generation=0, updated_at=utcnow(), hub_id=uuid.uuid4().hex))
        finally:
            if lock is not None:
                lock.close()

    @staticmethod
    def _schema_revision_in_tx(conn: Connection) -> str | None:
        try:
            with conn.begin_nested():
                row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        except sa_exc.DBAPIError:
            return None
        return row[0] if row else None

    def _migration_lock(self) -> Any:
        # Only avoids wasted work when many processes open a new SQLite hub at once;
        # BEGIN IMMEDIATE above is what keeps the schema correct.
        if not self._sqlite_path or self._sqlite_path == ":memory:":
            return None
        import fcntl

        f = open(self._sqlite_path + ".lock", "a+")  # noqa: SIM115 - closed by caller
        fcntl.flock(f, fcntl.LOCK_EX)
        return f

    def dispose(self) -> None:
        """Close pooled connections (call before fork, or when done)."""
        # The read-only connection closes first: SQLite checkpoints and removes the WAL
        # only when the last connection closes and that one can write.
        conn = getattr(self._local, "raw", None)
        if conn is not None:
            conn.close()
            self._local.raw = None
        self.engine.dispose()

    # -- transactions -----------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read transaction."""
        with self._db_errors(), self.engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction that holds the hub_state row and bumps the generation."""
        for attempt in range(20):
            try:
                with self.engine.connect().execution_options(hub_write=True) as conn:
                    with conn.begin():
                        if self.dialect == "postgresql":
                            conn.execute(select(S.hub_state.c.generation)
                                         .where(S.hub_state.c.id == 1).with_for_update())
                        conn.execute(update(S.hub_state).where(S.hub_state.c.id == 1).values(
                            generation=S.hub_state.c.generation + 1, updated_at=utcnow()))
                        yield conn
                return
            except sa_exc.OperationalError as exc:
                # A serialisation failure or a lock timeout: nothing was committed.
                if "locked" in str(exc.orig).lower() or "serializ" in str(exc.orig).lower():
                    if attempt < 19:
                        time.sleep(0.05 * (attempt + 1))
                        continue
                raise self.unavailable(exc) from None
            except (sa_exc.InterfaceError, sqlite3.Error) as exc:
                raise self.unavailable(exc) from None

    def generation(self) -> int:
        """The hub's change counter; cheap enough to call on every resolve."""
        if self._sqlite_path and self._sqlite_path != ":memory:":
            # try/except, not _db_errors(): this runs on every resolve, cached ones too.
            try:
                row = self._raw().execute("SELECT generation FROM hub_state WHERE id=1").fetchone()
            except sqlite3.Error as exc:
                raise self.unavailable(exc) from None
            return int(row[0]) if row else 0
        with self.read() as c:
            return int(c.execute(select(S.hub_state.c.generation)).scalar_one())

    def _raw(self) -> sqlite3.Connection:
        """This thread's read-only stdlib connection to the SQLite file (reads only)."""
        conn: sqlite3.Connection | None = getattr(self._local, "raw", None)
        if conn is None:
            from sentenialx.hub.index.lowspace import read_only_uri

            assert self._sqlite_path is not None  # callers check it is a SQLite file
            # Read-only, and on a nearly full disk without a -shm to create (no SIGBUS).
            conn = sqlite3.connect(read_only_uri(self._sqlite_path), uri=True,
                                   check_same_thread=False, isolation_level=None)
            conn.execute("PRAGMA busy_timeout=60000")
            self._local.raw = conn
        return conn

    @contextmanager
    def snapshot(self) -> Iterator[lookup.Query]:
        """A read transaction as a :data:`lookup.Query`: one consistent view of the index.

        A SQLite file is read through this thread's stdlib connection, which skips
        SQLAlchemy's per-statement cost on the resolve path; other databases through
        the engine. Both run the same SQL.
        """
        if not self._sqlite_path or self._sqlite_path == ":memory:":
            with self.read() as c:
                yield _sa_query(c)
            return
        try:
            conn = self._raw()
            conn.execute("BEGIN")
        except sqlite3.Error as exc:
            raise self.unavailable(exc) from None

        def q(sql: str, params: Mapping[str, Any]) -> list[Any]:
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise self.unavailable(exc) from None

        try:
            yield q
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    def state(self) -> dict[str, Any]:
        """Generation, last update time and the hub's id."""
        with self.read() as c:
            row = c.execute(select(S.hub_state)).one()
        return {"generation": row.generation, "updated_at": row.updated_at, "hub_id": row.hub_id}

    # -- versions ---------------------------------------------------------------------
    def reserve_version(
        self,
        model: str,
        *,
        version: str | None,
        bump: str | None,
        stem_for: Any,
        layout: str,
        meta: dict[str, Any],
        lineage: dict[str, Any],
        actor: str,
    ) -> VersionInfo:
        """Allocate a version number and insert it as ``pending``.

        ``stem_for(version) -> str`` gives the on-disk stem. The next free version
        is computed inside the write transaction, so two writers never get the same.

        Raises:
            AlreadyExists: an explicit version is already registered.
            Conflict: the version is being registered right now by another writer.
        """
        with self.write() as c:
            rows = c.execute(select(S.versions.c.version, S.versions.c.state)
                             .where(S.versions.c.model == model)).all()
            existing = {r.version: r.state for r in rows}
            if version is not None:
                v = Version.parse(version)
                if str(v) in existing:
                    if existing[str(v)] == "pending":
                        raise Conflict(f"{model}@{v} is being registered by another writer (or a"
                                       " crashed one: run `sentenialx models gc`)")
                    raise AlreadyExists(f"{model}@{v} already exists; versions are immutable, use"
                                        " --bump or a new --version")
            else:
                if existing:
                    top = max((Version.parse(x) for x in existing), key=Version.sort_key)
                    v = top.bump(bump or "patch")
                else:
                    v = Version(1, 0, 0)
            now = utcnow()
            stem = stem_for(str(v))
            res = c.execute(insert(S.versions).values(
                model=model, version=str(v), sort_key=v.index_key(), major=v.major,
                minor=v.minor, patch=v.patch,
                is_release=0 if v.prerelease else 1, state="pending", revoked=False,
                revoke_reason=None, digest=None, stem=stem, layout=layout, meta=dumps(meta),
                lineage=dumps(lineage), size=0, created_at=now, created_by=actor))
            pk = res.inserted_primary_key
            assert pk is not None
            vid = int(pk[0])
        return VersionInfo(vid, model, str(v), "pending", False, None, None, stem, layout, meta,
                           lineage, 0, now, actor)

    def complete_version(
        self,
        vid: int,
        *,
        files: Sequence[FileEntry],
        digest: str,
        event_kind: str,
        event_payload: dict[str, Any],
        actor: str,
        alias: str | None = None,
        idempotency: tuple[str, str] | None = None,
    ) -> VersionInfo:
        """Mark a pending version ready with its files, append the event, optionally set an alias.

        ``idempotency`` is ``(key, request_digest)``: the key is recorded in the same
        transaction, so it names a version exactly when that version is ready. When the
        key is already recorded (a concurrent attempt of the same request won), nothing
        is completed and the earlier version is returned; the caller tells them apart by
        ``id`` and drops its own pending row.

        Raises:
            NotFound: the pending row vanished (gc removed it as stale).
            Conflict: the key is recorded for another request.
        """
        with self.write() as c:
            if idempotency is not None:
                earlier = self._idempotent(c, idempotency[0])
                if earlier is not None:
                    return self._replay(c, idempotency, earlier)
            row = c.execute(select(S.versions).where(S.versions.c.id == vid)).first()
            if row is None or row.state != "pending":
                raise NotFound(f"pending version #{vid} vanished before it completed (was it"
                               " garbage-collected as stale?); register again", what="version")
            c.execute(update(S.versions).where(S.versions.c.id == vid).values(
                state="ready", digest=digest, size=sum(f.size for f in files)))
            if files:
                c.execute(insert(S.files), [
                    {"version_id": vid, "path": f.path, "size": f.size, "sha256": f.sha256,
                     "role": f.role} for f in files])
            self._append_event(c, event_kind, row.model, row.version, actor, event_payload)
            if alias:
                self._set_alias(c, row.model, alias, row.version, expect=None, actor=actor)
            if idempotency is not None:
                c.execute(insert(S.idempotency).values(
                    key=idempotency[0], version_id=vid, model=row.model, version=row.version,
                    request_digest=idempotency[1], created_at=utcnow()))
            info = self._version_from_row(c, c.execute(
                select(S.versions).where(S.versions.c.id == vid)).one())
        return info

    def idempotent_version(self, key: str) -> tuple[str, VersionInfo] | None:
        """The request digest and the version an idempotency key was recorded with, or None."""
        with self.read() as c:
            row = self._idempotent(c, key)
            if row is None:
                return None
            v = c.execute(select(S.versions).where(S.versions.c.id == row.version_id)).one()
            return str(row.request_digest), self._version_from_row(c, v)

    @staticmethod
    def _idempotent(c: Connection, key: str) -> Any:
        return c.execute(select(S.idempotency).where(S.idempotency.c.key == key)).first()

    def _replay(self, c: Connection, idempotency: tuple[str, str], earlier: Any) -> VersionInfo:
        key, digest = idempotency
        if earlier.request_digest != digest:
            raise Conflict(idempotency_conflict(key, earlier.model, earlier.version))
        v = c.execute(select(S.versions).where(S.versions.c.id == earlier.version_id)).one()
        return self._version_from_row(c, v)

    def abort_version(self, vid: int) -> None:
        """Remove a pending row (its files are the caller's to remove)."""
        with self.write() as c:
            c.execute(delete(S.versions).where(and_(S.versions.c.id == vid,
                                                    S.versions.c.state == "pending")))

    def _version_from_row(self, c: Connection, row: Any, *, with_files: bool = True) -> VersionInfo:
        files: tuple[FileEntry, ...] = ()
        if with_files:
            frows = c.execute(select(S.files).where(S.files.c.version_id == row.id)
                              .order_by(S.files.c.path)).all()
            files = tuple(FileEntry(f.path, int(f.size), f.sha256, f.role) for f in frows)
        return VersionInfo(
            int(row.id), row.model, row.version, row.state, bool(row.revoked), row.revoke_reason,
            row.digest, row.stem, row.layout, json.loads(row.meta), json.loads(row.lineage),
            int(row.size), row.created_at, row.created_by, files)

    # -- reads: the rules are sentenialx.hub.index.lookup's, run in one snapshot -----------
    def get_version(self, model: str, version: str, *, include_pending: bool = False) -> VersionInfo:
        """One version with its files.

        Raises:
            NotFound: no such version.
        """
        with self.snapshot() as q:
            return lookup.get_version(q, model, version, include_pending=include_pending)

    def _missing_version_msg(self, c: Connection, model: str, version: str) -> str:
        return lookup.missing_version_msg(_sa_query(c), model, version)

    def _missing_model_msg(self, c: Connection, model: str) -> str:
        return lookup.missing_model_msg(_sa_query(c), model)

    def list_versions(self, model: str, *, include_revoked: bool = True,
                      with_files: bool = False) -> list[VersionInfo]:
        """All ready versions of a model, in semver order (oldest first).

        Raises:
            NotFound: the model has no versions.
        """
        with self.snapshot() as q:
            return lookup.list_versions(q, model, include_revoked=include_revoked,
                                        with_files=with_files)

    def latest(self, model: str) -> VersionInfo:
        """The highest non-revoked ready version by semver precedence.

        Raises:
            NotFound: the model has no resolvable version.
        """
        with self.snapshot() as q:
            return lookup.latest(q, model)

    def by_digest(self, model: str, prefix: str) -> VersionInfo:
        """The version whose digest starts with ``prefix``.

        Raises:
            NotFound: none matches.
            InvalidInput: the prefix is ambiguous.
        """
        with self.snapshot() as q:
            return lookup.by_digest(q, model, prefix)

    def resolve_ref(self, ref: Ref, *, include_revoked: bool = False) -> VersionInfo:
        """The ready version ``ref`` names, in one snapshot (see :func:`lookup.resolve`).

        Raises:
            NotFound: nothing matches, or it is revoked and ``include_revoked`` is False.
            InvalidInput: a digest prefix is ambiguous.
        """
        with self.snapshot() as q:
            return lookup.resolve(q, ref, include_revoked=include_revoked)

    def models(self) -> list[dict[str, Any]]:
        """Every model with its version count, latest version and aliases."""
        with self.snapshot() as q:
            return lookup.models(q)

    def set_revoked(self, model: str, version: str, *, revoked: bool, reason: str | None,
                    actor: str) -> None:
        """Revoke or un-revoke a version and record the event.

        Raises:
            NotFound: no such version.
        """
        with self.write() as c:
            n = c.execute(update(S.versions).where(and_(
                S.versions.c.model == model, S.versions.c.version == version,
                S.versions.c.state == "ready")).values(revoked=revoked, revoke_reason=reason)).rowcount
            if not n:
                raise NotFound(self._missing_version_msg(c, model, version), what="version")
            self._append_event(c, "revoke" if revoked else "unrevoke", model, version, actor,
                               {"reason": reason} if reason else {})

    def delete_version(self, model: str, version: str, *, actor: str) -> VersionInfo:
        """Remove a version's rows (files go after, see Hub.delete) and record the event.

        Raises:
            NotFound: no such version.
            Conflict: an alias still points at it.
        """
        with self.write() as c:
            row = c.execute(select(S.versions).where(and_(
                S.versions.c.model == model, S.versions.c.version == version,
                S.versions.c.state == "ready"))).first()
            if row is None:
                raise NotFound(self._missing_version_msg(c, model, version), what="version")
            names = [a.alias for a in c.execute(select(S.aliases.c.alias).where(and_(
                S.aliases.c.model == model, S.aliases.c.version == version))).all()]
            if names:
                raise Conflict(f"{model}@{version} is still named by alias {', '.join(names)};"
                               " move or remove the alias first")
            info = self._version_from_row(c, row)
            c.execute(delete(S.files).where(S.files.c.version_id == row.id))
            c.execute(delete(S.versions).where(S.versions.c.id == row.id))
            self._append_event(c, "delete", model, version, actor, {"digest": row.digest})
        return info

    def pending_versions(self) -> list[VersionInfo]:
        """Versions whose registration has not completed (in progress or crashed)."""
        with self.read() as c:
            rows = c.execute(select(S.versions).where(S.versions.c.state == "pending")).all()
            return [self._version_from_row(c, r, with_files=False) for r in rows]

    def remove_stale_pending(self, vid: int, *, created_before: str) -> bool:
        """Delete a pending row if it is older than ``created_before``; True if deleted."""
        with self.write() as c:
            n = c.execute(delete(S.versions).where(and_(
                S.versions.c.id == vid, S.versions.c.state == "pending",
                S.versions.c.created_at < created_before))).rowcount
        return bool(n)

    def all_ready_versions(self) -> list[VersionInfo]:
        """Every ready version with its files (for verify, fsck, gc)."""
        with self.read() as c:
            vrows = c.execute(select(S.versions).where(S.versions.c.state == "ready")).all()
            frows = c.execute(select(S.files)).all()
        by: dict[int, list[FileEntry]] = {}
        for f in frows:
            by.setdefault(int(f.version_id), []).append(FileEntry(f.path, int(f.size), f.sha256, f.role))
        out = []
        for r in vrows:
            out.append(VersionInfo(
                int(r.id), r.model, r.version, r.state, bool(r.revoked), r.revoke_reason, r.digest,
                r.stem, r.layout, json.loads(r.meta), json.loads(r.lineage), int(r.size),
                r.created_at, r.created_by, tuple(sorted(by.get(int(r.id), []), key=lambda f: f.path))))
        return out

    def find_file_by_sha(self, sha256: str, size: int) -> tuple[str, str] | None:
        """(model, path) of a stored file with these bytes, for dedup."""
        with self.read() as c:
            row = c.execute(select(S.versions.c.model, S.files.c.path).join(
                S.versions, S.versions.c.id == S.files.c.version_id).where(and_(
                    S.files.c.sha256 == sha256, S.files.c.size == size,
                    S.versions.c.state == "ready")).limit(1)).first()
        return (row.model, row.path) if row else None

    def find_files_by_sha(self, sha256: str, size: int, *, limit: int = 200
                          ) -> list[tuple[str, str]]:
        """(model, path) of up to ``limit`` files of ready versions with these bytes, oldest first."""
        with self.read() as c:
            rows = c.execute(select(S.versions.c.model, S.files.c.path).join(
                S.versions, S.versions.c.id == S.files.c.version_id).where(and_(
                    S.files.c.sha256 == sha256, S.files.c.size == size,
                    S.versions.c.state == "ready")).order_by(S.files.c.version_id)
                .limit(limit)).all()
        return [(r.model, r.path) for r in rows]

    # -- aliases ----------------------------------------------------------------------
    def set_alias(self, model: str, alias: str, version: str, *, expect: str | None,
                  actor: str, kind: str = "alias", extra: dict[str, Any] | None = None) -> str | None:
        """Point ``alias`` at ``version``; with ``expect``, only if it points there now.

        ``expect=""`` means "the alias must not exist yet". Returns the previous version.

        Raises:
            NotFound: the version does not exist.
            Conflict: the alias moved since the caller looked.
        """
        with self.write() as c:
            return self._set_alias(c, model, alias, version, expect=expect, actor=actor,
                                   kind=kind, extra=extra)

    def _set_alias(self, c: Connection, model: str, alias: str, version: str, *,
                   expect: str | None, actor: str, kind: str = "alias",
                   extra: dict[str, Any] | None = None) -> str | None:
        row = c.execute(select(S.versions.c.state, S.versions.c.revoked).where(and_(
            S.versions.c.model == model, S.versions.c.version == version))).first()
        if row is None or row.state != "ready":
            raise NotFound(self._missing_version_msg(c, model, version), what="version")
        cur = c.execute(select(S.aliases.c.version).where(and_(
            S.aliases.c.model == model, S.aliases.c.alias == alias))).first()
        previous = cur.version if cur else None
        if expect is not None and (previous or "") != expect:
            raise Conflict(f"alias {model}@{alias} points at {previous or 'nothing'},"
                           f" not {expect or 'nothing'}:"
                           " another writer moved it first; look again and retry")
        now = utcnow()
        if cur:
            c.execute(update(S.aliases).where(and_(S.aliases.c.model == model,
                                                   S.aliases.c.alias == alias))
                      .values(version=version, updated_at=now, updated_by=actor))
        else:
            c.execute(insert(S.aliases).values(model=model, alias=alias, version=version,
                                               updated_at=now, updated_by=actor))
        c.execute(insert(S.alias_history).values(model=model, alias=alias, version=version,
                                                 previous=previous, ts=now, actor=actor))
        payload: dict[str, Any] = {"alias": alias, "previous": previous}
        if extra:
            payload.update(extra)
        self._append_event(c, kind, model, version, actor, payload)
        return previous

    def remove_alias(self, model: str, alias: str, *, expect: str | None, actor: str) -> str:
        """Remove an alias; returns the version it pointed at.

        Raises:
            NotFound: no such alias.
            Conflict: it moved since the caller looked.
        """
        with self.write() as c:
            cur = c.execute(select(S.aliases.c.version).where(and_(
                S.aliases.c.model == model, S.aliases.c.alias == alias))).first()
            if cur is None:
                raise NotFound(f"alias {model}@{alias} not found", what="alias")
            if expect is not None and cur.version != expect:
                raise Conflict(f"alias {model}@{alias} points at {cur.version}, not {expect}")
            c.execute(delete(S.aliases).where(and_(S.aliases.c.model == model,
                                                   S.aliases.c.alias == alias)))
            c.execute(insert(S.alias_history).values(model=model, alias=alias, version=None,
                                                     previous=cur.version, ts=utcnow(), actor=actor))
            self._append_event(c, "alias-remove", model, cur.version, actor, {"alias": alias})
            return str(cur.version)

    def get_alias(self, model: str, alias: str) -> AliasInfo:
        """Where an alias points.

        Raises:
            NotFound: no such alias.
        """
        with self.snapshot() as q:
            return lookup.get_alias(q, model, alias)

    def list_aliases(self, model: str | None = None) -> list[AliasInfo]:
        """All aliases, or a model's."""
        with self.snapshot() as q:
            return lookup.list_aliases(q, model)

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of a model's aliases, oldest first."""
        with self.read() as c:
            q = select(S.alias_history).where(S.alias_history.c.model == model)
            if alias:
                q = q.where(S.alias_history.c.alias == alias)
            rows = c.execute(q.order_by(S.alias_history.c.id)).all()
        return [AliasMove(r.id, r.model, r.alias, r.version, r.previous, r.ts, r.actor) for r in rows]

    # -- events -----------------------------------------------------------------------
    def _append_event(self, c: Connection, kind: str, model: str, version: str, actor: str,
                      payload: dict[str, Any]) -> Event:
        row = c.execute(select(S.events).order_by(S.events.c.seq.desc()).limit(1)).first()
        prev = self._event_from_row(row) if row else None
        ev = chain(prev, ts=utcnow(), kind=kind, model=model, version=version, actor=actor,
                   payload=payload)
        c.execute(insert(S.events).values(seq=ev.seq, ts=ev.ts, kind=ev.kind, model=ev.model,
                                          version=ev.version, actor=ev.actor,
                                          payload=json.dumps(ev.payload, sort_keys=True),
                                          prev_hash=ev.prev_hash, hash=ev.hash))
        return ev

    def append_event(self, kind: str, model: str, version: str, *, actor: str,
                     payload: dict[str, Any]) -> Event:
        """Append one event in its own write transaction."""
        with self.write() as c:
            return self._append_event(c, kind, model, version, actor, payload)

    @staticmethod
    def _event_from_row(row: Any) -> Event:
        return Event(int(row.seq), row.ts, row.kind, row.model, row.version, row.actor,
                     json.loads(row.payload), row.prev_hash, row.hash)

    def events(self, *, model: str | None = None, limit: int | None = None) -> list[Event]:
        """Events oldest first (the whole chain unless filtered)."""
        with self.read() as c:
            q = select(S.events)
            if model:
                q = q.where(S.events.c.model == model)
            q = q.order_by(S.events.c.seq)
            rows = c.execute(q).all()
        evs = [self._event_from_row(r) for r in rows]
        return evs[-limit:] if limit else evs

    def last_event(self, kind: str, *, model: str | None = None) -> Event | None:
        """The newest event of a kind (optionally of one model)."""
        with self.read() as c:
            q = select(S.events).where(S.events.c.kind == kind)
            if model is not None:
                q = q.where(S.events.c.model == model)
            row = c.execute(q.order_by(S.events.c.seq.desc()).limit(1)).first()
        return self._event_from_row(row) if row else None

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest event, (0, GENESIS) when empty."""
        with self.read() as c:
            row = c.execute(select(S.events.c.seq, S.events.c.hash)
                            .order_by(S.events.c.seq.desc()).limit(1)).first()
        return (int(row.seq), row.hash) if row else (0, GENESIS)

    # -- stat cache -------------------------------------------------------------------
    def stat_cache(self) -> dict[str, tuple[int, int, int, int, str]]:
        """``{path: (size, mtime_ns, ino, ctime_ns, sha256)}`` for files verified before."""
        with self.read() as c:
            rows = c.execute(select(S.stat_cache)).all()
        return {r.path: (int(r.size), int(r.mtime_ns), int(r.ino), int(r.ctime_ns), r.sha256)
                for r in rows}

    def stat_cache_get(self, paths: Sequence[str]) -> dict[str, tuple[int, int, int, int, str]]:
        """Cached stats for some paths only."""
        out: dict[str, tuple[int, int, int, int, str]] = {}
        with self.read() as c:
            for i in range(0, len(paths), 500):
                for r in c.execute(select(S.stat_cache).where(
                        S.stat_cache.c.path.in_(list(paths[i:i + 500])))).all():
                    out[r.path] = (int(r.size), int(r.mtime_ns), int(r.ino), int(r.ctime_ns), r.sha256)
        return out

    def stat_cache_put(self, rows: Sequence[tuple[str, int, int, int, int, str]]) -> None:
        """Record (path, size, mtime_ns, ino, ctime_ns, sha256) of files just hashed.

        This is a cache, not history: it does not take the write lock or bump the generation.
        """
        if not rows:
            return
        if self.dialect == "postgresql":
            # Two processes verifying the same files at once must not collide on a path:
            # upsert, one row per path, in path order, so concurrent upserts take their row
            # locks in the same order (no deadlock).
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            latest = {r[0]: r for r in rows}
            stmt = pg_insert(S.stat_cache)
            cols = ("size", "mtime_ns", "ino", "ctime_ns", "sha256")
            stmt = stmt.on_conflict_do_update(index_elements=["path"],
                                              set_={k: stmt.excluded[k] for k in cols})
            with self.engine.begin() as c:
                c.execute(stmt, [{"path": p, "size": sz, "mtime_ns": m, "ino": ino, "ctime_ns": ct,
                                  "sha256": h} for p, sz, m, ino, ct, h in
                                 (latest[k] for k in sorted(latest))])
            return
        paths = [r[0] for r in rows]
        with self.engine.connect().execution_options(hub_write=True) as c:
            with c.begin():
                for i in range(0, len(paths), 500):
                    c.execute(delete(S.stat_cache).where(S.stat_cache.c.path.in_(paths[i:i + 500])))
                c.execute(insert(S.stat_cache), [
                    {"path": p, "size": s, "mtime_ns": m, "ino": ino, "ctime_ns": ct, "sha256": h}
                    for p, s, m, ino, ct, h in rows])

    def stat_cache_clear(self) -> None:
        """Forget every cached stat."""
        with self.engine.connect().execution_options(hub_write=True) as c:
            with c.begin():
                c.execute(delete(S.stat_cache))

    def count_versions(self) -> int:
        """Number of ready versions."""
        with self.read() as c:
            return int(c.execute(select(func.count()).select_from(S.versions).where(
                S.versions.c.state == "ready")).scalar_one())

    # == API tokens (migration 0002) =====================================================
    # Rows of the ``tokens`` table as plain dicts; the rules (scopes, hashing, expiry)
    # live in sentenialx.hub._tokens. Names stay unique forever (revoked rows are kept)
    # so ``token:<name>`` in the history always means one token.
    @staticmethod
    def _token_row(row: Any) -> dict[str, Any]:
        return {"name": row.name, "scope": row.scope,
                "models": json.loads(row.models) if row.models is not None else None,
                "created_at": row.created_at, "created_by": row.created_by,
                "expires_at": row.expires_at, "revoked_at": row.revoked_at,
                "last_used_at": row.last_used_at}

    def create_token(self, name: str, *, token_sha256: str, scope: str,
                     models: Sequence[str] | None, created_by: str,
                     expires_at: str | None) -> dict[str, Any]:
        """Add a token row (only the secret's sha256); returns the row.

        Raises:
            AlreadyExists: a token (active or revoked) already has this name.
        """
        now = utcnow()
        with self.write() as c:
            if c.execute(select(S.tokens.c.id).where(S.tokens.c.name == name)).first():
                raise AlreadyExists(f"a token named {name!r} exists (or existed: names of"
                                    " revoked tokens are not reused); pick another name")
            c.execute(insert(S.tokens).values(
                name=name, token_sha256=token_sha256, scope=scope,
                models=json.dumps(list(models)) if models is not None else None,
                created_at=now, created_by=created_by, expires_at=expires_at,
                revoked_at=None, last_used_at=None))
            row = c.execute(select(S.tokens).where(S.tokens.c.name == name)).one()
        return self._token_row(row)

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token row, oldest first."""
        with self.read() as c:
            rows = c.execute(select(S.tokens).order_by(S.tokens.c.id)).all()
        return [self._token_row(r) for r in rows]

    def revoke_token(self, name: str) -> dict[str, Any]:
        """Mark a token revoked now; returns its row.

        Raises:
            NotFound: no token has this name, or it is already revoked.
        """
        with self.write() as c:
            row = c.execute(select(S.tokens).where(S.tokens.c.name == name)).first()
            if row is None or row.revoked_at is not None:
                known = [r.name for r in c.execute(select(S.tokens.c.name).where(
                    S.tokens.c.revoked_at.is_(None))).all()]
                state = "is already revoked" if row is not None else "not found"
                raise NotFound(f"token {name!r} {state}; active tokens:"
                               f" {', '.join(known) or 'none'}", what="token", name=name)
            c.execute(update(S.tokens).where(S.tokens.c.id == row.id)
                      .values(revoked_at=utcnow()))
            row = c.execute(select(S.tokens).where(S.tokens.c.id == row.id)).one()
        return self._token_row(row)

    def find_token_by_hash(self, token_sha256: str) -> dict[str, Any] | None:
        """The token row whose secret hashes to ``token_sha256``, or None."""
        with self.read() as c:
            row = c.execute(select(S.tokens).where(
                S.tokens.c.token_sha256 == token_sha256)).first()
        return self._token_row(row) if row is not None else None

    def touch_token(self, name: str) -> None:
        """Record that a token was just used, best effort.

        ``last_used_at`` is a hint for ``token list``, not history: no generation bump
        (that would empty every resolve cache), and a busy index never fails a request.
        """
        try:
            with self.engine.connect().execution_options(hub_write=True) as c:
                with c.begin():
                    c.execute(update(S.tokens).where(S.tokens.c.name == name)
                              .values(last_used_at=utcnow()))
        except sa_exc.SQLAlchemyError:
            return

