"""Answers from a served hub, checked like user input before anything is built from them.

A served hub may be hostile or broken. Everything it sends goes through one of the
functions here before the client uses it: names pass :func:`refs.validate_name`,
versions :meth:`Version.parse`, file paths :func:`refs.validate_relpath` (and must
stay within the version's stem), sizes and digests are bounded and well formed,
metadata is bounded JSON, the version digest is recomputed from the files, and an
answer about another model than the one asked for is refused. See DESIGN.md, "one
read path": anything received from outside is validated like user input.

Each refusal is one line naming the source, the field and the value, e.g.
``served hub http://h:8000 sent an invalid file path '../../x': …``.
"""

from __future__ import annotations

import json
import re
from typing import Any

from sentenialx.hub.errors import IntegrityError, InvalidInput, TooLarge
from sentenialx.hub.events import GENESIS, Event
from sentenialx.hub.manifest import ROLES, FileEntry, Manifest
from sentenialx.hub.refs import Version, validate_name, validate_relpath
from sentenialx.hub.values import AliasInfo, AliasMove, VersionInfo

MAX_RESPONSE_BYTES = 64 * 1024**2
"""The largest JSON answer read from a served hub."""
MAX_FILES = 100_000
MAX_FILE_SIZE = 1 << 50
MAX_TEXT = 4096
MAX_VERSION = 256
MAX_JSON_DEPTH = 64
MAX_META_BYTES = 4 * 1024**2
MAX_INT = 1 << 63
MAX_COMPONENT_BYTES = 255
MAX_PATH_BYTES = 4096  # what a client accepts; the hub itself stores at most bounds.MAX_PATH

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX = re.compile(r"[0-9a-f]{1,128}")
_STEM = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_KIND = re.compile(r"[a-z][a-z0-9_.-]{0,63}")


def _show(value: object) -> str:
    """A short one-line rendering of a served value: strings quoted, anything else as JSON."""
    if isinstance(value, str):
        return repr(value[:80] + ("…" if len(value) > 80 else ""))
    try:
        text = json.dumps(value) if _jsonable(value) else type(value).__name__
    except (ValueError, RecursionError):
        text = type(value).__name__
    return text[:80] + ("…" if len(text) > 80 else "")


def _jsonable(value: object) -> bool:
    return isinstance(value, (dict, list, int, float, bool)) or value is None


def _bad(source: str, what: str, value: object, reason: str) -> InvalidInput:
    return InvalidInput(f"{source} sent an invalid {what} {_show(value)}: {reason}")


def parse_json(data: bytes, *, source: str, limit: int = MAX_RESPONSE_BYTES) -> Any:
    """Decode a served hub's JSON answer, refusing oversized or absurdly nested input.

    Raises:
        TooLarge: more than ``limit`` bytes.
        InvalidInput: not JSON, nested deeper than :data:`MAX_JSON_DEPTH`, or an integer
            beyond :data:`MAX_INT`.
    """
    if len(data) > limit:
        raise TooLarge(f"{source} sent an answer over {limit} bytes; refused")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        reason = "nested too deep" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise InvalidInput(f"{source} sent an answer that is not JSON this client reads:"
                           f" {reason}") from None
    _check_tree(obj, source=source, what="answer", depth=MAX_JSON_DEPTH)
    return obj


def _check_tree(obj: Any, *, source: str, what: str, depth: int) -> None:
    """Walk ``obj`` without recursion: bounded depth and integer magnitude."""
    stack: list[tuple[Any, int]] = [(obj, 1)]
    while stack:
        cur, d = stack.pop()
        if d > depth:
            raise _bad(source, what, "…", f"nested deeper than {depth} levels")
        if isinstance(cur, dict):
            stack.extend((v, d + 1) for v in cur.values())
        elif isinstance(cur, list):
            stack.extend((v, d + 1) for v in cur)
        elif isinstance(cur, int) and not isinstance(cur, bool) and abs(cur) >= MAX_INT:
            raise _bad(source, what, "…", "holds an integer beyond ±2**63")


def _obj(v: Any, *, source: str, what: str) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _bad(source, what, v, "expected a JSON object")
    return v


def _list(v: Any, *, source: str, what: str) -> list[Any]:
    if not isinstance(v, list):
        raise _bad(source, what, v, "expected a JSON list")
    return v


def _text(v: Any, *, source: str, what: str, limit: int = MAX_TEXT, empty: bool = True) -> str:
    if not isinstance(v, str) or len(v) > limit or (not empty and not v):
        raise _bad(source, what, v, f"expected a string of at most {limit} characters")
    if not v.isprintable():
        raise _bad(source, what, v, "contains control characters")
    return v


def _int(v: Any, *, source: str, what: str, hi: int = MAX_INT) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < hi:
        raise _bad(source, what, v, f"expected an integer from 0 to {hi - 1}")
    return v


def _name(v: Any, *, source: str, what: str) -> str:
    try:
        return validate_name(v, what=what)
    except InvalidInput as exc:
        raise _bad(source, f"{what} name", v, str(exc)) from None


def _version(v: Any, *, source: str, what: str = "version") -> str:
    if not isinstance(v, str) or len(v) > MAX_VERSION:
        raise _bad(source, what, v, f"expected a semver string of at most {MAX_VERSION}"
                                    " characters")
    try:
        parsed = str(Version.parse(v))
    except InvalidInput as exc:
        raise _bad(source, what, v, str(exc)) from None
    if parsed != v:
        raise _bad(source, what, v, f"not in canonical form ({parsed!r})")
    return v


def _opt_version(v: Any, *, source: str, what: str = "version") -> str | None:
    return None if v is None else _version(v, source=source, what=what)


def _bounded_json(v: Any, *, source: str, what: str) -> dict[str, Any]:
    d = _obj(v, source=source, what=what)
    _check_tree(d, source=source, what=what, depth=32)
    if len(json.dumps(d, default=str)) > MAX_META_BYTES:
        raise _bad(source, what, "…", f"larger than {MAX_META_BYTES} bytes")
    return d


def relpath(v: Any, *, source: str) -> str:
    """A served file path: relative, clean, within the usual length limits.

    Raises:
        InvalidInput: anything else.
    """
    if not isinstance(v, str):
        raise _bad(source, "file path", v, "expected a string")
    try:
        validate_relpath(v)
    except InvalidInput as exc:
        raise _bad(source, "file path", v, str(exc)) from None
    if len(v.encode()) > MAX_PATH_BYTES or any(len(p.encode()) > MAX_COMPONENT_BYTES
                                               for p in v.split("/")):
        raise _bad(source, "file path", v, f"a component is over {MAX_COMPONENT_BYTES} bytes"
                                           f" or the path over {MAX_PATH_BYTES}")
    return v


def file_entry(v: Any, *, source: str) -> FileEntry:
    """One served manifest entry.

    Raises:
        InvalidInput: a field is missing, malformed or out of bounds.
    """
    d = _obj(v, source=source, what="file entry")
    path = relpath(d.get("path"), source=source)
    size = _int(d.get("size"), source=source, what=f"size of {path!r}", hi=MAX_FILE_SIZE)
    sha = d.get("sha256")
    if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
        raise _bad(source, f"sha256 of {path!r}", sha, "expected 64 lowercase hex digits")
    role = d.get("role", "weights")
    if role not in ROLES:
        raise _bad(source, f"role of {path!r}", role, f"expected one of {', '.join(ROLES)}")
    return FileEntry(path, size, sha, role)


def _stem(v: Any, version: str, *, source: str) -> str:
    """A version's stem: ``<name>_v<version>``, as every hub names a version's files.

    Pinning the version into the stem keeps two versions' files apart in the client's
    files tree, whatever a server claims.
    """
    if (not isinstance(v, str) or not _STEM.fullmatch(v) or ".." in v
            or len(v.encode()) > MAX_COMPONENT_BYTES - 16):
        raise _bad(source, "stem", v, "expected one file name of letters, digits, '.', '_',"
                                      " '+' or '-' (no '/' or '..')")
    suffix = f"_v{version}"
    if not v.endswith(suffix):
        raise _bad(source, "stem", v, f"the stem of version {version} ends with {suffix!r}")
    try:
        validate_name(v[:-len(suffix)], what="file")
    except InvalidInput as exc:
        raise _bad(source, "stem", v, str(exc)) from None
    return v


def _within_stem(path: str, stem: str, layout: str) -> bool:
    """A version's files live in its stem: ``stem.ext``, ``stem_attachment`` or ``stem/...``."""
    if "/" in path:
        return layout == "dir" and path.startswith(stem + "/")
    return path == stem or path.startswith((stem + ".", stem + "_"))


def version_from_untrusted(doc: Any, *, source: str, expect_model: str | None = None,
                           expect_version: str | None = None, expect_digest: str | None = None,
                           include_revoked: bool = True) -> VersionInfo:
    """A served version record, fully checked, as a :class:`VersionInfo`.

    Args:
        doc: the decoded JSON the server sent.
        source: who sent it, for messages (``served hub http://host:port``).
        expect_model: the model asked for; an answer about another model is refused.
        expect_version: the exact version asked for, if one was.
        expect_digest: a digest (or prefix) asked for, if one was.
        include_revoked: whether a revoked version is an acceptable answer.

    Raises:
        InvalidInput: a field is missing, malformed, out of bounds, escapes the version's
            stem, or the answer is not about what was asked.
        IntegrityError: the served digest does not match the served files.
    """
    d = _obj(doc, source=source, what="version record")
    model = _name(d.get("model"), source=source, what="model")
    if expect_model is not None and model != expect_model:
        raise InvalidInput(f"{source} answered with a version of {_show(model)} when"
                           f" {expect_model!r} was asked for; refused")
    version = _version(d.get("version"), source=source)
    if expect_version is not None and version != expect_version:
        raise InvalidInput(f"{source} answered with {model}@{version} when"
                           f" {model}@{expect_version} was asked for; refused")
    stem = _stem(d.get("stem"), version, source=source)
    layout = d.get("layout")
    if layout not in ("file", "dir"):
        raise _bad(source, "layout", layout, "expected 'file' or 'dir'")
    raw_files = _list(d.get("files"), source=source, what="file list")
    if not raw_files or len(raw_files) > MAX_FILES:
        raise _bad(source, "file list", len(raw_files), f"expected 1 to {MAX_FILES} files")
    files = tuple(file_entry(f, source=source) for f in raw_files)
    paths = set()
    for f in files:
        if not _within_stem(f.path, stem, layout):
            raise _bad(source, "file path", f.path, f"outside the version's stem {stem!r}"
                                                    f" ({layout} layout)")
        if f.path in paths:
            raise _bad(source, "file path", f.path, "listed twice")
        paths.add(f.path)
    for p in paths:
        parts = p.split("/")
        if any("/".join(parts[:i]) in paths for i in range(1, len(parts))):
            raise _bad(source, "file path", p, "is inside another file of the version")
    if layout == "dir" and not any(p.startswith(stem + "/") for p in paths):
        raise _bad(source, "file list", stem, "a folder version with no file in its folder")
    manifest = Manifest(files)
    digest = d.get("digest")
    if not isinstance(digest, str) or not _HEX64.fullmatch(digest):
        raise _bad(source, "digest", digest, "expected 64 lowercase hex digits")
    if manifest.digest != digest:
        raise IntegrityError(f"{source} sent {model}@{version} with digest {digest[:12]}… but its"
                             f" files hash to {manifest.digest[:12]}…; refused",
                             path=f"{model}@{version}", expected=digest, actual=manifest.digest)
    if expect_digest is not None and not digest.startswith(expect_digest):
        raise InvalidInput(f"{source} answered with digest {digest[:12]}… when sha256:"
                           f"{expect_digest[:12]} was asked for; refused")
    revoked = d.get("revoked")
    if not isinstance(revoked, bool):
        raise _bad(source, "revoked flag", revoked, "expected true or false")
    if revoked and not include_revoked:
        raise InvalidInput(f"{source} answered with the revoked {model}@{version} when revoked"
                           " versions were excluded; refused")
    reason = d.get("revoke_reason")
    if reason is not None:
        reason = _text(reason, source=source, what="revoke reason")
    return VersionInfo(
        0, model, version, "ready", revoked, reason, digest, stem, layout,
        _bounded_json(d.get("metadata") or {}, source=source, what="metadata"),
        _bounded_json(d.get("lineage") or {}, source=source, what="lineage"),
        manifest.total_size,
        _text(d.get("created_at", ""), source=source, what="created_at", limit=64),
        _text(d.get("created_by", ""), source=source, what="created_by", limit=256),
        manifest.files)


def versions_from_untrusted(doc: Any, *, source: str, expect_model: str) -> list[VersionInfo]:
    """A served list of one model's versions.

    Raises:
        InvalidInput, IntegrityError: see :func:`version_from_untrusted`.
    """
    return [version_from_untrusted(d, source=source, expect_model=expect_model)
            for d in _list(doc, source=source, what="version list")]


def models_from_untrusted(doc: Any, *, source: str) -> list[dict[str, Any]]:
    """A served model listing: ``[{"model", "versions", "latest", "aliases"}]``.

    Raises:
        InvalidInput: a row is malformed.
    """
    out = []
    for row in _list(doc, source=source, what="model list"):
        d = _obj(row, source=source, what="model row")
        aliases = _obj(d.get("aliases") or {}, source=source, what="alias map")
        out.append({
            "model": _name(d.get("model"), source=source, what="model"),
            "versions": _int(d.get("versions", 0), source=source, what="version count"),
            "latest": _opt_version(d.get("latest"), source=source),
            "aliases": {_name(a, source=source, what="alias"): _version(v, source=source)
                        for a, v in aliases.items()},
        })
    return out


def aliases_from_untrusted(doc: Any, *, source: str, expect_model: str) -> list[AliasInfo]:
    """A served list of one model's aliases.

    Raises:
        InvalidInput: a row is malformed or about another model.
    """
    out = []
    for row in _list(doc, source=source, what="alias list"):
        d = _obj(row, source=source, what="alias row")
        model = _same_model(d.get("model"), expect_model, source=source)
        out.append(AliasInfo(model, _name(d.get("alias"), source=source, what="alias"),
                             _version(d.get("version"), source=source),
                             _text(d.get("updated_at", ""), source=source, what="updated_at"),
                             _text(d.get("updated_by", ""), source=source, what="updated_by")))
    return out


def alias_moves_from_untrusted(doc: Any, *, source: str, expect_model: str) -> list[AliasMove]:
    """A served alias history of one model.

    Raises:
        InvalidInput: a row is malformed or about another model.
    """
    out = []
    for row in _list(doc, source=source, what="alias history"):
        d = _obj(row, source=source, what="alias move")
        out.append(AliasMove(_int(d.get("id"), source=source, what="alias move id"),
                             _same_model(d.get("model"), expect_model, source=source),
                             _name(d.get("alias"), source=source, what="alias"),
                             _opt_version(d.get("version"), source=source),
                             _opt_version(d.get("previous"), source=source),
                             _text(d.get("ts", ""), source=source, what="ts"),
                             _text(d.get("actor", ""), source=source, what="actor")))
    return out


def events_from_untrusted(doc: Any, *, source: str, expect_model: str | None = None
                          ) -> list[Event]:
    """A served slice of the event chain (its hashes are checked by ``verify_chain``).

    Raises:
        InvalidInput: an event is malformed, or about another model than asked for.
    """
    out = []
    for row in _list(doc, source=source, what="event list"):
        d = _obj(row, source=source, what="event")
        model = d.get("model") or ""
        if model:
            model = _name(model, source=source, what="model")
        if expect_model is not None and model != expect_model:
            raise InvalidInput(f"{source} answered with an event of {_show(model)} when"
                               f" {expect_model!r} was asked for; refused")
        kind = d.get("kind")
        if not isinstance(kind, str) or not _KIND.fullmatch(kind):
            raise _bad(source, "event kind", kind, "expected a short lowercase word")
        version = _text(d.get("version") or "", source=source, what="event version",
                        limit=MAX_VERSION)
        payload = d.get("payload") or {}
        if isinstance(payload, str):
            payload = parse_json(payload.encode(), source=source, limit=MAX_META_BYTES)
        out.append(Event(_int(d.get("seq"), source=source, what="event seq"),
                         _text(d.get("ts", ""), source=source, what="event ts", limit=64),
                         kind, model, version,
                         _text(d.get("actor") or "", source=source, what="event actor"),
                         _bounded_json(payload, source=source, what="event payload"),
                         _hex(d.get("prev", d.get("prev_hash", GENESIS)), source=source,
                              what="event prev"),
                         _hex(d.get("hash", ""), source=source, what="event hash")))
    return out


def _hex(v: Any, *, source: str, what: str) -> str:
    if not isinstance(v, str) or not (_HEX.fullmatch(v) or v == ""):
        raise _bad(source, what, v, "expected hex digits")
    return v


def _same_model(v: Any, expect: str, *, source: str) -> str:
    model = _name(v, source=source, what="model")
    if model != expect:
        raise InvalidInput(f"{source} answered about {_show(model)} when {expect!r} was asked"
                           " for; refused")
    return model


def state_from_untrusted(doc: Any, *, source: str) -> dict[str, Any]:
    """A served ``/state`` answer: ``{"generation": n, "signed": object or null}``.

    Raises:
        InvalidInput: malformed.
    """
    d = _obj(doc, source=source, what="state")
    signed = d.get("signed")
    return {"generation": _int(d.get("generation"), source=source, what="generation"),
            "signed": None if signed is None else _bounded_json(signed, source=source,
                                                                 what="signed state")}


def object_from_untrusted(doc: Any, *, source: str, what: str) -> dict[str, Any]:
    """Any other served JSON object, bounded.

    Raises:
        InvalidInput: not an object, or out of bounds.
    """
    return _bounded_json(doc, source=source, what=what)


def verify_report_from_untrusted(doc: Any, *, source: str) -> dict[str, Any]:
    """A served ``/verify`` answer with its counts and problems checked.

    Raises:
        InvalidInput: malformed.
    """
    d = _obj(doc, source=source, what="verify report")
    fields = ("kind", "path", "message", "model", "version", "expected", "actual")
    problems = []
    for p in _list(d.get("problems", []), source=source, what="problem list"):
        p = _obj(p, source=source, what="problem")
        if set(p) - set(fields) or not {"kind", "path", "message"} <= set(p):
            raise _bad(source, "problem", sorted(p), f"expected the fields {', '.join(fields)}")
        problems.append({k: _text(v, source=source, what=f"problem {k}") for k, v in p.items()})
    return {"deep": bool(d.get("deep")),
            **{k: _int(d.get(k), source=source, what=k)
               for k in ("versions", "files", "hashed", "bytes_hashed")},
            "problems": problems}


def sha_list_from_untrusted(doc: Any, *, source: str, key: str = "present") -> set[str]:
    """A served ``{"present": [sha256, ...]}`` answer.

    Raises:
        InvalidInput: malformed.
    """
    out = set()
    for s in _list(_obj(doc, source=source, what="answer").get(key), source=source, what=key):
        if not isinstance(s, str) or not _HEX64.fullmatch(s):
            raise _bad(source, "sha256", s, "expected 64 lowercase hex digits")
        out.add(s)
    return out


def version_field(doc: Any, key: str, *, source: str, optional: bool = False) -> str | None:
    """One version string from a served ``{key: version}`` answer.

    Raises:
        InvalidInput: missing (unless ``optional``) or not a canonical semver string.
    """
    v = _obj(doc, source=source, what="answer").get(key)
    if v is None and optional:
        return None
    return _version(v, source=source, what=key)


__all__ = ["MAX_RESPONSE_BYTES", "alias_moves_from_untrusted", "aliases_from_untrusted",
           "events_from_untrusted", "file_entry", "models_from_untrusted",
           "object_from_untrusted", "parse_json", "relpath", "sha_list_from_untrusted",
           "state_from_untrusted", "verify_report_from_untrusted", "version_field",
           "version_from_untrusted", "versions_from_untrusted"]
