"""How a version looks to Hugging Face clients: its repo id, commit, file paths and blob ids.

Shared by the ``/hf`` routes (``server/hf.py``) and the importer (``_import_hf.py``),
so the name a version is served under and the name it is imported back under are
computed in one place.

- **Repo id.** A model's repo id is its name when Hugging Face accepts that name
  (:func:`hf_accepts`). Every model is also reachable as ``sentenialx/<name>``, and
  a name HF rejects (``--``, a trailing ``-`` or ``.``, over 96 characters) as
  ``sentenialx/x-<first 16 hex of sha256(name)>`` (:func:`repo_id_for`).
- **Commit.** A version's commit is the first 40 hex digits of its manifest digest.
- **Files.** A folder version's files are served without the ``<stem>/`` prefix,
  attachments without ``<stem>_``, so ``config.json`` is at the repo root where
  ``transformers`` looks for it. A version's model card (its first Markdown
  ``report`` attachment) is also served as ``README.md`` when it has no such file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import PurePosixPath

from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.values import VersionInfo

NAMESPACE = "sentenialx"
"""The one namespace the ``/hf`` routes accept: ``sentenialx/<name>``."""
HASHED_PREFIX = "x-"
"""``sentenialx/x-<16 hex>`` names a model whose own name HF rejects."""
CARD = "README.md"
"""Where Hugging Face clients look for a model card."""

_HF_NAME_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?$")
_HASHED_RE = re.compile(r"^x-[0-9a-f]{16}$")
COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
"""A Hugging Face commit id: 40 lowercase hex digits."""


def hf_accepts(name: str) -> bool:
    """True when ``huggingface_hub`` accepts ``name`` as a repo id as it is."""
    return (bool(_HF_NAME_RE.match(name)) and "--" not in name and ".." not in name
            and not name.endswith(".git"))


def hashed_name(model: str) -> str:
    """The ``x-<16 hex>`` stand-in for a model name HF rejects."""
    return HASHED_PREFIX + hashlib.sha256(model.encode()).hexdigest()[:16]


def repo_id_for(model: str) -> str:
    """The repo id Hugging Face clients use for ``model``."""
    return model if hf_accepts(model) else f"{NAMESPACE}/{hashed_name(model)}"


def model_for(name: str, models: list[str]) -> str | None:
    """The model a repo name (without namespace) stands for among ``models``, or None.

    A model's own name wins over a hashed stand-in that happens to look the same.
    """
    if name in models:
        return name
    if _HASHED_RE.match(name):
        for m in models:
            if hashed_name(m) == name:
                return m
    return None


def commit_of(info: VersionInfo) -> str:
    """The version's Hugging Face commit: the first 40 hex digits of its manifest digest."""
    return (info.digest or "")[:40]


def lfs_pointer(entry: FileEntry) -> bytes:
    """The Git LFS pointer file a Hugging Face repo would hold for ``entry``."""
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{entry.sha256}\n"
            f"size {entry.size}\n").encode()


def git_blob_id(data: bytes) -> str:
    """The git blob id of ``data``: sha1 of ``blob <len>\\0`` followed by the bytes."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


@dataclass(frozen=True, slots=True)
class RepoFile:
    """One file of a version at its repo path."""

    path: str
    entry: FileEntry

    @property
    def oid(self) -> str:
        """The git blob id of the file's LFS pointer (what a Hub tree lists as ``oid``)."""
        return git_blob_id(lfs_pointer(self.entry))

    def tree_entry(self) -> dict[str, object]:
        """The file as ``/api/models/{id}/tree`` lists it: every file is an LFS file."""
        pointer = lfs_pointer(self.entry)
        return {"type": "file", "path": self.path, "size": self.entry.size, "oid": self.oid,
                "lfs": {"oid": self.entry.sha256, "size": self.entry.size,
                        "pointerSize": len(pointer)}}


def repo_files(info: VersionInfo) -> dict[str, RepoFile]:
    """The version's files by repo path, sorted by path (see the module docstring)."""
    out: dict[str, RepoFile] = {}
    folder, attach = f"{info.stem}/", f"{info.stem}_"
    for f in sorted(info.files, key=lambda e: e.path):
        short = f.path
        if f.path.startswith(folder):
            short = f.path[len(folder):]
        elif f.path.startswith(attach) and "/" not in f.path:
            short = f.path[len(attach):]
        # Two files that shorten to one name keep their full manifest paths.
        path = f.path if short in out else short
        out[path] = RepoFile(path, f)
    if CARD not in out:
        card = next((f for f in sorted(info.files, key=lambda e: e.path) if _is_card(f)), None)
        if card is not None:
            out[CARD] = RepoFile(CARD, card)
    return dict(sorted(out.items()))


def _is_card(f: FileEntry) -> bool:
    return f.role == "report" and PurePosixPath(f.path).suffix.lower() in (".md", ".markdown")


def directories(paths: list[str]) -> list[str]:
    """Every folder that holds one of ``paths``, sorted."""
    dirs: set[str] = set()
    for p in paths:
        parts = p.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    return sorted(dirs)


__all__ = ["CARD", "COMMIT_RE", "HASHED_PREFIX", "NAMESPACE", "RepoFile", "commit_of",
           "directories", "git_blob_id", "hashed_name", "hf_accepts", "lfs_pointer",
           "model_for", "repo_files", "repo_id_for"]
