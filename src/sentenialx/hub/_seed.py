"""Adopting a seed-style store: a registry.json and the files it names.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from sentenialx.hub._core import Core, Part
from sentenialx.hub._register import Registrar
from sentenialx.hub.errors import (
    AlreadyExists,
    IntegrityError,
    InvalidInput,
    NotFound,
)
from sentenialx.hub.hashing import hash_file
from sentenialx.hub.layout import REGISTRY_JSON, ROOT_DIRS, ROOT_FILES, version_keys
from sentenialx.hub.refs import Version, validate_name
from sentenialx.hub.values import (
    VersionInfo,
)

MAX_REGISTRY_BYTES = 64 * 1024 * 1024
"""A seed registry.json larger than this is refused unread."""


class SeedImport(Part):
    """Imports a seed registry.json, verifying every hash before anything is adopted."""

    def __init__(self, core: Core, *, registrar: Registrar) -> None:
        super().__init__(core)
        self.registrar = registrar

    def import_registry(self, registry: str | os.PathLike[str], *,
                        actor: str | None = None) -> list[VersionInfo]:
        """Adopt a seed-style store: its registry.json and the files it names."""
        reg_path = Path(registry)
        if reg_path.is_dir():
            reg_path = reg_path / REGISTRY_JSON
        try:
            if reg_path.stat().st_size > MAX_REGISTRY_BYTES:
                raise InvalidInput(f"{reg_path}: larger than {MAX_REGISTRY_BYTES} bytes")
            data = json.loads(reg_path.read_text())
        except (OSError, ValueError, RecursionError) as exc:
            raise InvalidInput(f"cannot read {reg_path}: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidInput(f"{reg_path}: expected an object of model -> entry")
        base = reg_path.parent.resolve()
        owned = self._owned_paths()
        plan = []
        for model, entry in data.items():
            validate_name(model)
            if not isinstance(entry, dict) or not isinstance(entry.get("file"), str):
                raise InvalidInput(f"{reg_path}: entry {model!r} has no 'file'")
            src = self._confined(reg_path, base, model, entry["file"], owned)
            ver = str(Version.parse(str(entry.get("version") or "1.0.0")))
            if entry.get("hash"):
                d = hash_file(src) if src.is_file() else None
                if d is not None and d.sha256 != str(entry["hash"]).lower():
                    raise IntegrityError(path=str(src), expected=str(entry["hash"]), actual=d.sha256,
                                         hint="nothing was imported")
            plan.append((model, src, ver, entry))
        out = []
        for model, src, ver, entry in plan:
            try:
                out.append(self.index.get_version(model, ver))
                continue
            except NotFound:
                pass
            meta = {"imported_from": str(reg_path), "seed_updated": entry.get("updated")}
            # A seed file inside the hub folder is adopted where it lies, by hardlink and
            # under its own name: nothing in the hub folder is renamed or removed.
            in_hub = src.is_relative_to(self.root)
            try:
                out.append(self.registrar.register(model, src, version=ver, metadata=meta,
                                                   actor=actor, link=in_hub, keep_name=in_hub))
            except AlreadyExists:
                out.append(self.index.get_version(model, ver))
        return out

    def _owned_paths(self) -> set[Path]:
        """Absolute paths of everything a version or the hub itself owns."""
        owned = {self.root / name for name in ROOT_FILES}
        for v in self.index.all_ready_versions() + self.index.pending_versions():
            for k in version_keys(v):
                p = self.store.local_path(k)
                if p is not None:
                    owned.add(Path(p))
        return owned

    def _confined(self, reg_path: Path, base: Path, model: str, file: str,
                  owned: set[Path]) -> Path:
        """The seed file an entry names, if it is a relative path inside the seed folder.

        Raises:
            InvalidInput: the path is absolute, leaves the seed folder (``..``, a symlink),
                is missing, or names a file the hub already owns (its index, its views,
                its trust folder, or another version's bytes).
        """
        where = f"{reg_path}: {model}: file {file!r}"
        if not file or file.startswith(("/", "\\")) or Path(file).is_absolute():
            raise InvalidInput(f"{where} is absolute; a seed registry names files relative to"
                               " its own folder")
        try:
            src = (base / file).resolve(strict=True)
        except (OSError, RuntimeError):
            raise InvalidInput(f"{where} does not exist") from None
        if not src.is_relative_to(base):
            raise InvalidInput(f"{where} resolves outside the seed folder {str(base)!r}")
        if not (src.is_file() or src.is_dir()):
            raise InvalidInput(f"{where} is neither a file nor a folder")
        if src.is_relative_to(self.root):
            rel = src.relative_to(self.root)
            if src in owned or any(src.is_relative_to(o) for o in owned if o.is_dir()) or \
                    (rel.parts and rel.parts[0] in ROOT_DIRS):
                raise InvalidInput(f"{where} is a file the hub already owns; nothing was imported")
        return src


__all__ = ["SeedImport"]
