"""``import-hf``: adopt models from a Hugging Face cache or download folder, verified.

Sources, recognised by their shape:

- a cache folder (``~/.cache/huggingface/hub``, or ``HF_HOME`` holding ``hub/``): every
  ``models--*`` repo in it, or those named with ``repos``;
- one repo folder of a cache (``models--owner--name``), or one of its
  ``snapshots/<commit>`` folders;
- a ``local_dir`` download (``hf download --local-dir``): its
  ``.cache/huggingface/download/*.metadata`` records each file's commit and etag;
  the folder does not say which repo it is, so ``repos`` must name exactly one.

Every file is checked against the hash its source recorded: in a cache, the blob it
links to is named by its sha256 (LFS files) or its git blob id (sha1 of
``blob <len>\\0`` + bytes); in a download folder, its etag is one of the two. A file
with no recorded hash, a link out of the repo's blobs, or a mismatch refuses the
whole import before anything is registered: every selected revision is copied into
a private staging folder inside the hub, hashing while copying, and only when all
of them match does registration begin.

Revisions become versions of the model named like the repo (its name without the
owner), each a folder version whose stem is ``<model>_v<version>``, so a repo
served by a hub's ``/hf`` routes imports back to the same manifest digest. A
revision that a semver ref (``1.2.0``, ``v1.2.0``) names gets that version; the
others get the hub's next patch version. Metadata ``hf`` records the repo and
commit. Refs that are alias names (``main``, tags) become aliases; ranges,
``refs/pr/*`` and gated aliases are reported and left alone.

Idempotent and resumable: a revision whose commit is already in the model (as
metadata ``hf.commit`` or as the prefix of a version digest) is "present" and is
not read again; each registration is all-or-nothing and carries an idempotency key
(``import-hf:<model>:<commit>``), so after Ctrl-C a second run completes the rest.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sentenialx.hub._hf import COMMIT_RE
from sentenialx.hub.errors import GateFailed, IntegrityError, InvalidInput, InvalidName, NotFound
from sentenialx.hub.refs import Version, validate_alias, validate_name, validate_relpath
from sentenialx.hub.store.local import TMP_PREFIX
from sentenialx.hub.values import VersionInfo

if TYPE_CHECKING:
    from sentenialx.hub.hub import Hub

CHUNK = 1024 * 1024
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_SEMVER_REF_RE = re.compile(r"^v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.+-]+)?$")
_LOCAL_META = Path(".cache") / "huggingface" / "download"


@dataclass(frozen=True, slots=True)
class _File:
    relpath: str
    path: Path
    expected: str
    """sha256 (64 hex) or git blob id (40 hex)."""


@dataclass(slots=True)
class _Revision:
    repo_id: str
    commit: str
    files: list[_File]
    refs: list[str] = field(default_factory=list)
    mtime: float = 0.0


@dataclass(frozen=True, slots=True)
class HfImported:
    """What happened to one revision.

    Attributes:
        repo_id: the Hugging Face repo id.
        commit: its commit.
        ref: the version it is (``model@version``).
        digest: that version's manifest digest.
        status: ``imported`` or ``present`` (already in the hub, nothing read).
        aliases: aliases pointed at it by this run.
    """

    repo_id: str
    commit: str
    ref: str
    digest: str
    status: str
    aliases: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for ``--json``."""
        return {"repo_id": self.repo_id, "commit": self.commit, "ref": self.ref,
                "digest": self.digest, "status": self.status, "aliases": list(self.aliases)}


@dataclass(frozen=True, slots=True)
class HfImportReport:
    """Every revision of an import, and the refs it left alone (with why)."""

    results: tuple[HfImported, ...]
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for ``--json``."""
        return {"results": [r.to_dict() for r in self.results], "notes": list(self.notes)}


def model_name_for(repo_id: str) -> str:
    """The model a repo imports into: its name without the owner.

    Raises:
        InvalidName: that name is not a model name here.
    """
    return validate_name(repo_id.rsplit("/", 1)[-1])


# -- reading the source ---------------------------------------------------------------------
def _repo_id_of_folder(folder: Path) -> str:
    # HF ids never contain "--", so the folder name splits back unambiguously.
    return folder.name.removeprefix("models--").replace("--", "/", 1)


def _blob_file(repo: Path, p: Path, rel: str) -> _File:
    blobs = (repo / "blobs").resolve()
    if not p.is_symlink():
        raise InvalidInput(f"{p}: a copy, not a link to the cache's blobs, so nothing records"
                           " its hash; download it again with symlinks, or register it"
                           " with `sentenialx models register`")
    target = p.resolve()
    if target.parent != blobs or not target.is_file():
        raise InvalidInput(f"{p} links to {target}, outside {blobs}; refusing it")
    name = target.name
    if not (_SHA256_RE.match(name) or COMMIT_RE.match(name)):
        raise InvalidInput(f"{p}: its blob {name!r} is named by no hash")
    return _File(rel, target, name)


def _walk(folder: Path, skip: Path | None = None) -> list[tuple[str, Path]]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames
                             if skip is None or (here / d).resolve() != skip.resolve())
        for fn in sorted(filenames):
            p = here / fn
            rel = p.relative_to(folder).as_posix()
            validate_relpath(rel)
            out.append((rel, p))
    return out


def _refs(repo: Path) -> dict[str, list[str]]:
    """Commit -> the ref names pointing at it (``refs/main``, ``refs/v1``, ``refs/pr/1``)."""
    out: dict[str, list[str]] = {}
    refs = repo / "refs"
    if not refs.is_dir():
        return out
    for rel, p in _walk(refs):
        commit = p.read_text(errors="replace").strip()
        if COMMIT_RE.match(commit):
            out.setdefault(commit, []).append(rel)
    return out


def _snapshot(repo: Path, snap: Path, refs: dict[str, list[str]]) -> _Revision:
    commit = snap.name
    if not COMMIT_RE.match(commit):
        raise InvalidInput(f"{snap}: a snapshot folder is named by its 40-hex commit")
    files = [_blob_file(repo, p, rel) for rel, p in _walk(snap)]
    if not files:
        raise InvalidInput(f"{snap} holds no files")
    return _Revision(_repo_id_of_folder(repo), commit, files, sorted(refs.get(commit, [])),
                     snap.stat().st_mtime)


def _repo(repo: Path) -> list[_Revision]:
    snaps = repo / "snapshots"
    if not snaps.is_dir():
        return []
    refs = _refs(repo)
    return [_snapshot(repo, s, refs) for s in sorted(snaps.iterdir()) if s.is_dir()]


def _local_dir(folder: Path, repos: Sequence[str]) -> list[_Revision]:
    if len(repos) != 1:
        raise InvalidInput(f"{folder} is a download folder, which does not record its repo:"
                           " name it with exactly one --repo ID")
    meta_root = folder / _LOCAL_META
    files, commits = [], set()
    for rel, p in _walk(folder, skip=folder / ".cache"):
        meta = meta_root / f"{rel}.metadata"
        try:
            lines = meta.read_text(errors="replace").splitlines()
        except OSError:
            raise InvalidInput(f"{p}: no download record ({meta}), so nothing records its"
                               " hash") from None
        if len(lines) < 2 or not COMMIT_RE.match(lines[0].strip()):
            raise InvalidInput(f"{meta}: not a download record (commit, etag, time)")
        etag = lines[1].strip().strip('"').removeprefix("W/").strip('"')
        if not (_SHA256_RE.match(etag) or COMMIT_RE.match(etag)):
            raise InvalidInput(f"{meta}: etag {etag[:80]!r} is neither a sha256 nor a git blob id")
        commits.add(lines[0].strip())
        files.append(_File(rel, p, etag))
    if len(commits) != 1:
        raise InvalidInput(f"{folder} holds files of {len(commits)} commits; import one at a time")
    return [_Revision(repos[0], commits.pop(), files, [], folder.stat().st_mtime)]


def scan(source: str | os.PathLike[str], *, repos: Sequence[str] = ()) -> list[_Revision]:
    """The revisions ``source`` holds (of ``repos``, when given), with each file's hash.

    Raises:
        InvalidInput: the source is none of the shapes above, a named repo is not in it,
            or a file's hash is recorded nowhere.
    """
    src = Path(source)
    if not src.is_dir():
        raise InvalidInput(f"{src} is not a folder")
    if (src / "hub").is_dir() and any((src / "hub").glob("models--*")):
        src = src / "hub"
    snapshot: Path | None = None
    if src.name.startswith("models--"):
        folders = [src]
    elif src.parent.name == "snapshots" and src.parent.parent.name.startswith("models--"):
        folders, snapshot = [src.parent.parent], src
    elif (src / _LOCAL_META).is_dir():
        return _local_dir(src, repos)
    elif any(src.glob("models--*")):
        folders = sorted(d for d in src.glob("models--*") if d.is_dir())
    else:
        raise InvalidInput(f"{src} is not a Hugging Face cache, a repo or snapshot folder of"
                           " one, or a download folder with its .cache/huggingface records")
    if repos:
        # Only the named repos are read, so a damaged other repo does not stand in the way.
        have = {_repo_id_of_folder(d): d for d in folders}
        missing = [r for r in repos if r not in have]
        if missing:
            raise InvalidInput(f"{', '.join(missing)} not in {src}; it holds"
                               f" {', '.join(sorted(have)) or 'no repos'}")
        folders = [have[r] for r in dict.fromkeys(repos)]
    if snapshot is not None:
        revs = [_snapshot(folders[0], snapshot, _refs(folders[0]))]
    else:
        revs = [r for d in folders for r in _repo(d)]
    if not revs:
        raise InvalidInput(f"{src} holds no model snapshots")
    return revs


# -- verifying and staging ------------------------------------------------------------------
def _stage(f: _File, dst: Path) -> None:
    """Copy ``f`` to ``dst``, hashing while copying, and compare with its recorded hash.

    Raises:
        IntegrityError: the bytes do not match.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(f.path, "rb") as src, open(dst, "xb") as out:
        size = os.fstat(src.fileno()).st_size
        sha256 = hashlib.sha256()
        git = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
        n = 0
        while chunk := src.read(CHUNK):
            sha256.update(chunk)
            git.update(chunk)
            out.write(chunk)
            n += len(chunk)
        out.flush()
        os.fsync(out.fileno())
    actual = sha256.hexdigest() if len(f.expected) == 64 else git.hexdigest()
    if n != size:
        actual = f"{actual} ({n} bytes read, {size} expected)"
    if actual != f.expected:
        raise IntegrityError(path=str(f.path), expected=f.expected, actual=actual,
                             hint="the Hugging Face cache is damaged; nothing was imported."
                                  " Download that revision again")


def _present(hub: Hub, model: str, commit: str) -> VersionInfo | None:
    try:
        versions = hub.versions(model)
    except NotFound:
        return None
    for v in versions:
        hf = v.meta.get("hf")
        if v.state == "ready" and ((isinstance(hf, dict) and hf.get("commit") == commit)
                                   or (v.digest or "").startswith(commit)):
            return v
    return None


def _semver_ref(rev: _Revision) -> str | None:
    tags = sorted((Version.parse(r) for r in rev.refs if _SEMVER_REF_RE.match(r)),
                  key=Version.sort_key)
    return str(tags[-1]) if tags else None


def import_hf(hub: Hub, source: str | os.PathLike[str], *, repos: Sequence[str] = (),
              actor: str | None = None) -> HfImportReport:
    """Import the revisions in ``source`` into ``hub`` (see the module docstring).

    Raises:
        InvalidInput: the source is not a Hugging Face cache or download folder, a named
            repo is not in it, or a file's hash is recorded nowhere.
        InvalidName: a repo's name is not a model name here.
        IntegrityError: a file differs from its recorded hash (nothing is imported).
    """
    revs = scan(source, repos=repos)
    by_model: dict[str, str] = {}
    for rev in revs:
        model = model_name_for(rev.repo_id)
        if by_model.setdefault(model, rev.repo_id) != rev.repo_id:
            raise InvalidName(f"repos {by_model[model]!r} and {rev.repo_id!r} would both be model"
                              f" {model!r}; import them one at a time with --repo")
    # Tagged revisions first (they name their version), the others by age.
    revs.sort(key=lambda r: (r.repo_id, _semver_ref(r) is None,
                             Version.parse(_semver_ref(r) or "0.0.0").sort_key(), r.mtime))
    todo = [r for r in revs if _present(hub, model_name_for(r.repo_id), r.commit) is None]
    staging = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}import-hf-",
                                    dir=None if hub.is_served else hub.root))
    try:
        # Every file of every revision is verified before the first registration, so a
        # damaged cache leaves the hub exactly as it was.
        for i, rev in enumerate(todo):
            for f in rev.files:
                _stage(f, staging / str(i) / rev.commit / f.relpath)
        results: list[HfImported] = []
        notes: list[str] = []
        done: dict[tuple[str, str], VersionInfo] = {}
        for rev in revs:
            model = model_name_for(rev.repo_id)
            info = _present(hub, model, rev.commit)
            status = "present"
            if info is None:
                folder = staging / str(todo.index(rev)) / rev.commit
                info = _register(hub, model, rev, folder, actor=actor)
                status = "imported"
            done[(rev.repo_id, rev.commit)] = info
            results.append(HfImported(rev.repo_id, rev.commit, info.ref, info.digest or "", status))
        results = [_with_aliases(hub, r, rev, done[(rev.repo_id, rev.commit)], notes, actor)
                   for r, rev in zip(results, revs, strict=True)]
        return HfImportReport(tuple(results), tuple(notes))
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _register(hub: Hub, model: str, rev: _Revision, folder: Path, *, actor: str | None
              ) -> VersionInfo:
    version = _semver_ref(rev)
    if version is not None:
        with contextlib.suppress(NotFound):
            hub.resolve(f"{model}@{version}", include_revoked=True)
            # Another commit already holds that number: this one takes the next free one.
            version = None
    meta = {"hf": {"repo": rev.repo_id, "commit": rev.commit},
            "description": f"imported from Hugging Face {rev.repo_id}@{rev.commit}"}
    info = hub.register(model, folder, version=version, metadata=meta, name=model,
                        link=not hub.is_served, actor=actor,
                        idempotency_key=f"import-hf:{model}:{rev.commit}")
    expected = {f"{info.stem}/{f.relpath}": f.expected for f in rev.files}
    for e in info.files:
        want = expected.get(e.path)
        # A git blob id was checked while staging; the store's own sha256 is the truth now.
        if want is not None and len(want) == 64 and e.sha256 != want:
            raise IntegrityError(path=e.path, expected=want, actual=e.sha256,
                                 hint=f"run `sentenialx models fsck {model}`")
    return info


def _with_aliases(hub: Hub, res: HfImported, rev: _Revision, info: VersionInfo,
                  notes: list[str], actor: str | None) -> HfImported:
    current = {a.alias: a.version for a in hub.aliases(info.model)}
    moved = []
    for ref in rev.refs:
        if _SEMVER_REF_RE.match(ref):
            continue  # it names the version itself
        try:
            validate_alias(ref)
        except InvalidName:
            notes.append(f"{rev.repo_id}: ref {ref!r} is not an alias name here; left alone")
            continue
        if current.get(ref) == info.version:
            continue
        if hub.is_gated(ref):
            notes.append(f"{rev.repo_id}: ref {ref!r} is a gated alias here; promote"
                         f" {info.ref} yourself (`sentenialx models promote`)")
            continue
        try:
            hub.set_alias(info.ref, ref, expect=current.get(ref, ""), actor=actor)
        except GateFailed as exc:
            notes.append(f"{rev.repo_id}: alias {ref!r} not moved: {exc}")
            continue
        moved.append(ref)
    return HfImported(res.repo_id, res.commit, res.ref, res.digest, res.status, tuple(moved))


__all__ = ["HfImportReport", "HfImported", "import_hf", "model_name_for", "scan"]
