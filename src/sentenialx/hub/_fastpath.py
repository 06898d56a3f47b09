"""``sentenialx models path REF`` from a cold process, standard library only.

Reads the SQLite index read-only with the same rules as :meth:`Hub.resolve`
(tested against it), and hands out a path only when :meth:`Hub.path` would hand
out the same one without a check of its own to make: the trust policy's mode for
the version is ``off`` (with the policy file the history recorded), and every
file's stat matches the one recorded when its bytes were last hashed. It returns
None whenever it is not sure (unknown option, missing hub, other index, schema
mismatch, nothing found, a signature to check, a file to re-hash), so the full
CLI answers instead, with its proper checks and error messages.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from sentenialx.hub.index import SCHEMA_HEAD
from sentenialx.hub.index.lowspace import read_only_uri
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
        # Read-only, and on a nearly full disk without a -shm to create (no SIGBUS).
        conn = sqlite3.connect(read_only_uri(str(db)), uri=True)
    except (ValueError, sqlite3.Error, OSError):
        return None
    try:
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        if not row or row[0] != SCHEMA_HEAD:
            return None
        found = _resolve(conn, ref.name, ref.kind, ref.value)
        if found is None:
            return None
        vid, stem, layout, version = found
        if not _trust_is_off(conn, root, ref.name, version):
            return None
        if layout == "dir":
            rows = conn.execute("SELECT path, sha256 FROM files WHERE version_id=? AND path LIKE ?",
                                (vid, stem + "/%")).fetchall()
            if not rows or not _unchanged(conn, root, ref.name, rows) or \
                    not _nothing_extra(root / ref.name / stem, root / ref.name, rows):
                return None
            return str(root / ref.name / stem)
        w = conn.execute("SELECT path, sha256 FROM files WHERE version_id=? AND role='weights'"
                         " ORDER BY path LIMIT 1", (vid,)).fetchone()
        if not w or not _unchanged(conn, root, ref.name, [w]):
            return None
        return str(root / ref.name / w[0])
    except (sqlite3.Error, OSError, ValueError):
        return None
    finally:
        conn.close()


def _trust_is_off(conn: sqlite3.Connection, root: Path, model: str, version: str) -> bool:
    """True when the policy in force needs no signature for this version."""
    from sentenialx.hub._policy import DEFAULT_POLICY, policy_mode

    row = conn.execute("SELECT payload FROM events WHERE kind='trust' ORDER BY seq DESC"
                       " LIMIT 1").fetchone()
    policy_file = root / "trust" / "policy.json"
    if policy_file.exists():
        # Imported here: the common cold case (no policy file) pays for neither.
        import hashlib
        import json

        data = policy_file.read_bytes()
        # Only the policy the history recorded counts; any other is the full CLI's to refuse.
        if row is None or json.loads(row[0]).get("policy_sha256") != hashlib.sha256(data).hexdigest():
            return False
        policy = json.loads(data)
    elif row is not None:
        return False
    else:
        policy = DEFAULT_POLICY
    aliases = [r[0] for r in conn.execute("SELECT alias FROM aliases WHERE model=? AND version=?",
                                          (model, version))]
    mode, _why = policy_mode(policy, model, aliases)
    return mode == "off"


def _unchanged(conn: sqlite3.Connection, root: Path, model: str,
               files: list[tuple[str, str]]) -> bool:
    """True when every file's stat matches the stat cache row written when it was last hashed."""
    for path, sha in files:
        key = f"{model}/{path}"
        row = conn.execute("SELECT size, mtime_ns, ino, ctime_ns, sha256 FROM stat_cache"
                           " WHERE path=?", (key,)).fetchone()
        st = os.stat(root / key)
        if row is None or tuple(row) != (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, sha):
            return False
    return True


def _nothing_extra(folder: Path, model_dir: Path, files: list[tuple[str, str]]) -> bool:
    """True when the folder holds exactly the files its manifest lists."""
    known = {p for p, _sha in files}
    for dirpath, _dirs, names in os.walk(folder):
        for n in names:
            if os.path.relpath(os.path.join(dirpath, n), model_dir).replace(os.sep, "/") not in known:
                return False
    return True


def _resolve(conn: sqlite3.Connection, model: str, kind: str, value: str
             ) -> tuple[int, str, str, str] | None:
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
    return (int(row[0]), str(row[1]), str(row[2]), str(row[3])) if row else None
