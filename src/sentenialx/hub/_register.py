"""Registering a version: the order of operations that leaves no version or a complete one.

register: validate every input → reserve the version in the index (``pending``) →
stream each input once, hashing while copying into a temporary file beside its
final name → fsync → claim the final name → read-only → sidecars → one index
transaction marks the version ``ready`` with its files and its event → views.

A crash anywhere leaves a pending row and files no ready version names;
resolution ignores them and ``gc`` removes them after a grace period.

The commit is the truth: once the completing transaction commits, the registration
has succeeded and the caller gets the version. The stat cache and the views written
after it are best-effort; a failure there is logged, and the next write (or ``fsck
--repair``) rewrites them from the index. A retry is safe with an idempotency key,
recorded in that same transaction (see :meth:`Registrar.register`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from sentenialx.hub import bounds
from sentenialx.hub._core import Core, Part, Trust, default_actor
from sentenialx.hub._views import Views
from sentenialx.hub.errors import (
    AlreadyExists,
    Conflict,
    GateFailed,
    HubError,
    InvalidInput,
    InvalidName,
)
from sentenialx.hub.hashing import Digest, Progress, hash_file
from sentenialx.hub.layout import (
    attachment_relpath,
    check_not_sidecar,
    file_key,
    folder_key,
    meta_key,
    role_in_folder,
    sha256_key,
    stem_for,
    weights_relpath,
)
from sentenialx.hub.manifest import ROLES, FileEntry, Manifest
from sentenialx.hub.refs import Version, validate_alias, validate_name, validate_relpath
from sentenialx.hub.store.base import Source
from sentenialx.hub.store.s3 import S3Store, Withdrawn
from sentenialx.hub.values import (
    VersionInfo,
)

log = logging.getLogger("sentenialx.register")

IDEMPOTENCY_KEY_MAX = 200
"""The longest idempotency key (a UUID is 36 characters)."""

SUFFIX_FORMATS = {".onnx": "onnx", ".pt": "torch", ".pth": "torch", ".bin": "torch",
                  ".safetensors": "safetensors", ".json": "json", ".pkl": "pickle"}
"""The ``format`` metadata a file suffix implies when the caller gives none."""


class Registrar(Part):
    """Registers files and folders as new versions (DESIGN.md, order of operations)."""

    def __init__(self, core: Core, *, views: Views, trust: Trust) -> None:
        super().__init__(core)
        self.views = views
        self.trust = trust

    def register(
        self,
        model: str,
        path: str | os.PathLike[str],
        *,
        version: str | None = None,
        bump: str | None = None,
        metadata: dict[str, Any] | None = None,
        parents: Sequence[str] = (),
        data_digest: str | None = None,
        attachments: Sequence[tuple[str, str | os.PathLike[str]]] = (),
        alias: str | None = None,
        link: bool = False,
        actor: str | None = None,
        name: str | None = None,
        progress: Progress | None = None,
        keep_name: bool = False,
        idempotency_key: str | None = None,
    ) -> VersionInfo:
        """Register a file or a folder as a new immutable version of ``model``.

        ``keep_name`` (seed adoption only) keeps a single file that already lies in the
        model's folder under its own name, adopted in place by hardlink.

        ``idempotency_key`` makes a retry safe: the key is recorded with the version in
        the transaction that completes it, with a digest of the request (model, each
        input's relative path, size and sha256, attachments, version or bump, metadata,
        lineage, alias, name). A later call with the key and the same request returns
        that version and stores nothing; with another request it raises Conflict.

        Raises:
            Conflict: ``idempotency_key`` was used for another request.
        """
        validate_name(model)
        if idempotency_key is not None:
            _check_idempotency_key(idempotency_key)
        if version is not None and bump is not None:
            raise InvalidInput("give either --version or --bump, not both")
        if version is not None:
            version = str(Version.parse(bounds.check_version_text(version)))
        if bump is not None and bump not in ("major", "minor", "patch"):
            raise InvalidInput(f"bump {bump!r} is not one of major, minor, patch")
        if alias is not None:
            validate_alias(alias)
            if self.trust.is_gated(alias):
                # A gated alias moves only through its gates, and a version that does not
                # exist yet cannot pass them (it is not signed): refuse before storing anything.
                raise GateFailed(f"alias {alias!r} is gated: register without it, then"
                                 f" `sentenialx models promote {model}@VERSION --to {alias}`",
                                 failed=("gated-alias",))
        src = Path(path)
        layout, sources = self._collect_sources(src)
        base = self._stem_base(name or (src.stem if layout == "file" else src.name))
        ext = src.suffix.lower() if layout == "file" else ""
        if layout == "file":
            check_not_sidecar(weights_relpath(base, ext))
        attach = self._collect_attachments(attachments)
        if layout == "dir":
            bounds.check_relpaths([s.relpath for s in sources], margin=bounds.STORED_NAME_MARGIN)
        meta = self._check_metadata(metadata or {})
        if "format" not in meta:
            meta["format"] = self._detect_format(layout, src, sources)
        lineage = self._lineage(parents, data_digest)
        actor = actor or default_actor()

        def request_digest(content: Sequence[tuple[str, str, int, str]]) -> str:
            return _request_digest(model, layout=layout, content=content, version=version,
                                   bump=bump, meta=meta, parents=parents,
                                   data_digest=data_digest, alias=alias, base=base)

        if idempotency_key is not None:
            earlier = self.index.idempotent_version(idempotency_key)
            if earlier is not None:
                # A retry: hash the inputs (reading, not storing) and compare requests.
                return self._replay(idempotency_key, earlier, model,
                                    request_digest(_hash_inputs(sources, attach)))

        info = self.index.reserve_version(
            model, version=version, bump=bump, stem_for=lambda v: stem_for(base, v), layout=layout,
            meta=meta, lineage=lineage, actor=actor)
        stem = info.stem
        written: list[str] = []
        in_place = False
        content: list[tuple[str, str, int, str]] = []
        try:
            entries: list[FileEntry] = []
            if layout == "file":
                rel = weights_relpath(stem, ext)
                if keep_name and link and sources[0].path.parent == self._model_dir(model):
                    rel = sources[0].path.name
                k = file_key(model, rel)
                local = self.store.local_path(k) if link else None
                # A seed file adopted in place already is the final name: it is claimed as
                # it is and, being the caller's, never removed on failure nor relinked.
                in_place = local is not None and local.exists() and \
                    os.path.samefile(sources[0].path, local)
                d = self._put_file(k, sources[0].path, link=link, progress=progress)
                if not in_place:
                    written.append(k)
                entries.append(FileEntry(rel, d.size, d.sha256, "weights"))
                content.append(("file", sources[0].relpath, d.size, d.sha256))
            else:
                digests = self.store.put_dir(folder_key(model, stem), sources, link=link,
                                             progress=progress)
                written.append(folder_key(model, stem))
                for s, d in zip(sources, digests, strict=True):
                    entries.append(FileEntry(f"{stem}/{s.relpath}", d.size, d.sha256,
                                             role_in_folder(s.relpath)))
                    content.append(("file", s.relpath, d.size, d.sha256))
            for role, apath in attach:
                rel = attachment_relpath(stem, apath.name)
                d = self.store.put_file(file_key(model, rel), apath, progress=progress)
                written.append(file_key(model, rel))
                entries.append(FileEntry(rel, d.size, d.sha256, role))
                content.append((role, apath.name, d.size, d.sha256))
            manifest = Manifest(tuple(entries))
            bounds.check_sidecars([e.path for e in entries], stem=stem)
            bounds.check_relpaths([e.path for e in entries])
            # Every member is deduplicated, folder members included: each is replaced
            # atomically by a link to verified identical bytes.
            if not in_place:
                self._dedup(model, manifest)
            sidecar_sha = sha256_key(model, stem)
            self.store.put_small(sidecar_sha, manifest.sha256sum_text().encode())
            written.append(sidecar_sha)
            meta_doc = self._meta_doc(info, manifest, meta, lineage)
            mkey = meta_key(model, stem)
            self.store.put_small(mkey, (json.dumps(meta_doc, indent=2, sort_keys=True) + "\n")
                                 .encode())
            written.append(mkey)
            done = self.index.complete_version(
                info.id, files=manifest.files, digest=manifest.digest, event_kind="register",
                event_payload={"digest": manifest.digest, "files": len(manifest.files),
                               "size": manifest.total_size, "parents": lineage.get("parents", []),
                               "data_digest": lineage.get("data_digest")},
                actor=actor, alias=alias,
                idempotency=None if idempotency_key is None
                else (idempotency_key, request_digest(content)))
            if done.id != info.id:
                # A concurrent attempt with the same key and request committed first:
                # it is the answer, and ours is dropped like any failed attempt.
                raise _Replayed(done)
        except _Replayed as replay:
            self._drop(info, written)
            return replay.version
        except BaseException:
            # Leave nothing half-made behind: our files and our pending row go. If we are
            # killed before this runs, gc removes both after the grace period.
            self._drop(info, written)
            raise
        # Committed: from here on the registration has succeeded whatever happens. The
        # stat cache only saves a re-hash and the views are rebuilt from the index, so a
        # failure of either is a warning, never an error that would invite a duplicate.
        self._after_commit(done, "stat cache", "the next verify re-hashes its files",
                           lambda: self._remember_stats(model, manifest.files))
        self._after_commit(done, "registry.json and events.jsonl",
                           "the next write or `sentenialx models fsck --repair` rewrites them",
                           self.views.write_registry_json)
        return done

    def _drop(self, info: VersionInfo, written: Sequence[str]) -> None:
        for k in reversed(written):
            with contextlib.suppress(OSError):
                self.store.delete(k)
        with contextlib.suppress(HubError):
            self.index.abort_version(info.id)

    @staticmethod
    def _after_commit(done: VersionInfo, what: str, repair: str,
                      step: Callable[[], None]) -> None:
        try:
            step()
        except (HubError, OSError) as exc:
            # The index raises only hub errors for a failing database (index/sql.py).
            _warn_after_commit(done, what, repair, exc)

    @staticmethod
    def _replay(key: str, earlier: tuple[str, VersionInfo], model: str, digest: str
                ) -> VersionInfo:
        from sentenialx.hub.index.sql import idempotency_conflict

        recorded, info = earlier
        if recorded != digest or info.model != model:
            raise Conflict(idempotency_conflict(key, info.model, info.version))
        log.info("idempotency key %r: %s was registered by an earlier attempt", key[:80],
                 info.ref)
        return info

    def _model_dir(self, model: str) -> Path | None:
        p = self.store.local_path(model)
        return Path(p).resolve() if p is not None else None

    def _put_file(self, dest: str, src: Path, *, link: bool, progress: Progress | None) -> Digest:
        """Store one file; on S3, bytes it already holds are copied server-side instead.

        S3 has no hardlinks, so dedup means not sending the bytes again. The upload
        starts at once, on another thread, while this one hashes the local file (a local
        read outruns the network) and looks for a verified object with that content; the
        upload may complete only once that answer is in. None: it completes, and the
        manifest gets the digest of the bytes it sent. One: the upload is withdrawn
        (aborted: nothing appears under ``dest``) and the object is copied inside the
        store; the manifest gets the digest of what was hashed, which is the copied
        object's content by construction. Killed mid-way, the upload stays invisible and
        `gc` aborts it, as for any upload.
        """
        if not isinstance(self.store, S3Store):
            return self.store.put_file(dest, src, link=link, progress=progress)
        lock, sent = threading.Lock(), [0]

        def counted(n: int) -> None:
            with lock:
                sent[0] += n
            if progress:
                progress(n)

        verdict: Future[bool] = Future()
        with ThreadPoolExecutor(1, thread_name_prefix="sentenialx-upload") as ex:
            upload = ex.submit(self.store.put_file, dest, src, progress=counted, verdict=verdict)
            try:
                pre = hash_file(src)
                other = self._verified_copy_of(pre)
            except BaseException:
                verdict.set_result(False)
                with contextlib.suppress(Exception):
                    upload.result()
                raise
            verdict.set_result(other is None)
            try:
                return upload.result()
            except Withdrawn:
                if other is None:  # only a stored copy withdraws the upload
                    raise
        if self.store.stat(dest) is not None:
            raise AlreadyExists(f"{dest} already exists in {self.store.url}")
        self.store.copy(other, dest)
        if progress:
            progress(max(pre.size - sent[0], 0))
        return pre

    def _verified_copy_of(self, d: Digest) -> str | None:
        """The key of a stored object with these bytes whose stat still matches its last
        verification, if any (never a tampered copy to spread to a new version)."""
        hit = self.index.find_file_by_sha(d.sha256, d.size)
        if hit is None:
            return None
        other = file_key(*hit)
        cached = self.index.stat_cache_get([other]).get(other)
        st = self.store.stat(other)
        if cached and st and cached == (st.size, st.mtime_ns, st.ino, st.ctime_ns, d.sha256):
            return other
        return None

    def _collect_sources(self, src: Path) -> tuple[str, list[Source]]:
        if not src.exists():
            raise InvalidInput(f"input {str(src)!r} does not exist")
        if src.is_file():
            if not os.access(src, os.R_OK):
                raise InvalidInput(f"input {str(src)!r} is not readable")
            return "file", [Source(src.name, src)]
        if not src.is_dir():
            raise InvalidInput(f"input {str(src)!r} is neither a file nor a folder")
        root = src.resolve()
        sources: list[Source] = []
        for dirpath, dirnames, filenames in os.walk(src, followlinks=False):
            for d in list(dirnames):
                p = Path(dirpath) / d
                if p.is_symlink():
                    raise InvalidInput(f"input folder {str(src)!r} holds a symlinked folder"
                                       f" {str(p)!r}; copy it in instead")
            for fn in filenames:
                p = Path(dirpath) / fn
                rel = p.relative_to(src).as_posix()
                if p.is_symlink():
                    target = p.resolve()
                    if not target.is_relative_to(root):
                        raise InvalidInput(f"{str(p)!r} is a symlink that escapes the input folder"
                                           f" (points at {str(target)!r})")
                    if not target.is_file():
                        raise InvalidInput(f"{str(p)!r} is a symlink to a missing file")
                    p = target
                validate_relpath(rel)
                if not os.access(p, os.R_OK):
                    raise InvalidInput(f"input {str(p)!r} is not readable")
                sources.append(Source(rel, p))
        if not sources:
            raise InvalidInput(f"input folder {str(src)!r} is empty")
        sources.sort(key=lambda s: s.relpath)
        return "dir", sources

    @staticmethod
    def _stem_base(raw: str) -> str:
        import re

        base = re.sub(r"[_-]v?\d+\.\d+\.\d+(?:[-+][0-9A-Za-z.-]+)?$", "", raw)
        try:
            return validate_name(base, what="file")
        except InvalidName:
            raise InvalidName(f"file name {raw!r} cannot be a stored name; rename it or pass"
                              " --name with letters, digits, '.', '_' or '-'") from None

    @staticmethod
    def _collect_attachments(
            attachments: Sequence[tuple[str, str | os.PathLike[str]]]) -> list[tuple[str, Path]]:
        out: list[tuple[str, Path]] = []
        names: set[str] = set()
        for role, p in attachments:
            if role not in ROLES or role == "weights":
                raise InvalidInput(f"attachment role {role!r} is not one of "
                                   f"{', '.join(r for r in ROLES if r != 'weights')}")
            path = Path(p)
            if not path.is_file():
                raise InvalidInput(f"attachment {str(path)!r} does not exist or is not a file")
            validate_name(path.name, what="attachment") if path.name != "meta.json" else None
            if path.name in ("meta.json",) or path.name in names:
                raise InvalidName(f"attachment name {path.name!r} is reserved or given twice")
            check_not_sidecar(path.name)
            names.add(path.name)
            out.append((role, path))
        return out

    @staticmethod
    def _check_metadata(meta: dict[str, Any]) -> dict[str, Any]:
        if not isinstance(meta, dict):
            raise InvalidInput("metadata must be a JSON object")
        # Bounded first (depth, size, integer magnitude): a stored value every reader of
        # the version must decode can never be one that breaks them.
        bounds.check_metadata(meta)
        try:
            meta = json.loads(json.dumps(meta, allow_nan=False))
        except (TypeError, ValueError, RecursionError) as exc:
            raise InvalidInput(f"metadata is not JSON: {exc}") from None
        for key in ("metrics", "params"):
            if key in meta and not isinstance(meta[key], dict):
                raise InvalidInput(f"metadata {key!r} must be a JSON object")
        for k, v in meta.get("metrics", {}).items():
            if not isinstance(v, (int, float, dict)) or isinstance(v, bool):
                raise InvalidInput(f"metric {k!r} must be a number (or an object of numbers)")
        for key in ("description", "framework", "format"):
            if key in meta and not isinstance(meta[key], str):
                raise InvalidInput(f"metadata {key!r} must be a string")
        return meta

    @staticmethod
    def _detect_format(layout: str, src: Path, sources: Sequence[Source]) -> str:
        if layout == "file":
            return SUFFIX_FORMATS.get(src.suffix.lower(), src.suffix.lower().lstrip(".") or "binary")
        for s in sources:
            fmt = SUFFIX_FORMATS.get(Path(s.relpath).suffix.lower())
            if fmt and fmt != "json":
                return fmt
        return "folder"

    def _lineage(self, parents: Sequence[str], data_digest: str | None) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if parents:
            resolved = []
            for p in parents:
                label, sep, ref = p.partition("=")
                if not sep:
                    label, ref = "", p
                v = self.resolve(ref)
                resolved.append({"role": label or "parent", "ref": ref, "model": v.model,
                                 "version": v.version, "digest": v.digest})
            out["parents"] = resolved
        if data_digest:
            dd = data_digest.removeprefix("sha256:").lower()
            if len(dd) != 64 or any(c not in "0123456789abcdef" for c in dd):
                raise InvalidInput(f"data digest {data_digest!r} is not a sha256 hex digest")
            out["data_digest"] = dd
        return out

    def _dedup(self, model: str, manifest: Manifest) -> None:
        """Share bytes already stored under another version (hardlink), if verified unchanged."""
        for f in manifest.files:
            for hit in self.index.find_files_by_sha(f.sha256, f.size):
                other = file_key(*hit)
                cached = self.index.stat_cache_get([other]).get(other)
                st = self.store.stat(other)
                # Only link to bytes whose stat still matches their last verification, so a
                # tampered copy is never spread to a new version.
                if not (cached and st and cached == (st.size, st.mtime_ns, st.ino, st.ctime_ns,
                                                      f.sha256)):
                    continue
                if not self._links_all_inside(st.ino, hit, f):
                    continue
                if self.store.dedup(file_key(model, f.path), other):
                    # The new link changed the shared inode's ctime; its bytes are the ones
                    # just checked, so record the fresh stat rather than leave it stale.
                    self._remember_stats(hit[0], [FileEntry(hit[1], f.size, f.sha256)])
                break

    def _links_all_inside(self, ino: int, hit: tuple[str, str], f: FileEntry) -> bool:
        """True when every hardlink of ``hit``'s inode is a file of some version in the hub.

        A ``--link`` registration shares its inode with the caller's own file outside
        the hub; linking another version to that inode would let an edit of the outside
        file break a version that was registered as a copy. Every link is inside when the
        inode's link count equals the number of hub files on that inode.
        """
        p = self.store.local_path(file_key(*hit))
        if p is None:
            return True
        try:
            nlink = os.stat(p).st_nlink
        except OSError:
            return False
        inside = 0
        for m, rel in self.index.find_files_by_sha(f.sha256, f.size):
            st = self.store.stat(file_key(m, rel))
            if st is not None and st.ino == ino:
                inside += 1
        return nlink <= inside

    def _meta_doc(self, info: VersionInfo, manifest: Manifest, meta: dict[str, Any],
                  lineage: dict[str, Any]) -> dict[str, Any]:
        return {
            "model": info.model, "version": info.version, "digest": manifest.digest,
            "created_at": info.created_at, "created_by": info.created_by, "layout": info.layout,
            "metadata": meta, "lineage": lineage,
            "files": [f.to_dict() for f in manifest.files],
        }

    def _remember_stats(self, model: str, files: Iterable[FileEntry]) -> None:
        rows = []
        for f in files:
            k = file_key(model, f.path)
            st = self.store.stat(k)
            if st is not None:
                rows.append((k, st.size, st.mtime_ns, st.ino, st.ctime_ns, f.sha256))
        self.index.stat_cache_put(rows)


class _Replayed(Exception):  # noqa: N818 - a signal inside register, never raised out of it
    def __init__(self, version: VersionInfo) -> None:
        super().__init__(version.ref)
        self.version = version


def _warn_after_commit(done: VersionInfo, what: str, repair: str, exc: BaseException) -> None:
    detail = getattr(exc, "orig", None) or exc
    log.warning("%s is registered, but writing the %s failed (%s: %s); %s", done.ref, what,
                type(exc).__name__, str(detail).splitlines()[0] if str(detail) else "", repair)


def _check_idempotency_key(key: str) -> None:
    if (not isinstance(key, str) or not 0 < len(key) <= IDEMPOTENCY_KEY_MAX
            or not all("!" <= ch <= "~" for ch in key)):
        raise InvalidInput(f"idempotency key must be 1 to {IDEMPOTENCY_KEY_MAX} printable ASCII"
                           " characters without spaces (a UUID will do)")


def _hash_inputs(sources: Sequence[Source], attach: Sequence[tuple[str, Path]]
                 ) -> list[tuple[str, str, int, str]]:
    out: list[tuple[str, str, int, str]] = []
    for s in sources:
        d = hash_file(s.path)
        out.append(("file", s.relpath, d.size, d.sha256))
    for role, p in attach:
        d = hash_file(p)
        out.append((role, p.name, d.size, d.sha256))
    return out


def _request_digest(model: str, *, layout: str, content: Sequence[tuple[str, str, int, str]],
                    version: str | None, bump: str | None, meta: dict[str, Any],
                    parents: Sequence[str], data_digest: str | None, alias: str | None,
                    base: str) -> str:
    """The sha256 of what a registration asks for, in one canonical encoding.

    Inputs count by relative path, size and sha256 (not by where they lie), so a retry
    from another temporary folder, as the server stages uploads, is the same request.
    """
    doc = {"model": model, "layout": layout, "files": [list(c) for c in content],
           "version": version, "bump": bump, "metadata": meta, "parents": list(parents),
           "data_digest": data_digest, "alias": alias, "name": base}
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(raw.encode()).hexdigest()


__all__ = ["IDEMPOTENCY_KEY_MAX", "Registrar"]
