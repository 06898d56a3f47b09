"""The SQL index on SQLite or PostgreSQL: one set of SQL, two drivers.

Correctness under many writers rests on one rule: every write transaction first
takes the single ``hub_state`` row (``BEGIN IMMEDIATE`` on SQLite, ``SELECT ... FOR
UPDATE`` on PostgreSQL) and bumps its generation. Writers are therefore
serialised, version allocation and alias compare-and-set see a stable world,
the event chain has one tail, and readers can tell from the generation alone
whether anything changed.

Every statement is SQL text with ``:name`` parameters, which :mod:`sqlite3` and
SQLAlchemy's ``text()`` both understand, run through a :class:`Tx`. A SQLite file is
driven by the standard library (``_sqlite.py``), so a command on the embedded
default imports neither SQLAlchemy nor Alembic; PostgreSQL goes through a SQLAlchemy
engine (``_engine.py``). Alembic runs only when a schema is behind (:meth:`SqlIndex.migrate`).
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

from sentenialx.hub.errors import (
    AlreadyExists,
    Conflict,
    HubError,
    NotFound,
    StoreUnavailable,
    one_line,
)
from sentenialx.hub.events import GENESIS, Event, chain
from sentenialx.hub.index import SCHEMA_HEAD, lookup
from sentenialx.hub.index.base import dumps
from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.refs import Ref, Version
from sentenialx.hub.values import AliasInfo, AliasMove, VersionInfo

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from sentenialx.hub.index._engine import EngineDb
    from sentenialx.hub.index._sqlite import SqliteFile


class Tx(Protocol):
    """One transaction: SQL text with ``:name`` parameters; rows read by name or position."""

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Every row of one statement."""

    def first(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """The first row, or None."""

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run a statement; the number of rows it changed."""

    def many(self, sql: str, seq: Sequence[Mapping[str, Any]]) -> None:
        """Run one statement once per parameter set."""


def utcnow() -> str:
    """ISO-8601 UTC timestamp with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def normalise_url(url: str) -> str:
    """Accept ``postgresql://`` and pick psycopg 3 as the driver."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///PATH`` URL (``sqlite:////abs`` for an absolute one), else None."""
    if not url.startswith("sqlite:"):
        return None
    rest = url[len("sqlite:"):]
    if not rest.startswith("///"):
        return ":memory:" if rest in ("", "//") else None
    path = rest[3:].split("?", 1)[0]
    return path or ":memory:"


def idempotency_conflict(key: str, model: str, version: str) -> str:
    """The one-line refusal of a key reused for another request."""
    return (f"idempotency key {key[:80]!r} was used to register {model}@{version} from other"
            " inputs; nothing was stored (use a new key for a new registration)")


# Every version column, in lookup.VCOLS order (so lookup.version_from_row reads the row).
_VERSION = f"SELECT {lookup.VCOLS} FROM versions"
_EVENT = "SELECT seq, ts, kind, model, version, actor, payload, prev_hash, hash FROM events"
_TOKEN = ("SELECT id, name, scope, models, created_at, created_by, expires_at, revoked_at,"
          " last_used_at FROM tokens")
_STAT = "SELECT path, size, mtime_ns, ino, ctime_ns, sha256 FROM stat_cache"
_BUMP = "UPDATE hub_state SET generation = generation + 1, updated_at = :now WHERE id = 1"


class SqlIndex:
    """The index on a SQL database (see module doc for the locking rule)."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        self._sqlite_path = sqlite_path(self.url)
        self.dialect = "sqlite" if self._sqlite_path is not None else "postgresql"
        self._engine_db: EngineDb | None = None
        self._file: SqliteFile | None = None
        if self._sqlite_path is not None:
            from sentenialx.hub.index._sqlite import SqliteFile

            if self._sqlite_path == ":memory:":
                # Each connection would see its own empty database.
                raise StoreUnavailable("index sqlite:///:memory: cannot hold a hub; give a file,"
                                       " e.g. sqlite:///registry.db")
            self._file = SqliteFile(self._sqlite_path, self.unavailable)
            self._db: SqliteFile | EngineDb = self._file
        else:
            self._engine_db = self._db = self._make_engine_db()
        self._ensure_schema()

    @property
    def _low_space(self) -> str | None:
        return self._file.low_space if self._file is not None else None

    @property
    def safe_url(self) -> str:
        """The URL with any password hidden."""
        if self._sqlite_path is not None:
            return self.url
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    # -- failures ---------------------------------------------------------------------
    @property
    def where(self) -> str:
        """What a failure names: the SQLite file, or the PostgreSQL URL without password."""
        if self._sqlite_path:
            return self._sqlite_path
        from sqlalchemy.engine import make_url

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
        elif "file is not a database" in low or "malformed" in low:
            state, hint = f"is corrupt ({text})", "restore it from a backup"
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

    # -- drivers ----------------------------------------------------------------------
    def _make_engine_db(self) -> EngineDb:
        from sentenialx.hub.index._engine import EngineDb

        if self._file is not None:
            return EngineDb(self.url, self.unavailable, sqlite_connect=self._file.connect)
        return EngineDb(self.url, self.unavailable)

    @property
    def engine(self) -> Engine:
        """A SQLAlchemy engine on this index (made on first use for a SQLite file)."""
        if self._engine_db is None:
            self._engine_db = self._make_engine_db()
        return self._engine_db.engine

    def _ensure_schema(self) -> None:
        if self._db.revision() != SCHEMA_HEAD:
            self.migrate()

    def migrate(self) -> None:
        """Create or upgrade the schema with Alembic, then make sure the state row exists."""
        from alembic import command
        from alembic.config import Config
        from sqlalchemy import text

        cfg = Config()
        cfg.set_main_option("script_location", os.path.join(os.path.dirname(__file__), "migrations"))
        lock = self._migration_lock()
        try:
            self.engine  # noqa: B018 - makes the engine of a SQLite file
            assert self._engine_db is not None
            with self._engine_db.errors(), self.engine.connect().execution_options(
                    hub_write=True) as conn:
                with conn.begin():
                    if self.dialect == "postgresql":
                        # Two first-time openers must not both create tables.
                        conn.exec_driver_sql("SELECT pg_advisory_xact_lock(727372)")
                    cfg.attributes["connection"] = conn
                    if self._schema_revision_in_tx(conn) != SCHEMA_HEAD:
                        command.upgrade(cfg, "head")
                    if conn.exec_driver_sql("SELECT id FROM hub_state").first() is None:
                        conn.execute(text("INSERT INTO hub_state (id, generation, updated_at,"
                                          " hub_id) VALUES (1, 0, :now, :hub)"),
                                     {"now": utcnow(), "hub": uuid.uuid4().hex})
        finally:
            if lock is not None:
                lock.close()
            if self._file is not None and self._engine_db is not None:
                # The stdlib connections serve from here on; the engine was for Alembic.
                self._engine_db.close()
                self._engine_db = None

    @staticmethod
    def _schema_revision_in_tx(conn: Any) -> str | None:
        from sqlalchemy import exc as sa_exc

        try:
            with conn.begin_nested():
                row = conn.exec_driver_sql("SELECT version_num FROM alembic_version").first()
        except sa_exc.DBAPIError:
            return None
        return row[0] if row else None

    def _migration_lock(self) -> Any:
        # Only avoids wasted work when many processes open a new SQLite hub at once;
        # BEGIN IMMEDIATE in migrate() is what keeps the schema correct.
        if not self._sqlite_path or self._sqlite_path == ":memory:":
            return None
        import fcntl

        f = open(self._sqlite_path + ".lock", "a+")  # noqa: SIM115 - closed by caller
        fcntl.flock(f, fcntl.LOCK_EX)
        return f

    def dispose(self) -> None:
        """Close every connection (call before fork, or when done)."""
        if self._file is not None:
            self._file.close()
        if self._engine_db is not None:
            self._engine_db.close()

    # -- transactions -----------------------------------------------------------------
    def read(self) -> AbstractContextManager[Tx]:
        """A read transaction."""
        return self._db.transaction(write=False)

    def _side_write(self) -> AbstractContextManager[Tx]:
        """A write that records no history: no generation bump (the stat cache, token hints)."""
        return self._db.transaction(write=True)

    @contextmanager
    def write(self) -> Iterator[Tx]:
        """A write transaction that holds the hub_state row and bumps the generation."""
        with self._db.transaction(write=True, lock=True) as tx:
            tx.run(_BUMP, {"now": utcnow()})
            yield tx

    def generation(self) -> int:
        """The hub's change counter; cheap enough to call on every resolve."""
        # One statement outside a transaction: a single row is read atomically anyway.
        return int(self._db.scalar("SELECT generation FROM hub_state WHERE id = 1") or 0)

    def snapshot(self) -> AbstractContextManager[lookup.Query]:
        """A read transaction as a :data:`lookup.Query`: one consistent view of the index."""
        return self._db.snapshot()

    def state(self) -> dict[str, Any]:
        """Generation, last update time and the hub's id."""
        with self.read() as c:
            row = c.first("SELECT generation, updated_at, hub_id FROM hub_state WHERE id = 1")
        return {"generation": int(row.generation), "updated_at": row.updated_at,
                "hub_id": row.hub_id}

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
            rows = c.rows("SELECT version, state FROM versions WHERE model = :model",
                          {"model": model})
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
            row = c.first(
                "INSERT INTO versions (model, version, sort_key, major, minor, patch, is_release,"
                " state, revoked, revoke_reason, digest, stem, layout, meta, lineage, size,"
                " created_at, created_by) VALUES (:model, :version, :sort_key, :major, :minor,"
                " :patch, :is_release, 'pending', :revoked, NULL, NULL, :stem, :layout, :meta,"
                " :lineage, 0, :now, :actor) RETURNING id",
                {"model": model, "version": str(v), "sort_key": v.index_key(), "major": v.major,
                 "minor": v.minor, "patch": v.patch, "is_release": 0 if v.prerelease else 1,
                 "revoked": False, "stem": stem, "layout": layout, "meta": dumps(meta),
                 "lineage": dumps(lineage), "now": now, "actor": actor})
            vid = int(row[0])
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
            row = c.first(f"{_VERSION} WHERE id = :vid", {"vid": vid})
            if row is None or row.state != "pending":
                raise NotFound(f"pending version #{vid} vanished before it completed (was it"
                               " garbage-collected as stale?); register again", what="version")
            c.run("UPDATE versions SET state = 'ready', digest = :digest, size = :size"
                  " WHERE id = :vid", {"digest": digest, "size": sum(f.size for f in files),
                                      "vid": vid})
            c.many("INSERT INTO files (version_id, path, size, sha256, role)"
                   " VALUES (:vid, :path, :size, :sha256, :role)",
                   [{"vid": vid, "path": f.path, "size": f.size, "sha256": f.sha256,
                     "role": f.role} for f in files])
            self._append_event(c, event_kind, row.model, row.version, actor, event_payload)
            if alias:
                self._set_alias(c, row.model, alias, row.version, expect=None, actor=actor)
            if idempotency is not None:
                c.run("INSERT INTO idempotency (key, version_id, model, version, request_digest,"
                      " created_at) VALUES (:key, :vid, :model, :version, :digest, :now)",
                      {"key": idempotency[0], "vid": vid, "model": row.model,
                       "version": row.version, "digest": idempotency[1], "now": utcnow()})
            info = self._version_by_id(c, vid)
        return info

    def idempotent_version(self, key: str) -> tuple[str, VersionInfo] | None:
        """The request digest and the version an idempotency key was recorded with, or None."""
        with self.read() as c:
            row = self._idempotent(c, key)
            if row is None:
                return None
            return str(row.request_digest), self._version_by_id(c, row.version_id)

    @staticmethod
    def _idempotent(c: Tx, key: str) -> Any:
        return c.first("SELECT key, version_id, model, version, request_digest FROM idempotency"
                       " WHERE key = :key", {"key": key})

    def _replay(self, c: Tx, idempotency: tuple[str, str], earlier: Any) -> VersionInfo:
        key, digest = idempotency
        if earlier.request_digest != digest:
            raise Conflict(idempotency_conflict(key, earlier.model, earlier.version))
        return self._version_by_id(c, earlier.version_id)

    def abort_version(self, vid: int) -> None:
        """Remove a pending row (its files are the caller's to remove)."""
        with self.write() as c:
            c.run("DELETE FROM versions WHERE id = :vid AND state = 'pending'", {"vid": vid})

    @staticmethod
    def _version_from_row(c: Tx, row: Any, *, with_files: bool = True) -> VersionInfo:
        files = c.rows(lookup.FILES, {"vid": row[0]}) if with_files else ()
        return lookup.version_from_row(row, files)

    def _version_by_id(self, c: Tx, vid: int) -> VersionInfo:
        row = c.first(f"{_VERSION} WHERE id = :vid", {"vid": vid})
        return self._version_from_row(c, row)

    # -- reads: the rules are sentenialx.hub.index.lookup's, run in one snapshot -----------
    def get_version(self, model: str, version: str, *, include_pending: bool = False) -> VersionInfo:
        """One version with its files.

        Raises:
            NotFound: no such version.
        """
        with self.snapshot() as q:
            return lookup.get_version(q, model, version, include_pending=include_pending)

    @staticmethod
    def _missing_version_msg(c: Tx, model: str, version: str) -> str:
        return lookup.missing_version_msg(c.rows, model, version)

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
            n = c.run("UPDATE versions SET revoked = :revoked, revoke_reason = :reason"
                      " WHERE model = :model AND version = :version AND state = 'ready'",
                      {"revoked": revoked, "reason": reason, "model": model, "version": version})
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
            row = c.first(f"{_VERSION} WHERE model = :model AND version = :version AND"
                          " state = 'ready'", {"model": model, "version": version})
            if row is None:
                raise NotFound(self._missing_version_msg(c, model, version), what="version")
            names = [a.alias for a in c.rows(
                "SELECT alias FROM aliases WHERE model = :model AND version = :version",
                {"model": model, "version": version})]
            if names:
                raise Conflict(f"{model}@{version} is still named by alias {', '.join(names)};"
                               " move or remove the alias first")
            info = self._version_from_row(c, row)
            c.run("DELETE FROM files WHERE version_id = :vid", {"vid": row.id})
            c.run("DELETE FROM versions WHERE id = :vid", {"vid": row.id})
            self._append_event(c, "delete", model, version, actor, {"digest": row.digest})
        return info

    def pending_versions(self) -> list[VersionInfo]:
        """Versions whose registration has not completed (in progress or crashed)."""
        with self.read() as c:
            rows = c.rows(f"{_VERSION} WHERE state = 'pending'")
            return [self._version_from_row(c, r, with_files=False) for r in rows]

    def remove_stale_pending(self, vid: int, *, created_before: str) -> bool:
        """Delete a pending row if it is older than ``created_before``; True if deleted."""
        with self.write() as c:
            n = c.run("DELETE FROM versions WHERE id = :vid AND state = 'pending'"
                      " AND created_at < :before", {"vid": vid, "before": created_before})
        return bool(n)

    def all_ready_versions(self) -> list[VersionInfo]:
        """Every ready version with its files (for verify, fsck, gc)."""
        with self.read() as c:
            vrows = c.rows(f"{_VERSION} WHERE state = 'ready'")
            frows = c.rows("SELECT version_id, path, size, sha256, role FROM files"
                           " ORDER BY version_id, path")
        by: dict[int, list[Any]] = {}
        for f in frows:
            by.setdefault(int(f[0]), []).append(f[1:])
        return [lookup.version_from_row(r, by.get(int(r[0]), ())) for r in vrows]

    def find_file_by_sha(self, sha256: str, size: int) -> tuple[str, str] | None:
        """(model, path) of a stored file with these bytes, for dedup."""
        found = self.find_files_by_sha(sha256, size, limit=1)
        return found[0] if found else None

    def find_files_by_sha(self, sha256: str, size: int, *, limit: int = 200
                          ) -> list[tuple[str, str]]:
        """(model, path) of up to ``limit`` files of ready versions with these bytes, oldest first."""
        with self.read() as c:
            rows = c.rows("SELECT v.model, f.path FROM files f JOIN versions v ON v.id ="
                          " f.version_id WHERE f.sha256 = :sha AND f.size = :size AND"
                          " v.state = 'ready' ORDER BY f.version_id LIMIT :n",
                          {"sha": sha256, "size": size, "n": limit})
        return [(str(r[0]), str(r[1])) for r in rows]

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

    def _set_alias(self, c: Tx, model: str, alias: str, version: str, *,
                   expect: str | None, actor: str, kind: str = "alias",
                   extra: dict[str, Any] | None = None) -> str | None:
        key = {"model": model, "alias": alias}
        row = c.first("SELECT state FROM versions WHERE model = :model AND version = :version",
                      {"model": model, "version": version})
        if row is None or row.state != "ready":
            raise NotFound(self._missing_version_msg(c, model, version), what="version")
        cur = c.first("SELECT version FROM aliases WHERE model = :model AND alias = :alias", key)
        previous = cur.version if cur else None
        if expect is not None and (previous or "") != expect:
            raise Conflict(f"alias {model}@{alias} points at {previous or 'nothing'},"
                           f" not {expect or 'nothing'}:"
                           " another writer moved it first; look again and retry")
        now = utcnow()
        moved = {**key, "version": version, "now": now, "actor": actor}
        if cur:
            c.run("UPDATE aliases SET version = :version, updated_at = :now, updated_by = :actor"
                  " WHERE model = :model AND alias = :alias", moved)
        else:
            c.run("INSERT INTO aliases (model, alias, version, updated_at, updated_by)"
                  " VALUES (:model, :alias, :version, :now, :actor)", moved)
        self._record_move(c, model, alias, version, previous, now, actor)
        payload: dict[str, Any] = {"alias": alias, "previous": previous}
        if extra:
            payload.update(extra)
        self._append_event(c, kind, model, version, actor, payload)
        return previous

    @staticmethod
    def _record_move(c: Tx, model: str, alias: str, version: str | None, previous: str | None,
                     ts: str, actor: str) -> None:
        c.run("INSERT INTO alias_history (model, alias, version, previous, ts, actor)"
              " VALUES (:model, :alias, :version, :previous, :ts, :actor)",
              {"model": model, "alias": alias, "version": version, "previous": previous,
               "ts": ts, "actor": actor})

    def remove_alias(self, model: str, alias: str, *, expect: str | None, actor: str) -> str:
        """Remove an alias; returns the version it pointed at.

        Raises:
            NotFound: no such alias.
            Conflict: it moved since the caller looked.
        """
        key = {"model": model, "alias": alias}
        with self.write() as c:
            cur = c.first("SELECT version FROM aliases WHERE model = :model AND alias = :alias", key)
            if cur is None:
                raise NotFound(f"alias {model}@{alias} not found", what="alias")
            if expect is not None and cur.version != expect:
                raise Conflict(f"alias {model}@{alias} points at {cur.version}, not {expect}")
            c.run("DELETE FROM aliases WHERE model = :model AND alias = :alias", key)
            self._record_move(c, model, alias, None, cur.version, utcnow(), actor)
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
        sql = ("SELECT id, model, alias, version, previous, ts, actor FROM alias_history"
               " WHERE model = :model")
        with self.read() as c:
            params = {"model": model, **({"alias": alias} if alias else {})}
            rows = c.rows(sql + (" AND alias = :alias" if alias else "") + " ORDER BY id", params)
        return [AliasMove(int(r[0]), r[1], r[2], r[3], r[4], r[5], r[6]) for r in rows]

    # -- events -----------------------------------------------------------------------
    def _append_event(self, c: Tx, kind: str, model: str, version: str, actor: str,
                      payload: dict[str, Any]) -> Event:
        row = c.first(f"{_EVENT} ORDER BY seq DESC LIMIT 1")
        prev = self._event_from_row(row) if row else None
        ev = chain(prev, ts=utcnow(), kind=kind, model=model, version=version, actor=actor,
                   payload=payload)
        c.run("INSERT INTO events (seq, ts, kind, model, version, actor, payload, prev_hash, hash)"
              " VALUES (:seq, :ts, :kind, :model, :version, :actor, :payload, :prev_hash, :hash)",
              {"seq": ev.seq, "ts": ev.ts, "kind": ev.kind, "model": ev.model,
               "version": ev.version, "actor": ev.actor,
               "payload": json.dumps(ev.payload, sort_keys=True), "prev_hash": ev.prev_hash,
               "hash": ev.hash})
        return ev

    def append_event(self, kind: str, model: str, version: str, *, actor: str,
                     payload: dict[str, Any]) -> Event:
        """Append one event in its own write transaction."""
        with self.write() as c:
            return self._append_event(c, kind, model, version, actor, payload)

    @staticmethod
    def _event_from_row(row: Any) -> Event:
        return Event(int(row[0]), row[1], row[2], row[3], row[4], row[5], json.loads(row[6]),
                     row[7], row[8])

    def events(self, *, model: str | None = None, limit: int | None = None) -> list[Event]:
        """Events oldest first (the whole chain unless filtered)."""
        with self.read() as c:
            rows = c.rows(_EVENT + (" WHERE model = :model" if model else "") + " ORDER BY seq",
                          {"model": model} if model else {})
        evs = [self._event_from_row(r) for r in rows]
        return evs[-limit:] if limit else evs

    def last_event(self, kind: str, *, model: str | None = None) -> Event | None:
        """The newest event of a kind (optionally of one model)."""
        with self.read() as c:
            params = {"kind": kind, **({"model": model} if model is not None else {})}
            row = c.first(_EVENT + " WHERE kind = :kind" + (" AND model = :model" if model is not None
                                                           else "") + " ORDER BY seq DESC LIMIT 1",
                          params)
        return self._event_from_row(row) if row else None

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the newest event, (0, GENESIS) when empty."""
        with self.read() as c:
            row = c.first("SELECT seq, hash FROM events ORDER BY seq DESC LIMIT 1")
        return (int(row[0]), str(row[1])) if row else (0, GENESIS)

    # -- stat cache -------------------------------------------------------------------
    @staticmethod
    def _stat(r: Any) -> tuple[int, int, int, int, str]:
        return int(r[1]), int(r[2]), int(r[3]), int(r[4]), str(r[5])

    def stat_cache(self) -> dict[str, tuple[int, int, int, int, str]]:
        """``{path: (size, mtime_ns, ino, ctime_ns, sha256)}`` for files verified before."""
        with self.read() as c:
            return {r[0]: self._stat(r) for r in c.rows(_STAT)}

    def stat_cache_get(self, paths: Sequence[str]) -> dict[str, tuple[int, int, int, int, str]]:
        """Cached stats for some paths only."""
        out: dict[str, tuple[int, int, int, int, str]] = {}
        with self.read() as c:
            for i in range(0, len(paths), 500):
                chunk = paths[i:i + 500]
                marks = ", ".join(f":p{j}" for j in range(len(chunk)))
                for r in c.rows(f"{_STAT} WHERE path IN ({marks})",
                                {f"p{j}": p for j, p in enumerate(chunk)}):
                    out[r[0]] = self._stat(r)
        return out

    def stat_cache_put(self, rows: Sequence[tuple[str, int, int, int, int, str]]) -> None:
        """Record (path, size, mtime_ns, ino, ctime_ns, sha256) of files just hashed.

        This is a cache, not history: it does not take the write lock or bump the generation.
        """
        if not rows:
            return
        # One row per path, upserted in path order: two processes verifying the same files
        # at once never collide on a path, and take their row locks in the same order.
        latest = {r[0]: r for r in rows}
        with self._side_write() as c:
            c.many("INSERT INTO stat_cache (path, size, mtime_ns, ino, ctime_ns, sha256)"
                   " VALUES (:path, :size, :mtime_ns, :ino, :ctime_ns, :sha256)"
                   " ON CONFLICT (path) DO UPDATE SET size = excluded.size,"
                   " mtime_ns = excluded.mtime_ns, ino = excluded.ino,"
                   " ctime_ns = excluded.ctime_ns, sha256 = excluded.sha256",
                   [{"path": p, "size": sz, "mtime_ns": m, "ino": ino, "ctime_ns": ct,
                     "sha256": h} for p, sz, m, ino, ct, h in (latest[k] for k in sorted(latest))])

    def stat_cache_clear(self) -> None:
        """Forget every cached stat."""
        with self._side_write() as c:
            c.run("DELETE FROM stat_cache")

    def count_versions(self) -> int:
        """Number of ready versions."""
        with self.read() as c:
            return int(c.first("SELECT COUNT(*) FROM versions WHERE state = 'ready'")[0])

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
        with self.write() as c:
            if c.first("SELECT id FROM tokens WHERE name = :name", {"name": name}):
                raise AlreadyExists(f"a token named {name!r} exists (or existed: names of"
                                    " revoked tokens are not reused); pick another name")
            c.run("INSERT INTO tokens (name, token_sha256, scope, models, created_at, created_by,"
                  " expires_at, revoked_at, last_used_at) VALUES (:name, :sha, :scope, :models,"
                  " :now, :by, :expires, NULL, NULL)",
                  {"name": name, "sha": token_sha256, "scope": scope,
                   "models": json.dumps(list(models)) if models is not None else None,
                   "now": utcnow(), "by": created_by, "expires": expires_at})
            row = c.first(f"{_TOKEN} WHERE name = :name", {"name": name})
        return self._token_row(row)

    def list_tokens(self) -> list[dict[str, Any]]:
        """Every token row, oldest first."""
        with self.read() as c:
            rows = c.rows(f"{_TOKEN} ORDER BY id")
        return [self._token_row(r) for r in rows]

    def revoke_token(self, name: str) -> dict[str, Any]:
        """Mark a token revoked now; returns its row.

        Raises:
            NotFound: no token has this name, or it is already revoked.
        """
        with self.write() as c:
            row = c.first(f"{_TOKEN} WHERE name = :name", {"name": name})
            if row is None or row.revoked_at is not None:
                known = [r.name for r in c.rows("SELECT name FROM tokens WHERE revoked_at IS NULL"
                                                " ORDER BY id")]
                state = "is already revoked" if row is not None else "not found"
                raise NotFound(f"token {name!r} {state}; active tokens:"
                               f" {', '.join(known) or 'none'}", what="token", name=name)
            c.run("UPDATE tokens SET revoked_at = :now WHERE id = :id",
                  {"now": utcnow(), "id": row.id})
            row = c.first(f"{_TOKEN} WHERE id = :id", {"id": row.id})
        return self._token_row(row)

    def find_token_by_hash(self, token_sha256: str) -> dict[str, Any] | None:
        """The token row whose secret hashes to ``token_sha256``, or None."""
        with self.read() as c:
            row = c.first(f"{_TOKEN} WHERE token_sha256 = :sha", {"sha": token_sha256})
        return self._token_row(row) if row is not None else None

    def touch_token(self, name: str) -> None:
        """Record that a token was just used, best effort.

        ``last_used_at`` is a hint for ``token list``, not history: no generation bump
        (that would empty every resolve cache), and a busy index never fails a request.
        """
        try:
            with self._side_write() as c:
                c.run("UPDATE tokens SET last_used_at = :now WHERE name = :name",
                      {"now": utcnow(), "name": name})
        except HubError:
            return
