"""verify, fsck and gc: checking stored bytes and the index against each other, and collecting leftovers.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sentenialx.hub import layout
from sentenialx.hub._core import Core, Part, Trust
from sentenialx.hub._views import Views
from sentenialx.hub.errors import (
    InvalidInput,
    NotFound,
    SignatureError,
)
from sentenialx.hub.hashing import Digest, Progress, hash_file
from sentenialx.hub.layout import (
    REGISTRY_JSON,
    ROOT_FILES,
    file_key,
    folder_key,
    meta_key,
    sha256_key,
)
from sentenialx.hub.manifest import FileEntry, Manifest, parse_sha256sum
from sentenialx.hub.refs import validate_name
from sentenialx.hub.release import unrecorded_signatures
from sentenialx.hub.store.base import AbandonedUploads
from sentenialx.hub.store.local import TMP_PREFIX, LocalStore
from sentenialx.hub.values import (
    FsckReport,
    GcReport,
    Problem,
    VerifyReport,
    VersionInfo,
)


class Maintenance(Part):
    """Checks what is stored and removes what nothing names."""

    def __init__(self, core: Core, *, views: Views, trust: Trust) -> None:
        super().__init__(core)
        self.views = views
        self.trust = trust

    def verify(self, ref: str | None = None, *, model: str | None = None, deep: bool = False,
               progress: Progress | None = None) -> VerifyReport:
        """Check stored bytes against manifests, and record what matched in the stat cache."""
        report, fresh = self._verify(ref, model=model, deep=deep, progress=progress)
        self.cache_stats(fresh)
        return report

    def _verify(self, ref: str | None = None, *, model: str | None = None, deep: bool = False,
                progress: Progress | None = None
                ) -> tuple[VerifyReport, list[tuple[str, int, int, int, int, str]]]:
        if ref is not None:
            targets = [self.resolve(ref, include_revoked=True)]
        elif model is not None:
            validate_name(model)
            targets = self.index.list_versions(model, with_files=True)
        else:
            targets = self.index.all_ready_versions()
        report = VerifyReport(deep=deep, versions=len(targets))
        cache = {} if deep else self.index.stat_cache()
        to_hash: list[tuple[VersionInfo, FileEntry, str, Any]] = []
        for v in targets:
            for f in v.files:
                report.files += 1
                key = file_key(v.model, f.path)
                st = self.store.stat(key)
                if st is None:
                    report.problems.append(Problem("missing", key, f"{key}: missing (expected"
                                                   f" sha256 {f.sha256[:12]}…)", v.model,
                                                   v.version, f.sha256, ""))
                    continue
                # Deep mode hashes a resized file too, so its report names the actual
                # digest beside the expected one.
                if st.size != f.size and not deep:
                    report.problems.append(Problem(
                        "changed", key, f"{key}: size {st.size} differs from the manifest's {f.size}",
                        v.model, v.version, f.sha256, f"size={st.size}"))
                    continue
                c = cache.get(key)
                if c is not None and c == (st.size, st.mtime_ns, st.ino, st.ctime_ns, f.sha256):
                    continue
                to_hash.append((v, f, key, st))
            if v.layout == "dir":
                report.problems.extend(self._extra_in_folder(v))
        results = self._hash_many([k for _, _, k, _ in to_hash], progress=progress)
        fresh = []
        for (v, f, key, st), d in zip(to_hash, results, strict=True):
            report.hashed += 1
            report.bytes_hashed += d.size if d else 0
            if d is None:
                report.problems.append(Problem("missing", key, f"{key}: unreadable", v.model,
                                               v.version, f.sha256, ""))
            elif d.sha256 != f.sha256:
                resized = f", size {d.size} not {f.size}" if d.size != f.size else ""
                report.problems.append(Problem(
                    "changed", key, f"{key}: sha256 mismatch (expected {f.sha256}, got {d.sha256}"
                    f"{resized})", v.model, v.version, f.sha256, d.sha256))
            else:
                fresh.append((key, st.size, st.mtime_ns, st.ino, st.ctime_ns, f.sha256))
        return report, fresh

    def _hash_many(self, keys: Sequence[str], *, progress: Progress | None) -> list[Digest | None]:
        def one(key: str) -> Digest | None:
            p = self.store.local_path(key)
            try:
                if p is not None:
                    return hash_file(p, progress=progress)
                return self.store.hash_object(key, progress=progress)
            except (OSError, NotFound):
                return None

        if len(keys) <= 1:
            return [one(k) for k in keys]
        with ThreadPoolExecutor(max_workers=min(len(keys), os.cpu_count() or 2)) as pool:
            return list(pool.map(one, keys))

    def _extra_in_folder(self, v: VersionInfo) -> list[Problem]:
        known = {f.path for f in v.files}
        out = []
        for key, _st in self.store.list(folder_key(v.model, v.stem) + "/"):
            rel = key.split("/", 1)[1]
            # store.list() also yields empty folders ("a/b/"); only files can be extra.
            if rel not in known and not key.endswith("/"):
                out.append(Problem("extra", key, f"{key}: not in the manifest of {v.ref}",
                                   v.model, v.version, "", ""))
        return out

    def fsck(self, model: str | None = None, *, deep: bool = False,
             grace: timedelta = timedelta(hours=1), pubkey: Any = None,
             repair: bool = False) -> FsckReport:
        """Check the index, files, sidecars, views and the event chain against each other.

        Without ``repair`` fsck only reads (the stat cache is not written: a check must
        work on a full disk). With it, every view is rebuilt from the index and every
        file re-hashed into the stat cache first; ``repaired`` says what changed, and
        the problems are what is still wrong afterwards.
        """
        rep = FsckReport()
        if repair:
            rep.repaired.extend(self.views.rebuild())
            before = self.index.stat_cache()
            vr, fresh = self._verify(model=model, deep=True)
            if model is None:
                # Rebuilt, not patched: entries for files that are gone or changed go too.
                self.index.stat_cache_clear()
            self.index.stat_cache_put(fresh)
            for key, *row in fresh:
                if before.get(key) != tuple(row):
                    why = "missing" if key not in before else "stale"
                    rep.repaired.append(f"stat cache: {key} re-hashed and recorded (was {why})")
            gone = set(before) - {r[0] for r in fresh} if model is None else set()
            if gone:
                rep.repaired.append(f"stat cache: dropped {len(gone)} entries no verified file"
                                    " matches")
        else:
            vr, _fresh = self._verify(model=model, deep=deep)
        rep.problems.extend(vr.problems)
        versions = (self.index.list_versions(model, with_files=True) if model
                    else self.index.all_ready_versions())
        rep.versions = len(versions)
        for v in versions:
            rep.problems.extend(self._check_sidecars(v))
        rep.problems.extend(unrecorded_signatures(self.index, self.store, versions))
        # Torn lines are a damaged view (reported below, mended by a rewrite), not a
        # disagreement between the index and its export.
        chain = self.views.verify_log(pubkey=pubkey, torn_ok=True)
        rep.events, rep.chain_head = chain.count, chain.head
        if not chain.ok:
            rep.problems.append(Problem("chain", "events", chain.reason))
        else:
            rep.problems.extend(self._check_events_match(versions if not model else
                                                         self.index.all_ready_versions()))
        for why in self.views.check_export():
            rep.problems.append(Problem("view", layout.EVENTS_EXPORT, why + "; the next write"
                                        " or `sentenialx models fsck --repair` rewrites it"))
        rep.problems.extend(self._check_registry_json())
        try:
            self.trust.trust_store()
        except (SignatureError, InvalidInput) as exc:
            rep.problems.append(Problem("trust", "trust/policy.json", str(exc)))
        rep.problems.extend(self._leftovers(model, grace=grace))
        return rep

    def _leftovers(self, model: str | None, *, grace: timedelta) -> list[Problem]:
        """Everything gc would remove, with its age (see DESIGN.md, order of operations)."""
        out = []
        now = time.time()
        cutoff_dt = datetime.now(UTC) - grace
        for key, size, changed in self._orphans():
            if model and not key.startswith(model + "/"):
                continue
            age = max(0.0, now - changed)
            out.append(Problem("orphan", key, f"{key}: no version names it ({size} bytes, changed"
                               f" {_age(age)} ago); `sentenialx models gc` removes it",
                               age_s=age))
        if not model:
            for name, size, changed in self._staging():
                age = max(0.0, now - changed)
                # A younger folder may be an upload still running, as a young pending row.
                if changed > cutoff_dt.timestamp():
                    continue
                out.append(Problem("staging", name + "/", f"{name}/: upload staging folder left"
                                   f" by a server ({size} bytes, last written {_age(age)} ago);"
                                   " `sentenialx models gc` removes it", age_s=age))
        for p in self.index.pending_versions():
            if model and p.model != model:
                continue
            created = _parse_ts(p.created_at)
            if created > cutoff_dt:
                continue
            age = (datetime.now(UTC) - created).total_seconds()
            out.append(Problem("pending", folder_key(p.model, p.stem),
                               f"{p.model}@{p.version}: registration never completed (crashed?"
                               f" started {_age(age)} ago); `sentenialx models gc` removes it",
                               p.model, p.version, age_s=age))
        if not model and isinstance(self.store, AbandonedUploads):
            for key, age in self.store.abandoned_upload_ages(older_than=cutoff_dt):
                out.append(Problem("upload", key, f"{key}: multipart upload never completed"
                                   f" (started {_age(age)} ago); `sentenialx models gc`"
                                   " aborts it", age_s=age))
        return out

    def _staging(self) -> list[tuple[str, int, float]]:
        """(name, bytes, newest mtime) of each upload staging folder in the hub root.

        They live in the hub folder whatever the store is (see ``_staging.new_staging``),
        so a hub whose bytes are on S3 has them too. The age is the newest mtime of the
        folder and everything in it: a running upload keeps writing, and a file hardlinked
        in (dedup) keeps its old mtime but bumps its folder's.
        """
        out = []
        with contextlib.suppress(OSError):
            for d in self.root.iterdir():
                if not d.name.startswith(STAGING_PREFIX) or not d.is_dir() or d.is_symlink():
                    continue
                size, newest = 0, d.lstat().st_mtime
                seen: set[tuple[int, int]] = set()
                for sub, dirs, files in os.walk(d):
                    for n in dirs + files:
                        with contextlib.suppress(OSError):
                            st = os.lstat(os.path.join(sub, n))
                            newest = max(newest, st.st_mtime)
                            # An upload stages each blob once and links it into place:
                            # the bytes gc frees are counted once per inode.
                            if n in files and (st.st_dev, st.st_ino) not in seen:
                                seen.add((st.st_dev, st.st_ino))
                                size += st.st_size
                out.append((d.name, size, newest))
        return sorted(out)

    def _check_sidecars(self, v: VersionInfo) -> list[Problem]:
        out = []
        key = sha256_key(v.model, v.stem)
        try:
            listed = parse_sha256sum(self.store.read_bytes(key).decode())
            want = {f.path: f.sha256 for f in v.files}
            if listed != want:
                out.append(Problem("sidecar", key, f"{key}: does not match the index's manifest"
                                   f" for {v.ref}", v.model, v.version))
        except (NotFound, InvalidInput, UnicodeDecodeError) as exc:
            out.append(Problem("sidecar", key, f"{key}: {exc}", v.model, v.version))
        mkey = meta_key(v.model, v.stem)
        try:
            doc = json.loads(self.store.read_bytes(mkey))
            if doc.get("digest") != v.digest or doc.get("version") != v.version:
                out.append(Problem("sidecar", mkey, f"{mkey}: digest or version differs from the"
                                   f" index ({v.ref})", v.model, v.version, v.digest or "",
                                   str(doc.get("digest"))))
        except (NotFound, ValueError) as exc:
            out.append(Problem("sidecar", mkey, f"{mkey}: {exc}", v.model, v.version))
        if v.digest != Manifest(v.files).digest:
            out.append(Problem("sidecar", folder_key(v.model, v.stem), f"{v.ref}: stored digest does not"
                               " match its files", v.model, v.version))
        return out

    def _check_events_match(self, versions: Sequence[VersionInfo]) -> list[Problem]:
        registered: dict[tuple[str, str], str] = {}
        for ev in self.index.events():
            if ev.kind in ("register", "import"):
                registered[(ev.model, ev.version)] = str(ev.payload.get("digest"))
            elif ev.kind == "delete":
                registered.pop((ev.model, ev.version), None)
        out = []
        for v in versions:
            d = registered.get((v.model, v.version))
            if d != v.digest:
                out.append(Problem("chain", v.ref, f"{v.ref}: the history records digest"
                                   f" {str(d)[:12]}…, the index {str(v.digest)[:12]}…",
                                   v.model, v.version, str(d), str(v.digest)))
        return out

    def _check_registry_json(self) -> list[Problem]:
        try:
            on_disk = json.loads((self.root / REGISTRY_JSON).read_text())
        except (OSError, ValueError) as exc:
            return [Problem("registry", REGISTRY_JSON, f"{REGISTRY_JSON}: {exc};"
                            " `sentenialx models fsck --repair` rebuilds it")]
        if on_disk != self.views.registry_view():
            return [Problem("registry", REGISTRY_JSON, f"{REGISTRY_JSON} differs from the index;"
                            " `sentenialx models fsck --repair` rebuilds it")]
        return []

    def _named_keys(self) -> tuple[set[str], list[str]]:
        """Keys some ready version names, and key prefixes of registrations in progress."""
        named: set[str] = set()
        for v in self.index.all_ready_versions():
            named.update(layout.version_keys(v))
            named.update(file_key(v.model, f.path) for f in v.files)
        pending = [folder_key(p.model, p.stem) for p in self.index.pending_versions()]
        return named, pending

    def _orphans(self) -> list[tuple[str, int, float]]:
        """(key, size, last change as a Unix time) of everything no version names."""
        named, pending = self._named_keys()
        out = []
        for key, st in self.store.list():
            if "/" not in key.rstrip("/"):
                if key in ROOT_FILES or not key.startswith(TMP_PREFIX):
                    continue
            top = key.split("/", 1)[0]
            if top in ("trust", "keys", "cache", ".cache") or top.startswith(STAGING_PREFIX):
                continue  # staging folders are reported and collected whole, see _staging
            if key in named or (key.endswith("/") and key.rstrip("/") in named):
                continue
            if any(key.startswith(p) for p in pending):
                continue
            out.append((key, st.size, max(st.mtime_ns, st.ctime_ns) / 1e9))
        return out

    def gc(self, *, grace: timedelta = timedelta(hours=1), dry_run: bool = False,
           actor: str | None = None) -> GcReport:
        """Remove what no version names: crashed registrations and stray files."""
        self._refuse_unadopted_seed()
        rep = GcReport(dry_run=dry_run)
        cutoff_dt = datetime.now(UTC) - grace
        cutoff_iso = cutoff_dt.isoformat(timespec="microseconds").replace("+00:00", "Z")
        for p in self.index.pending_versions():
            if p.created_at < cutoff_iso:
                rep.stale_pending.append(f"{p.model}@{p.version}")
                if not dry_run:
                    self.index.remove_stale_pending(p.id, created_before=cutoff_iso)
        orphans = self._orphans()
        cutoff = cutoff_dt.timestamp()
        candidates = [(key, size) for key, size, changed in orphans if changed <= cutoff]
        rep.kept_young = len(orphans) - len(candidates)
        if dry_run:
            # Stale pending rows are still in the index; count their files too.
            stale = {folder_key(p.model, p.stem) for p in self.index.pending_versions()
                     if f"{p.model}@{p.version}" in rep.stale_pending}
            for key, st in self.store.list():
                if any(key.startswith(s) for s in stale) and (key, st.size) not in candidates:
                    candidates.append((key, st.size))
        for key, size in sorted(candidates):
            rep.removed.append(key)
            rep.freed_bytes += size
            if not dry_run:
                with contextlib.suppress(OSError):
                    self.store.delete(key)
        for name, size, changed in self._staging():
            if changed > cutoff:
                rep.kept_young += 1
                continue
            rep.removed.append(name + "/")
            rep.freed_bytes += size
            if not dry_run:
                shutil.rmtree(self.root / name, ignore_errors=True)
        if not dry_run:
            if isinstance(self.store, LocalStore):
                self._remove_empty_dirs()
        if isinstance(self.store, AbandonedUploads):
            rep.removed += (self.store.abandoned_uploads(older_than=cutoff_dt) if dry_run
                            else self.store.abort_uploads(older_than=cutoff_dt))
        if not dry_run:
            # A writer killed between its index commit and the registry.json rename leaves
            # the view one change behind; it is only a view of the index: regenerate it.
            self.views.write_registry_json()
        return rep

    def _refuse_unadopted_seed(self) -> None:
        """A seed-style registry.json naming files the index does not know means un-adopted data."""
        try:
            reg = json.loads((self.root / REGISTRY_JSON).read_text())
        except (OSError, ValueError):
            return
        if not isinstance(reg, dict):
            return
        named, _pending = self._named_keys()
        # Our own view always carries "digest"; an entry without it was written by the seed.
        stray = sorted(str(e.get("file")) for e in reg.values()
                       if isinstance(e, dict) and e.get("file") and "digest" not in e
                       and str(e["file"]) not in named and str(e["file"]).rstrip("/") not in named)
        if stray:
            raise InvalidInput(f"registry.json names files the index does not know ({', '.join(stray[:3])});"
                               " adopt them first with `sentenialx models import-registry"
                               f" {self.root / REGISTRY_JSON}` (gc would delete them)")

    def _remove_empty_dirs(self) -> None:
        base = Path(self.store.root)
        for d in sorted((p for p in base.rglob("*") if p.is_dir()), reverse=True):
            # A staging folder, even empty, may belong to an upload that just started; gc
            # removes it by its own age (see _staging).
            if d.relative_to(base).parts[0].startswith(STAGING_PREFIX):
                continue
            if d.name.startswith(TMP_PREFIX) or d.parent != base:
                with contextlib.suppress(OSError):
                    d.rmdir()


STAGING_PREFIX = f"{TMP_PREFIX}upload-"  # see _staging.new_staging


def _age(seconds: float) -> str:
    s = int(seconds)
    for unit, size, sub, subsize in (("d", 86400, "h", 3600), ("h", 3600, "m", 60),
                                     ("m", 60, "s", 1)):
        if s >= size:
            rest = (s % size) // subsize
            return f"{s // size}{unit}" + (f" {rest}{sub}" if rest else "")
    return f"{s}s"


def _parse_ts(ts: str) -> datetime:
    return datetime.fromisoformat(ts.replace("Z", "+00:00"))


__all__ = ["Maintenance"]
