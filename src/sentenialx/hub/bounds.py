"""The limits on anything the hub accepts from outside, and the checks that enforce them.

Every value that reaches the index or the store passes through these checks
first, so no stored value can later break a reader: metadata is bounded in
depth and size and holds only JSON values a reader can render (integers within
int64, finite floats); version components fit an int64 column; names and paths
fit every filesystem (a component of at most 255 bytes, a path of at most 4096);
a folder never holds a file and a folder of the same name; and no file takes a
name the hub keeps for its own sidecars. Each check raises :class:`InvalidInput`
(or a subclass) with a one-line message, before anything is stored.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from sentenialx.hub.errors import InvalidInput, InvalidName, InvalidVersion, TooLarge

MAX_META_DEPTH = 32
"""Deepest nesting of objects and lists in metadata (a reader recurses this deep)."""
MAX_META_BYTES = 1024 * 1024
"""Largest metadata, as canonical JSON."""
MAX_INT = 2**63
"""Integers in metadata satisfy ``-MAX_INT < n < MAX_INT`` (they fit an int64 and a float)."""
MAX_VERSION_COMPONENT = 18
"""Most digits in one numeric version component (``major``, ``minor``, ``patch``): fits int64."""
MAX_VERSION_TEXT = 256
"""Longest version string (prerelease and build included)."""
MAX_NAME_COMPONENT = 255
"""Longest path component, in UTF-8 bytes (the common filesystem limit)."""
MAX_PATH = 900
"""Longest relative path, in UTF-8 bytes: well under Linux PATH_MAX (4096), and with the
model name and the version's stem it still fits the index's 1000-character path column."""
STORED_NAME_MARGIN = 64
"""Bytes a stored name may gain beyond what the client chose (``<stem>_v<version>_``)."""
SIDECAR_SUFFIXES = (".sha256", ".sig")
"""The hub writes ``<stem>.sha256`` and ``<stem>.sig`` beside a version's files."""
SIDECAR_TAILS = ("_meta.json",)
"""The hub writes ``<stem>_meta.json`` beside a version's files."""

_INT_DIGITS = len(str(MAX_INT))
_VERSION_DIGITS = re.compile(r"\d+")


def _walk(value: Any, *, max_depth: int, what: str) -> None:
    """Check nesting, types and numbers without recursion (a deep value cannot overflow us)."""
    stack: list[tuple[Any, int, str]] = [(value, 0, what)]
    while stack:
        v, depth, where = stack.pop()
        if isinstance(v, dict):
            if depth >= max_depth:
                raise InvalidInput(f"{where}: nested deeper than {max_depth} levels")
            for k, item in v.items():
                if not isinstance(k, str):
                    raise InvalidInput(f"{where}: keys must be strings, not {type(k).__name__}")
                stack.append((item, depth + 1, f"{where}.{k[:40]}"))
        elif isinstance(v, (list, tuple)):
            if depth >= max_depth:
                raise InvalidInput(f"{where}: nested deeper than {max_depth} levels")
            stack.extend((item, depth + 1, f"{where}[{i}]") for i, item in enumerate(v))
        elif isinstance(v, bool) or v is None or isinstance(v, str):
            continue
        elif isinstance(v, int):
            if v.bit_length() >= 64 and abs(v) >= MAX_INT:
                raise InvalidInput(f"{where}: integer out of range (|n| must be below 2**63)")
        elif isinstance(v, float):
            if not math.isfinite(v):
                raise InvalidInput(f"{where}: {v} is not a finite number")
        else:
            raise InvalidInput(f"{where}: {type(v).__name__} is not a JSON value")


def check_metadata(meta: Any, *, max_depth: int = MAX_META_DEPTH,
                   max_bytes: int = MAX_META_BYTES) -> dict[str, Any]:
    """Check metadata against the bounds and return a plain-JSON copy of it.

    Args:
        meta: the metadata object as given.
        max_depth: deepest nesting allowed.
        max_bytes: largest canonical JSON encoding allowed.

    Raises:
        InvalidInput: not an object, too deep, too large, a non-string key, an integer
            outside int64, a non-finite float or a value that is not JSON.
    """
    if not isinstance(meta, dict):
        raise InvalidInput("metadata must be a JSON object")
    _walk(meta, max_depth=max_depth, what="metadata")
    text = json.dumps(meta, sort_keys=True, separators=(",", ":"), allow_nan=False)
    if len(text.encode("utf-8", "surrogatepass")) > max_bytes:
        raise InvalidInput(f"metadata is larger than {max_bytes} bytes as JSON")
    out: dict[str, Any] = json.loads(text)
    return out


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > _INT_DIGITS:
        raise InvalidInput(f"JSON integer of {len(text)} digits is out of range"
                           " (|n| must be below 2**63)")
    return int(text)


def _bounded_float(text: str) -> float:
    v = float(text)
    if not math.isfinite(v):
        raise InvalidInput(f"JSON number {text[:40]} is out of range")
    return v


def _no_constant(text: str) -> Any:
    raise InvalidInput(f"JSON constant {text} is not allowed (numbers must be finite)")


def parse_json_bounded(data: bytes, *, max_bytes: int, max_depth: int) -> Any:
    """Parse untrusted JSON within size and nesting bounds.

    Integers outside int64, non-finite numbers and ``NaN``/``Infinity`` are refused
    while parsing, so a hostile document never costs more than a linear pass.

    Args:
        data: the raw bytes (UTF-8).
        max_bytes: largest document accepted.
        max_depth: deepest nesting of objects and lists accepted.

    Raises:
        TooLarge: the document is larger than ``max_bytes``.
        InvalidInput: not UTF-8 JSON, nested too deep or a number out of range.
    """
    if len(data) > max_bytes:
        raise TooLarge(f"JSON document of {len(data)} bytes is larger than {max_bytes} bytes")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"JSON is not UTF-8 (byte {exc.start})") from None
    try:
        value = json.loads(text, parse_int=_bounded_int, parse_float=_bounded_float,
                           parse_constant=_no_constant)
    except RecursionError:
        raise InvalidInput(f"JSON nested deeper than {max_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
                           ) from None
    _walk(value, max_depth=max_depth, what="JSON")
    return value


def check_version_text(text: str) -> str:
    """Refuse a version string whose size could overflow a reader before it is parsed.

    Raises:
        InvalidVersion: longer than :data:`MAX_VERSION_TEXT`, or a run of more than
            :data:`MAX_VERSION_COMPONENT` digits.
    """
    if not isinstance(text, str):
        raise InvalidVersion("a version must be a string")
    if len(text) > MAX_VERSION_TEXT:
        raise InvalidVersion(f"version of {len(text)} characters is longer than"
                             f" {MAX_VERSION_TEXT}")
    for m in _VERSION_DIGITS.finditer(text):
        if len(m.group()) > MAX_VERSION_COMPONENT:
            raise InvalidVersion(f"version {text[:40]!r}…: a component of {len(m.group())}"
                                 f" digits is longer than {MAX_VERSION_COMPONENT}")
    return text


def check_relpaths(paths: Iterable[str], *, margin: int = 0) -> list[str]:
    """Check the relative paths of one version's files as a whole.

    Args:
        paths: posix relative paths (already free of ``..`` and control characters).
        margin: bytes the hub will add to each component when storing it.

    Raises:
        InvalidName: a component longer than :data:`MAX_NAME_COMPONENT` bytes, a path
            longer than :data:`MAX_PATH` bytes, a path listed twice, or a path that
            is both a file and a folder (``a`` and ``a/b``).
    """
    out = list(paths)
    seen: set[str] = set()
    for p in out:
        raw = p.encode("utf-8", "surrogatepass")
        if len(raw) + margin > MAX_PATH:
            raise InvalidName(f"file path {p[:60]!r}… is {len(raw)} bytes; the limit is"
                              f" {MAX_PATH - margin}")
        for part in p.split("/"):
            n = len(part.encode("utf-8", "surrogatepass"))
            if n + margin > MAX_NAME_COMPONENT:
                raise InvalidName(f"file path {p[:60]!r}: component {part[:40]!r}… is {n}"
                                  f" bytes; the limit is {MAX_NAME_COMPONENT - margin}")
        if p in seen:
            raise InvalidName(f"file path {p[:80]!r} is listed twice")
        seen.add(p)
    folders: set[str] = set()
    for p in out:
        parts = p.split("/")
        folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
    clash = sorted(seen & folders)
    if clash:
        raise InvalidName(f"{clash[0][:80]!r} is both a file and a folder of this version")
    return out


def sidecar_names(stem: str) -> set[str]:
    """The names the hub keeps for its own files beside version ``stem``."""
    return {stem + s for s in SIDECAR_SUFFIXES} | {stem + t for t in SIDECAR_TAILS}


def check_sidecars(stored_paths: Iterable[str], *, stem: str) -> None:
    """Refuse a version file whose stored name is one of the hub's sidecars for ``stem``.

    Args:
        stored_paths: the files' paths as the manifest will hold them.
        stem: the version's stem (``<base>_v<version>``).

    Raises:
        InvalidName: a path equals ``<stem>.sha256``, ``<stem>.sig`` or ``<stem>_meta.json``.
    """
    reserved = sidecar_names(stem)
    for p in stored_paths:
        if p in reserved:
            raise InvalidName(f"file {p!r} would be overwritten by the hub's own sidecar of that"
                              " name; rename it")


__all__ = ["MAX_INT", "MAX_META_BYTES", "MAX_META_DEPTH", "MAX_NAME_COMPONENT", "MAX_PATH",
           "MAX_VERSION_COMPONENT", "check_metadata", "check_relpaths", "check_sidecars",
           "check_version_text", "parse_json_bounded", "sidecar_names"]
