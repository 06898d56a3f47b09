"""A version's manifest: its files, their sizes and sha256, in one canonical form.

The version digest is the sha256 of :meth:`Manifest.canonical_bytes` and is
computed nowhere else. Paths are relative to the model's folder, so the
``.sha256`` sidecar written beside a version passes ``sha256sum -c`` when run in
that folder.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from sentenialx.hub.errors import InvalidInput
from sentenialx.hub.refs import validate_relpath

_HEX64 = re.compile(r"[0-9a-f]{64}")
ROLES = ("weights", "config", "log", "chart", "report", "other")
MANIFEST_SCHEMA = "sentenialx.manifest/v1"


def canonical_json(obj: Any) -> bytes:
    """The one canonical JSON encoding used for every digest in the hub."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a version."""

    path: str
    size: int
    sha256: str
    role: str = "weights"

    def __post_init__(self) -> None:
        validate_relpath(self.path)
        if self.role not in ROLES:
            raise InvalidInput(f"file role {self.role!r} is not one of {', '.join(ROLES)}")
        if not _HEX64.fullmatch(self.sha256):
            raise InvalidInput(f"{self.path}: sha256 {self.sha256!r} is not 64 lowercase hex digits")
        if self.size < 0:
            raise InvalidInput(f"{self.path}: negative size")

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form used in the canonical encoding."""
        return {"path": self.path, "size": self.size, "sha256": self.sha256, "role": self.role}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FileEntry:
        """Inverse of :meth:`to_dict`.

        Raises:
            InvalidInput: a field is missing or malformed.
        """
        try:
            return cls(str(d["path"]), int(d["size"]), str(d["sha256"]), str(d.get("role", "weights")))
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"manifest entry {d!r} is malformed: {exc}") from None


@dataclass(frozen=True, slots=True)
class Manifest:
    """The files of a version, sorted by path."""

    files: tuple[FileEntry, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        ordered = tuple(sorted(self.files, key=lambda f: f.path))
        object.__setattr__(self, "files", ordered)
        seen: set[str] = set()
        for f in ordered:
            if f.path in seen:
                raise InvalidInput(f"manifest lists {f.path!r} twice")
            seen.add(f.path)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (the canonical encoding's input)."""
        return {"schema": MANIFEST_SCHEMA, "files": [f.to_dict() for f in self.files]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        """Inverse of :meth:`to_dict`.

        Raises:
            InvalidInput: the manifest is malformed.
        """
        if not isinstance(d, dict) or d.get("schema") != MANIFEST_SCHEMA or not isinstance(
            d.get("files"), list
        ):
            raise InvalidInput("manifest is malformed: expected {'schema': ..., 'files': [...]}")
        return cls(tuple(FileEntry.from_dict(f) for f in d["files"]))

    def canonical_bytes(self) -> bytes:
        """The bytes whose sha256 is the version digest."""
        return canonical_json(self.to_dict())

    @property
    def digest(self) -> str:
        """The version digest: sha256 of the canonical manifest."""
        return hashlib.sha256(self.canonical_bytes()).hexdigest()

    @property
    def total_size(self) -> int:
        """Sum of file sizes."""
        return sum(f.size for f in self.files)

    def weights(self) -> tuple[FileEntry, ...]:
        """The files with role ``weights``."""
        return tuple(f for f in self.files if f.role == "weights")

    def by_path(self) -> dict[str, FileEntry]:
        """Entries keyed by path."""
        return {f.path: f for f in self.files}

    def sha256sum_text(self) -> str:
        """The ``.sha256`` sidecar in ``sha256sum -c`` format, one line per file."""
        return "".join(f"{f.sha256}  {f.path}\n" for f in self.files)


def parse_sha256sum(text: str) -> dict[str, str]:
    """Parse a ``sha256sum`` file into ``{path: sha256}``.

    Raises:
        InvalidInput: a line does not parse.
    """
    out: dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        digest, sep, path = line.partition("  ")
        if not sep:
            digest, sep, path = line.partition(" *")
        if not sep or len(digest) != 64:
            raise InvalidInput(f"sha256 sidecar line {n} does not parse: {line[:80]!r}")
        out[path] = digest.lower()
    return out
