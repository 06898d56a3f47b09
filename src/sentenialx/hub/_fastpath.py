"""``sentenialx models path REF`` from a cold process, standard library only.

Reads the SQLite index read-only with the same rules as :meth:`Hub.resolve`
(tested against it). Returns None whenever it is not sure (unknown option,
missing hub, other index, schema mismatch, nothing found), so the full CLI
answers instead, with its proper error message.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sentenialx.hub.index import SCHEMA_HEAD
from sentenialx.hub.refs import Version, VersionRange, parse_ref


def _parse_args(args: list[str]) -> tuple[str, str | None] | None:
    ref: str | None = None
    hub: str | None = None
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--hub" and i + 1 < len(args):
            hub = args[i + 1]
            i += 2
            continue
        if a.startswith("--hub="):
            hub = a.split("=", 1)[1]
        elif a.startswith("-") or ref is not None:
            return None
        else:
            ref = a
        i += 1
    if ref is None:
        return None
    return ref, hub


def fast_path(args: list[str]) -> str | None:
    """The absolute weights path for ``models path`` args, or None to use the full CLI."""
    parsed = _parse_args(args)
    if parsed is None:
        return None
    ref_text, hub = parsed
    root = Path(hub or os.environ.get("SENTENIALX_HUB") or Path("models") / "artifacts").resolve()
    db = root / "registry.db"
    if (root / "hub.toml").exists() or not db.is_file():
        return None
    try:
        ref = parse_ref(ref_text)
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    except (ValueError, sqlite3.Error):
        return None
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        if not row or row[0] != SCHEMA_HEAD:
            return None
        found = _resolve(conn, ref.name, ref.kind, ref.value)
        if found is None:
            return None
        vid, stem, layout = found
        if layout == "dir":
            return str(root / ref.name / stem)
        w = conn.execute("SELECT path FROM files WHERE version_id=? AND role='weights'"
                         " ORDER BY path LIMIT 1", (vid,)).fetchone()
        return str(root / ref.name / w[0]) if w else None
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _resolve(conn: sqlite3.Connection, model: str, kind: str, value: str
             ) -> tuple[int, str, str] | None:
    base = ("SELECT id, stem, layout, version FROM versions WHERE model=? AND state='ready'"
            " AND revoked=0")
    if kind == "version":
        row = conn.execute(base + " AND version=?", (model, value)).fetchone()
    elif kind == "alias":
        row = conn.execute(base + " AND version=(SELECT version FROM aliases WHERE model=?"
                           " AND alias=?)", (model, model, value)).fetchone()
    elif kind == "digest":
        rows = conn.execute(base + " AND digest LIKE ? LIMIT 2", (model, value + "%")).fetchall()
        row = rows[0] if len(rows) == 1 else None
    elif kind == "latest":
        rows = conn.execute(base + " ORDER BY major DESC, minor DESC, patch DESC, is_release DESC"
                            " LIMIT 50", (model,)).fetchall()
        row = max(rows, key=lambda r: Version.parse(r[3]).sort_key()) if rows else None
    else:
        rng = VersionRange.parse(value)
        rows = [r for r in conn.execute(base, (model,)).fetchall()
                if rng.matches(Version.parse(r[3]))]
        row = max(rows, key=lambda r: Version.parse(r[3]).sort_key()) if rows else None
    return (int(row[0]), str(row[1]), str(row[2])) if row else None
