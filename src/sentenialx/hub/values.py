"""The values the hub hands to its callers: versions, aliases, alias moves and reports.

Plain frozen records with ``to_dict()``; every layer may import them, and every
front end takes them from here (never from ``index/``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sentenialx.hub.manifest import FileEntry, Manifest
from sentenialx.hub.refs import Version


@dataclass(frozen=True, slots=True)
class VersionInfo:
    """One version as the index knows it."""

    id: int
    model: str
    version: str
    state: str
    revoked: bool
    revoke_reason: str | None
    digest: str | None
    stem: str
    layout: str
    meta: dict[str, Any]
    lineage: dict[str, Any]
    size: int
    created_at: str
    created_by: str
    files: tuple[FileEntry, ...] = field(default_factory=tuple)

    @property
    def semver(self) -> Version:
        """The parsed version."""
        return Version.parse(self.version)

    @property
    def ref(self) -> str:
        """``model@version``."""
        return f"{self.model}@{self.version}"

    @property
    def manifest(self) -> Manifest:
        """The version's manifest."""
        return Manifest(self.files)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for ``--json`` and the API."""
        return {
            "model": self.model,
            "version": self.version,
            "digest": self.digest,
            "revoked": self.revoked,
            "revoke_reason": self.revoke_reason,
            "layout": self.layout,
            "stem": self.stem,
            "size": self.size,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "metadata": self.meta,
            "lineage": self.lineage,
            "files": [f.to_dict() for f in self.files],
        }


@dataclass(frozen=True, slots=True)
class AliasInfo:
    """An alias and the version it points at."""

    model: str
    alias: str
    version: str
    updated_at: str
    updated_by: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {"model": self.model, "alias": self.alias, "version": self.version,
                "updated_at": self.updated_at, "updated_by": self.updated_by}


@dataclass(frozen=True, slots=True)
class AliasMove:
    """One row of an alias's history."""

    id: int
    model: str
    alias: str
    version: str | None
    previous: str | None
    ts: str
    actor: str

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {"id": self.id, "model": self.model, "alias": self.alias, "version": self.version,
                "previous": self.previous, "ts": self.ts, "actor": self.actor}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing verify or fsck found wrong."""

    kind: str  # missing | changed | extra | size | sidecar | registry | view | chain | orphan
    #            | staging | pending | upload | alias
    path: str
    message: str
    model: str = ""
    version: str = ""
    expected: str = ""
    actual: str = ""
    # Leftovers gc would remove: seconds since their last change (also in ``message``; not in
    # ``to_dict`` until a served hub's client accepts the field, see _untrusted).
    age_s: float | None = None

    def to_dict(self) -> dict[str, str]:
        """Plain-dict form."""
        return {"kind": self.kind, "path": self.path, "message": self.message, "model": self.model,
                "version": self.version, "expected": self.expected, "actual": self.actual}


@dataclass(slots=True)
class VerifyReport:
    """What :meth:`Hub.verify` checked and found."""

    deep: bool
    versions: int = 0
    files: int = 0
    hashed: int = 0
    bytes_hashed: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {"ok": self.ok, "deep": self.deep, "versions": self.versions, "files": self.files,
                "hashed": self.hashed, "bytes_hashed": self.bytes_hashed,
                "problems": [p.to_dict() for p in self.problems]}


@dataclass(slots=True)
class FsckReport:
    """What :meth:`Hub.fsck` found."""

    problems: list[Problem] = field(default_factory=list)
    versions: int = 0
    events: int = 0
    chain_head: str = ""
    repaired: list[str] = field(default_factory=list)  # what ``repair=True`` rebuilt, one line each

    @property
    def ok(self) -> bool:
        """True when index, files, sidecars, registry.json and the chain agree."""
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {"ok": self.ok, "versions": self.versions, "events": self.events,
                "chain_head": self.chain_head, "problems": [p.to_dict() for p in self.problems],
                "repaired": self.repaired}


@dataclass(slots=True)
class GcReport:
    """What :meth:`Hub.gc` removed (or would remove with ``dry_run``)."""

    dry_run: bool
    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    stale_pending: list[str] = field(default_factory=list)
    kept_young: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {"dry_run": self.dry_run, "removed": self.removed, "freed_bytes": self.freed_bytes,
                "stale_pending": self.stale_pending, "kept_young": self.kept_young}


__all__ = ["AliasInfo", "AliasMove", "FsckReport", "GcReport", "Problem", "VerifyReport",
           "VersionInfo"]
