"""Where everything lives: the hub folder's own files and every store key of a version.

This module is the one place that builds a key. A version ``distill@1.2.0`` with
stem ``threat_student_v1.2.0`` owns exactly these keys::

    distill/threat_student_v1.2.0.onnx           weights (single-file layout)
    distill/threat_student_v1.2.0/...            its folder (folder layout)
    distill/threat_student_v1.2.0_<name>         attachments
    distill/threat_student_v1.2.0.sha256         the manifest as `sha256sum -c` text
    distill/threat_student_v1.2.0_meta.json      metadata, lineage, files, digest
    distill/threat_student_v1.2.0.sig            the OpenSSF signature bundle

A file of a version may never take one of the sidecar names, or the hub's own
sidecar would overwrite it (:func:`check_not_sidecar`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sentenialx.hub.errors import InvalidName

if TYPE_CHECKING:
    from sentenialx.hub.values import VersionInfo

DEFAULT_ROOT = Path("models") / "artifacts"
REGISTRY_JSON = "registry.json"
REGISTRY_DB = "registry.db"
EVENTS_EXPORT = "events.jsonl"
HEAD_EXPORT = "registry.head.json"
HUB_TOML = "hub.toml"
ROOT_FILES = frozenset({REGISTRY_JSON, REGISTRY_DB, REGISTRY_DB + "-wal", REGISTRY_DB + "-shm",
                        REGISTRY_DB + "-journal", REGISTRY_DB + ".lock", REGISTRY_JSON + ".lock",
                        HUB_TOML, EVENTS_EXPORT, HEAD_EXPORT})
"""Files of the hub folder itself: never a version's, never collected by gc."""
ROOT_DIRS = frozenset({"trust", "keys", "cache", ".cache"})
"""Top-level folders that hold no versions."""
SIDECAR_SUFFIXES = (".sha256", ".sig", "_meta.json")
"""Names the hub writes beside a version's stem; no stored file may end in one."""


def file_key(model: str, relpath: str) -> str:
    """Store key of one file of a version, from its manifest path."""
    return f"{model}/{relpath}"


def folder_key(model: str, stem: str) -> str:
    """Store key of a folder version's folder (also the prefix of a pending version's keys)."""
    return f"{model}/{stem}"


def sha256_key(model: str, stem: str) -> str:
    """Store key of the version's ``sha256sum -c`` sidecar."""
    return f"{model}/{stem}.sha256"


def meta_key(model: str, stem: str) -> str:
    """Store key of the version's metadata sidecar."""
    return f"{model}/{stem}_meta.json"


def sig_key(model: str, stem: str) -> str:
    """Store key of the version's signature bundle."""
    return f"{model}/{stem}.sig"


def weights_relpath(stem: str, ext: str) -> str:
    """Manifest path of a single-file version's weights: the stem plus the input's suffix."""
    return f"{stem}{ext}"


def attachment_relpath(stem: str, name: str) -> str:
    """Manifest path of an attachment: ``<stem>_<file name>``."""
    return f"{stem}_{name}"


def stem_for(base: str, version: str) -> str:
    """A version's stem: ``threat_student`` + ``1.2.0`` gives ``threat_student_v1.2.0``."""
    return f"{base}_v{version}"


def version_keys(info: VersionInfo) -> list[str]:
    """Every key a version owns: its sidecars, its folder and its top-level files."""
    keys = [sha256_key(info.model, info.stem), meta_key(info.model, info.stem),
            sig_key(info.model, info.stem)]
    if info.layout == "dir":
        keys.append(folder_key(info.model, info.stem))
    keys += [file_key(info.model, f.path) for f in info.files if "/" not in f.path]
    return keys


def check_not_sidecar(relpath: str) -> None:
    """Refuse a file whose suffix is one the hub gives its own sidecars (``.sha256``, ``.sig``).

    A single-file version's weights keep their suffix after the stem, so weights named
    ``x.sig`` would be stored as ``<stem>.sig``, the signature's own name. (A name equal
    to ``<stem>_meta.json`` is refused once the stem is known: ``bounds.check_sidecars``.)

    Raises:
        InvalidName: the name ends in ``.sha256`` or ``.sig``.
    """
    name = relpath.rsplit("/", 1)[-1]
    for suffix in SIDECAR_SUFFIXES[:2]:
        if name.lower().endswith(suffix):
            raise InvalidName(f"file name {name!r} ends in {suffix!r}, which the hub keeps for its"
                              " own sidecars; rename it")


def role_in_folder(rel: str) -> str:
    """The role a file inside a folder version gets from its suffix."""
    suffix = Path(rel).suffix.lower()
    if suffix in (".json", ".yaml", ".yml", ".txt", ".model", ".toml"):
        return "config"
    return "weights"


__all__ = ["DEFAULT_ROOT", "EVENTS_EXPORT", "HEAD_EXPORT", "HUB_TOML", "REGISTRY_DB",
           "REGISTRY_JSON", "ROOT_DIRS", "ROOT_FILES", "SIDECAR_SUFFIXES", "attachment_relpath",
           "check_not_sidecar", "file_key", "folder_key", "meta_key", "role_in_folder", "sha256_key",
           "sig_key", "stem_for", "version_keys", "weights_relpath"]
