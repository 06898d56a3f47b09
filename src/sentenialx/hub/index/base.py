"""The index protocol and the records it returns."""

from __future__ import annotations

import json
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


def dumps(obj: Any) -> str:
    """JSON for metadata columns (stable key order, readable)."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)
