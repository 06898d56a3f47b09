"""The index's read rules as portable SQL over any DB-API-like runner, standard library only.

Every answer the index gives about versions and aliases (resolving a ref, listing,
the "not found" messages) is computed here, once. :class:`~sentenialx.hub.index.sql.SqlIndex`
runs these queries through SQLAlchemy (PostgreSQL, or inside a write transaction)
or a raw :mod:`sqlite3` connection (reads of a SQLite file); the CLI's cold start
(``sentenialx.hub._fastpath``) runs them through :mod:`sqlite3` without importing
SQLAlchemy. Same SQL, same Python, so the two can only agree.

A :data:`Query` takes SQL with ``:name`` placeholders (understood by both sqlite3 and
SQLAlchemy's ``text()``) and a dict of parameters, and returns the rows as sequences.
Every function reads inside whatever transaction the caller opened, so one resolve
sees one snapshot.

Latest and ranges use ``versions.sort_key`` (:meth:`Version.index_key`, migration
0005) through the ``(model, sort_key, id)`` index: latest is the first row of a
descending scan, a range a descending scan bounded by its comparators and filtered by
:meth:`VersionRange.matches`, stopping at the first match. Among versions of equal
precedence (they differ only in build metadata) the newest registration wins.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sentenialx.hub.errors import InvalidInput, NotFound
from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.refs import Ref, Version, VersionRange
from sentenialx.hub.values import AliasInfo, VersionInfo

Query = Callable[[str, Mapping[str, Any]], Sequence[Sequence[Any]]]
"""``query(sql, params) -> rows``: one statement in the caller's transaction."""

VCOLS = ("id, model, version, state, revoked, revoke_reason, digest, stem, layout, meta,"
          " lineage, size, created_at, created_by")
_LIVE = "model = :model AND state = 'ready' AND NOT revoked"
_BY_VERSION = f"SELECT {VCOLS} FROM versions WHERE model = :model AND version = :version"
FILES = "SELECT path, size, sha256, role FROM files WHERE version_id = :vid ORDER BY path"
_ALIAS = ("SELECT model, alias, version, updated_at, updated_by FROM aliases"
          " WHERE model = :model AND alias = :alias")
_DESC = "ORDER BY sort_key DESC, id DESC"
_RANGE_BATCH = 4
# Identifiers whose index_key() orders like sort_key(); a range comparator with any other
# pre-release text is not used as a bound (the scan is then bounded by the others).
_IDENT = re.compile(r"^[0-9A-Za-z-]+$")


def version_from_row(row: Sequence[Any], files: Sequence[Sequence[Any]] = ()) -> VersionInfo:
    """A :class:`VersionInfo` from a row of ``VCOLS`` and its file rows."""
    return VersionInfo(
        int(row[0]), row[1], row[2], row[3], bool(row[4]), row[5], row[6], row[7], row[8],
        json.loads(row[9]), json.loads(row[10]), int(row[11]), row[12], row[13],
        tuple(FileEntry(f[0], int(f[1]), f[2], f[3]) for f in files))


def _with_files(q: Query, row: Sequence[Any]) -> VersionInfo:
    return version_from_row(row, q(FILES, {"vid": row[0]}))


def missing_model_msg(q: Query, model: str) -> str:
    """The message for a model with no ready version, naming the known ones."""
    models = [r[0] for r in q("SELECT DISTINCT model FROM versions WHERE state = 'ready'"
                              " LIMIT 20", {})]
    if models:
        return f"model {model!r} not found; known models: {', '.join(sorted(models))}"
    return f"model {model!r} not found; the hub is empty (register one with `sentenialx models register`)"


def missing_version_msg(q: Query, model: str, version: str) -> str:
    """The message for a version that is not ready, naming the model's five highest."""
    known = [r[0] for r in q(f"SELECT version FROM versions WHERE model = :model AND"
                             f" state = 'ready' {_DESC} LIMIT 5", {"model": model})]
    if not known:
        return missing_model_msg(q, model)
    return f"{model}@{version} not found; known versions: {', '.join(reversed(known))}"


def get_version(q: Query, model: str, version: str, *, include_pending: bool = False
                ) -> VersionInfo:
    """One version with its files.

    Raises:
        NotFound: no such version (or it is pending and ``include_pending`` is False).
    """
    rows = q(_BY_VERSION, {"model": model, "version": version})
    if not rows or (rows[0][3] != "ready" and not include_pending):
        raise NotFound(missing_version_msg(q, model, version), what="version",
                       name=f"{model}@{version}")
    return _with_files(q, rows[0])


def get_alias(q: Query, model: str, alias: str) -> AliasInfo:
    """Where an alias points.

    Raises:
        NotFound: no such alias (the message says when the model itself is unknown).
    """
    rows = q(_ALIAS, {"model": model, "alias": alias})
    if rows:
        r = rows[0]
        return AliasInfo(r[0], r[1], r[2], r[3], r[4])
    known = [r[0] for r in q("SELECT alias FROM aliases WHERE model = :model", {"model": model})]
    hint = f"; known aliases: {', '.join(sorted(known))}" if known else ""
    if not q("SELECT id FROM versions WHERE model = :model LIMIT 1", {"model": model}):
        raise NotFound(missing_model_msg(q, model), what="model", name=model)
    raise NotFound(f"alias {model}@{alias} not found{hint}", what="alias", name=f"{model}@{alias}")


def latest(q: Query, model: str) -> VersionInfo:
    """The highest non-revoked ready version by semver precedence.

    Raises:
        NotFound: the model has no resolvable version.
    """
    rows = q(f"SELECT {VCOLS} FROM versions WHERE {_LIVE} {_DESC} LIMIT 1", {"model": model})
    if rows:
        return _with_files(q, rows[0])
    if q("SELECT id FROM versions WHERE model = :model AND state = 'ready' LIMIT 1",
         {"model": model}):
        raise NotFound(f"every version of {model!r} is revoked; name one explicitly"
                       " or register a new one", what="version", name=model)
    raise NotFound(missing_model_msg(q, model), what="model", name=model)


def by_digest(q: Query, model: str, prefix: str) -> VersionInfo:
    """The version whose digest starts with ``prefix``.

    Raises:
        NotFound: none matches.
        InvalidInput: the prefix is ambiguous.
    """
    rows = q(f"SELECT {VCOLS} FROM versions WHERE model = :model AND state = 'ready'"
             " AND digest LIKE :prefix LIMIT 2", {"model": model, "prefix": prefix + "%"})
    if not rows:
        raise NotFound(f"{model}@sha256:{prefix} not found; no version of {model!r} has"
                       " that digest", what="version", name=f"{model}@sha256:{prefix}")
    if len(rows) > 1:
        raise InvalidInput(f"{model}@sha256:{prefix} is ambiguous; give more digits")
    return _with_files(q, rows[0])


def _bounds(rng: VersionRange) -> tuple[str | None, str | None]:
    """Inclusive sort-key bounds every version matching ``rng`` lies within."""
    lo: str | None = None
    hi: str | None = None
    for op, v in rng.comparators:
        if not all(_IDENT.match(p) for p in v.prerelease):
            continue
        k = v.index_key()
        if op in (">=", ">", "=") and (lo is None or k > lo):
            lo = k
        if op in ("<", "<=", "=") and (hi is None or k < hi):
            hi = k
    return lo, hi


def in_range(q: Query, model: str, text: str) -> VersionInfo:
    """The highest non-revoked ready version matching the semver range ``text``.

    Raises:
        InvalidVersion: the range does not parse.
        NotFound: no version matches.
    """
    rng = VersionRange.parse(text)
    lo, hi = _bounds(rng)
    where = _LIVE + (" AND sort_key >= :lo" if lo is not None else "") + \
        (" AND sort_key <= :hi" if hi is not None else "")
    params: dict[str, Any] = {"model": model}
    if lo is not None:
        params["lo"] = lo
    if hi is not None:
        params["hi"] = hi
    # The highest candidate usually matches: fetch a few rows first, then ever more.
    offset, batch = 0, _RANGE_BATCH
    while True:
        params.update(n=batch, off=offset)
        rows = q(f"SELECT {VCOLS} FROM versions WHERE {where} {_DESC} LIMIT :n OFFSET :off",
                 params)
        for row in rows:
            if rng.matches(Version.parse(row[2])):
                return _with_files(q, row)
        if len(rows) < batch:
            break
        offset += len(rows)
        batch *= 4
    raise NotFound(f"no version of {model!r} matches {text!r} (revoked versions are skipped)",
                   what="version", name=f"{model}@{text}")


def resolve(q: Query, ref: Ref, *, include_revoked: bool = False) -> VersionInfo:
    """The ready version ``ref`` names, with its files: the one rule for every resolver.

    Latest and ranges skip revoked versions; an exact version, an alias or a digest
    that names a revoked one is refused unless ``include_revoked``.

    Raises:
        NotFound: nothing matches, or it is revoked and ``include_revoked`` is False.
        InvalidInput: a digest prefix is ambiguous.
    """
    if ref.kind == "latest":
        return latest(q, ref.name)
    if ref.kind == "range":
        return in_range(q, ref.name, ref.value)
    if ref.kind == "version":
        info = get_version(q, ref.name, ref.value)
    elif ref.kind == "alias":
        info = get_version(q, ref.name, get_alias(q, ref.name, ref.value).version)
    else:
        info = by_digest(q, ref.name, ref.value)
    if info.revoked and not include_revoked:
        raise NotFound(f"{info.ref} is revoked ({info.revoke_reason or 'no reason given'});"
                       " ask for it with --include-revoked", what="version", name=info.ref)
    return info


def list_versions(q: Query, model: str, *, include_revoked: bool = True,
                  with_files: bool = False) -> list[VersionInfo]:
    """All ready versions of a model in semver order, oldest first.

    Raises:
        NotFound: the model has no versions (only when ``include_revoked``).
    """
    cond = "model = :model AND state = 'ready'" + ("" if include_revoked else " AND NOT revoked")
    rows = q(f"SELECT {VCOLS} FROM versions WHERE {cond} ORDER BY sort_key, id", {"model": model})
    if not rows and include_revoked:
        raise NotFound(missing_model_msg(q, model), what="model", name=model)
    return [_with_files(q, r) if with_files else version_from_row(r) for r in rows]


def list_aliases(q: Query, model: str | None = None) -> list[AliasInfo]:
    """All aliases, or a model's, by model then alias."""
    sql = "SELECT model, alias, version, updated_at, updated_by FROM aliases"
    rows = q(sql + (" WHERE model = :model" if model else "") + " ORDER BY model, alias",
             {"model": model} if model else {})
    return [AliasInfo(r[0], r[1], r[2], r[3], r[4]) for r in rows]


def models(q: Query) -> list[dict[str, Any]]:
    """Every model with its version count, latest version and aliases, by name."""
    counts = q("SELECT model, COUNT(*) FROM versions WHERE state = 'ready' GROUP BY model", {})
    al = q("SELECT model, alias, version FROM aliases", {})
    out = []
    for name, n in sorted((str(r[0]), int(r[1])) for r in counts):
        top = q(f"SELECT version FROM versions WHERE {_LIVE} {_DESC} LIMIT 1", {"model": name})
        out.append({"model": name, "versions": n, "latest": str(top[0][0]) if top else None,
                    "aliases": {a[1]: a[2] for a in al if a[0] == name}})
    return out


__all__ = ["FILES", "VCOLS", "Query", "by_digest", "get_alias", "get_version", "in_range", "latest",
           "list_aliases", "list_versions", "missing_model_msg", "missing_version_msg",
           "models", "resolve", "version_from_row"]
