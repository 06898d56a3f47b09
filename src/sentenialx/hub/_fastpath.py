"""``sentenialx models list|versions|show|path`` from a cold process, standard library only.

On the embedded default (a hub folder with its SQLite index, no ``hub.toml``, no
``--index``/``--store``) these read commands are answered without click, rich,
SQLAlchemy or Alembic. They are not a second implementation: the index is read with
the rules of :mod:`sentenialx.hub.index.lookup` (the very functions the Hub's index
runs, over a read-only :mod:`sqlite3` connection instead of SQLAlchemy), and the output
is built by :mod:`sentenialx.hub._format`, as the click commands build it.

``path`` hands out a path only when :meth:`Hub.path` would hand out the same one
without a check of its own to make: the trust policy's mode for the version is
``off`` (with the policy file the history recorded), and every file's stat matches
the one recorded when its bytes were last hashed.

Whenever it is not sure (an unknown option, a missing hub or view, another index, a
schema that is not :data:`SCHEMA_HEAD`, anything not found or refused, a signature to
check, a file to re-hash) it returns None and the full CLI answers, with its checks,
its error messages and its exit codes. It never writes.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sentenialx.hub.errors import HubError
from sentenialx.hub.index import SCHEMA_HEAD, lookup
from sentenialx.hub.index.lowspace import read_only_uri
from sentenialx.hub.layout import REGISTRY_DB, REGISTRY_JSON, file_key, folder_key
from sentenialx.hub.refs import parse_ref, validate_name
from sentenialx.hub.values import VersionInfo

# command -> (number of positional arguments, flags it accepts besides --hub and --json)
_COMMANDS: dict[str, tuple[int, frozenset[str]]] = {
    "list": (0, frozenset()),
    "versions": (1, frozenset()),
    "show": (1, frozenset({"--include-revoked"})),
    "path": (1, frozenset()),
}
# Options that open another hub than the folder's SQLite index (see cli.hub_option).
_OTHER_HUB_ENV = ("SENTENIALX_INDEX", "SENTENIALX_STORE", "SENTENIALX_S3_ENDPOINT")


def _parse_args(args: list[str], n_pos: int, flags: frozenset[str]
                ) -> tuple[list[str], str | None, set[str]] | None:
    pos: list[str] = []
    hub: str | None = None
    seen: set[str] = set()
    i = 0
    while i < len(args):
        a = args[i]
        if a == "--hub" and i + 1 < len(args):
            hub = args[i + 1]
            i += 2
            continue
        if a.startswith("--hub="):
            hub = a.split("=", 1)[1]
        elif a == "--json" or a in flags:
            seen.add(a)
        elif a.startswith("-") or len(pos) == n_pos:
            return None
        else:
            pos.append(a)
        i += 1
    if len(pos) != n_pos:
        return None
    return pos, hub, seen


def fast_cli(args: list[str]) -> str | None:
    """The output of ``sentenialx ARGS`` for the read commands above, or None for the full CLI."""
    if len(args) < 2 or args[0] != "models" or args[1] not in _COMMANDS:
        return None
    n_pos, flags = _COMMANDS[args[1]]
    parsed = _parse_args(args[2:], n_pos, flags)
    if parsed is None or any(os.environ.get(k) for k in _OTHER_HUB_ENV):
        return None
    pos, hub, seen = parsed
    where = hub or os.environ.get("SENTENIALX_HUB") or str(Path("models") / "artifacts")
    if where.startswith(("http://", "https://")):
        return None
    root = Path(where).resolve()
    db = root / REGISTRY_DB
    # Without registry.json the full Hub writes it when opened: leave that to it.
    if (root / "hub.toml").exists() or not db.is_file() or not (root / REGISTRY_JSON).is_file():
        return None
    try:
        with _snapshot(db) as q:
            return _answer(q, root, args[1], pos, seen)
    except (HubError, sqlite3.Error, OSError, ValueError):
        return None


def fast_path(args: list[str]) -> str | None:
    """The absolute weights path for ``models path`` args, or None to use the full CLI."""
    return fast_cli(["models", "path", *args])


@contextmanager
def _snapshot(db: Path) -> Iterator[lookup.Query]:
    # Read-only, and on a nearly full disk without a -shm to create (no SIGBUS).
    conn = sqlite3.connect(read_only_uri(str(db)), uri=True, isolation_level=None)
    try:
        conn.execute("BEGIN")
        row = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        if not row or row[0] != SCHEMA_HEAD:
            raise ValueError("schema is not at head")

        def q(sql: str, params: Mapping[str, Any]) -> list[Any]:
            return conn.execute(sql, params).fetchall()

        yield q
    finally:
        conn.close()


def _answer(q: lookup.Query, root: Path, command: str, pos: list[str], seen: set[str]
            ) -> str | None:
    from sentenialx.hub import _format as F

    as_json = "--json" in seen
    if command == "list":
        rows = lookup.models(q)
        return F.dumps_json(rows) if as_json else F.models_text(rows)
    if command == "versions":
        # As Hub.versions: a valid name, every version with its files.
        vs = lookup.list_versions(q, validate_name(pos[0]), with_files=True)
        al = lookup.list_aliases(q, pos[0])
        return F.dumps_json(F.versions_view(vs, al)) if as_json else F.versions_text(vs, al)
    info = lookup.resolve(q, parse_ref(pos[0]), include_revoked="--include-revoked" in seen)
    if command == "show":
        d = F.show_view(info, lookup.list_aliases(q, info.model), root)
        return F.dumps_json(d) if as_json else F.show_text(info, d)
    p = _verified_path(q, root, info)
    if p is None:
        return None
    return F.dumps_json({"ref": pos[0], "path": p}) if as_json else p


def _verified_path(q: lookup.Query, root: Path, info: VersionInfo) -> str | None:
    """What :meth:`Reader.path` hands out, if it needs neither a signature nor a re-hash."""
    from sentenialx.hub._core import weights_entry

    if not _trust_is_off(q, root, info):
        return None
    if info.layout == "dir":
        files = [f for f in info.files if f.path.startswith(info.stem + "/")]
        if not files:
            return None
    else:
        files = [weights_entry(info)]
    for f in files:
        key = file_key(info.model, f.path)
        rows = q("SELECT size, mtime_ns, ino, ctime_ns, sha256 FROM stat_cache WHERE path = :p",
                 {"p": key})
        st = os.stat(root / key)
        if not rows or tuple(rows[0]) != (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns,
                                          f.sha256):
            return None
    if info.layout == "dir":
        folder = root / folder_key(info.model, info.stem)
        known = {file_key(info.model, f.path) for f in info.files}
        for dirpath, _dirs, names in os.walk(folder):
            for n in names:
                rel = os.path.relpath(os.path.join(dirpath, n), root).replace(os.sep, "/")
                if rel not in known:
                    return None
        return str(folder)
    return str(root / file_key(info.model, files[0].path))


def _trust_is_off(q: lookup.Query, root: Path, info: VersionInfo) -> bool:
    """True when the policy in force needs no signature for this version."""
    from sentenialx.hub._policy import DEFAULT_POLICY, policy_mode

    row = q("SELECT payload FROM events WHERE kind = 'trust' ORDER BY seq DESC LIMIT 1", {})
    policy_file = root / "trust" / "policy.json"
    if policy_file.exists():
        # Imported here: the common cold case (no policy file) pays for neither.
        import hashlib
        import json

        data = policy_file.read_bytes()
        # Only the policy the history recorded counts; any other is the full CLI's to refuse.
        if not row or json.loads(row[0][0]).get("policy_sha256") != hashlib.sha256(data).hexdigest():
            return False
        policy = json.loads(data)
    elif row:
        return False
    else:
        policy = DEFAULT_POLICY
    aliases = [a.alias for a in lookup.list_aliases(q, info.model) if a.version == info.version]
    mode, _why = policy_mode(policy, info.model, aliases)
    return mode == "off"
