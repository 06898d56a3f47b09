"""The one read path: resolve, read once while hashing, match the manifest, apply the trust policy.

The same code for every transport: the bytes come from ``store.open_entry`` (a local
file, an S3 object), through the verified cache for stores that are not local files,
which a served hub fills itself (:class:`~sentenialx.hub.store.base.FillsCache`:
resumable downloads); whatever the source, they are hashed against the manifest here
before a caller or a loader sees them.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, cast

from sentenialx.hub._core import Core, Part, Trust
from sentenialx.hub.cache import link_files
from sentenialx.hub.errors import (
    IntegrityError,
    NotFound,
)
from sentenialx.hub.hashing import Progress, hash_file
from sentenialx.hub.layout import file_key, folder_key
from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.store.base import FillsCache, Presigns
from sentenialx.hub.values import (
    VersionInfo,
)

Opener = Callable[[int, int], IO[bytes]]
"""``opener(start, end)``: a binary stream of a stored object from byte ``start`` (``end`` inclusive)."""
_SKIP_CHUNK = 1024 * 1024
log = logging.getLogger("sentenialx.read")


class Reader(Part):
    """Hands out verified bytes and paths, never anything the manifest or the policy refuses."""

    def __init__(self, core: Core, *, trust: Trust) -> None:
        super().__init__(core)
        self.trust = trust

    def path(self, ref: str, *, include_revoked: bool = False, trust: str | None = None,
             progress: Progress | None = None) -> Path:
        """Absolute path of the verified weights file (or folder) of a version."""
        info = self.resolve(ref, include_revoked=include_revoked)
        self.trust.check_trust(info, mode=trust)
        if self.cache is not None:
            return self._materialise(info, progress=progress)
        files = [f for f in info.files if info.layout != "dir" or f.path.startswith(info.stem + "/")]
        if info.layout != "dir":
            files = [self.weights_entry(info)]
        self._verify_in_place(info, files)
        base = Path(self.store.root)
        if info.layout == "dir":
            return base / folder_key(info.model, info.stem)
        return base / file_key(info.model, files[0].path)

    def _verify_in_place(self, info: VersionInfo, files: Sequence[FileEntry]) -> None:
        """Check the files a path hands out, as verify does: stat cache first, else re-hash.

        A file whose stat still matches the one recorded when its bytes were last
        hashed is unchanged; any other is hashed now and refused on a mismatch. A
        folder must hold nothing the manifest does not list, since a loader given the
        folder may read any file in it.
        """
        keys = [file_key(info.model, f.path) for f in files]
        cached = self.index.stat_cache_get(keys)
        fresh = []
        for f, k in zip(files, keys, strict=True):
            st = self.store.stat(k)
            if st is None:
                raise IntegrityError(f"{k}: missing (expected sha256 {f.sha256[:12]}…); run"
                                     f" `sentenialx models fsck {info.model}`", path=f.path,
                                     expected=f.sha256)
            if cached.get(k) == (st.size, st.mtime_ns, st.ino, st.ctime_ns, f.sha256):
                continue
            p = self.store.local_path(k)
            d = hash_file(p) if p is not None else self.store.hash_object(k)
            if d.size != f.size or d.sha256 != f.sha256:
                raise IntegrityError(path=f.path, expected=f.sha256, actual=d.sha256,
                                     hint=f"run `sentenialx models fsck {info.model}`")
            fresh.append((k, st.size, st.mtime_ns, st.ino, st.ctime_ns, f.sha256))
        if info.layout == "dir":
            known = {file_key(info.model, f.path) for f in info.files}
            for k, _st in self.store.list(folder_key(info.model, info.stem) + "/"):
                if not k.endswith("/") and k not in known:
                    raise IntegrityError(f"{k}: not in the manifest of {info.ref}; run"
                                         f" `sentenialx models fsck {info.model}`", path=k)
        if fresh:
            self.cache_stats(fresh)

    def _materialise(self, info: VersionInfo, *, progress: Progress | None = None) -> Path:
        """Verified local copies of the files a path hands out (via the cache); their path.

        Only the weights file, or the folder's files, are fetched: attachments are not
        part of what a loader reads.
        """
        if info.layout == "dir":
            targets = [f for f in info.files if f.path.startswith(info.stem + "/")]
        else:
            targets = [self.weights_entry(info)]
        paths = {f.path: self.cached(info, f, progress=progress) for f in targets}
        if self.core.files is not None:
            # The names come from a validated version record; link_files() confines each
            # one under the files root again and replaces, never follows, what is there.
            link_files(self.core.files, {f"{info.model}/{p}": c for p, c in paths.items()})
            rel = info.stem if info.layout == "dir" else targets[0].path
            return self.core.files / info.model / rel
        if info.layout == "dir":
            return self.cache.folder(info.digest or "", {p[len(info.stem) + 1:]: c for p, c in
                                                         paths.items()})
        return Path(paths[targets[0].path])

    def cached(self, info: VersionInfo, entry: FileEntry, *, progress: Progress | None = None
               ) -> Path:
        """The verified cache's copy of one file of a version, brought in if missing.

        Raises:
            IntegrityError: the bytes brought in do not match the manifest.
            StoreUnavailable: the source is unreachable and the file is not cached.
        """
        hit = self.cache.get(entry.sha256, entry.size)
        if hit is not None:
            return Path(hit)
        if isinstance(self.store, FillsCache):
            return Path(self.store.fetch(info, entry, progress=progress))
        with self.store.open_entry(info, entry) as src:
            return Path(self.cache.put(entry.sha256, entry.size, src, name=entry.path))

    def open_bytes(self, ref: str, *, file: str | None = None, include_revoked: bool = False,
                   trust: str | None = None, progress: Progress | None = None) -> bytes:
        """Read a version's file once, hashing as it is read, and return verified bytes."""
        info = self.resolve(ref, include_revoked=include_revoked)
        self.trust.check_trust(info, mode=trust)
        entry = self._entry(info, file)
        return self.read_entry(info, entry, progress=progress)

    def _entry(self, info: VersionInfo, file: str | None) -> FileEntry:
        if file is None:
            return self.weights_entry(info)
        by = info.manifest.by_path()
        if file in by:
            return by[file]
        for f in info.files:
            if f.path.endswith("/" + file) or f.path == f"{info.stem}_{file}":
                return f
        raise NotFound(f"{info.ref} has no file {file!r}; files: "
                       f"{', '.join(f.path for f in info.files)}", what="file")

    def read_entry(self, info: VersionInfo, entry: FileEntry, *,
                   progress: Progress | None = None) -> bytes:
        """One file of a resolved version, read once and matched to the manifest."""
        import hashlib

        with self._source(info, entry, progress) as src:
            data = src.read(entry.size + 1)
        actual = hashlib.sha256(data).hexdigest()
        if len(data) != entry.size or actual != entry.sha256:
            raise self._mismatch(info, entry, actual)
        return data

    def _source(self, info: VersionInfo, entry: FileEntry, progress: Progress | None
                ) -> IO[bytes]:
        """The bytes to hash: the cached copy of a remote file, else the store's own."""
        if self.cache is not None:
            return open(self.cached(info, entry, progress=progress), "rb")  # noqa: SIM115
        return cast(IO[bytes], self.store.open_entry(info, entry))

    def _mismatch(self, info: VersionInfo, entry: FileEntry, actual: str) -> IntegrityError:
        """The error for bytes of ``entry`` that hashed to ``actual``."""
        if self.cache is not None:
            # A cached copy that changed after it was admitted is never used again.
            self.cache.drop(entry.sha256)
            return IntegrityError(path=entry.path, expected=entry.sha256, actual=actual,
                                  hint="the cached copy changed; it was dropped, try again")
        return IntegrityError(path=entry.path, expected=entry.sha256, actual=actual,
                              hint=f"run `sentenialx models fsck {info.model}`")

    def save_entry(self, info: VersionInfo, entry: FileEntry, dest: Path, *,
                   progress: Progress | None = None) -> Path:
        """Stream one file of a resolved version to ``dest``, hashed while written.

        Memory stays at a few chunks whatever the file size. The bytes land under a
        temporary name beside ``dest`` and are renamed into place only once their size
        and sha256 match the manifest, so ``dest`` never holds unverified bytes.
        """
        import tempfile

        from sentenialx.hub.hashing import copy_and_hash

        src = self._source(info, entry, progress)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
        try:
            with src, os.fdopen(fd, "wb") as out:
                got = copy_and_hash(cast(Any, src), out, progress=progress)
            if got.size != entry.size or got.sha256 != entry.sha256:
                raise self._mismatch(info, entry, got.sha256)
            os.chmod(tmp, 0o644)  # mkstemp's 0600 would make a shared download unreadable
            os.replace(tmp, dest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return dest

    def read_files(self, ref: str, *, include_revoked: bool = False,
                   roles: Sequence[str] = ("weights", "config"),
                   trust: str | None = None) -> dict[str, bytes]:
        """Verified bytes of every file of a version with one of ``roles``, keyed by path."""
        info = self.resolve(ref, include_revoked=include_revoked)
        self.trust.check_trust(info, mode=trust)
        return {f.path: self.read_entry(info, f) for f in info.files if f.role in roles}

    def load(self, ref: str, *, file: str | None = None, include_revoked: bool = False,
             trust: str | None = None) -> Any:
        """Load a version's weights with the loader its format calls for, from verified bytes."""
        from sentenialx.hub.loaders import format_for, load_bytes

        info = self.resolve(ref, include_revoked=include_revoked)
        self.trust.check_trust(info, mode=trust)
        entry = self._entry(info, file)
        fmt = format_for(entry.path) or str(info.meta.get("format") or "")
        data = self.read_entry(info, entry)
        return load_bytes(data, fmt=fmt, name=f"{info.ref}:{entry.path}")

    def byte_source(self, info: VersionInfo, entry: FileEntry) -> tuple[int, Opener]:
        """The stored size of one file and an opener for a byte range of it, as stored."""
        return stored_bytes(self.store, file_key(info.model, entry.path))

    def verified_source(self, info: VersionInfo, entry: FileEntry) -> tuple[int, Opener]:
        """Like :meth:`byte_source`, but what the opener gives is checked against the manifest.

        Each opened stream reads the whole stored file and hashes it; the requested
        range passes through as it is read, except its last piece, which is handed
        out only once the file's size and sha256 match ``entry`` (see
        :class:`VerifiedRange`).
        """
        size, opener = self.byte_source(info, entry)
        where = f"{info.ref}:{entry.path}"

        def open_verified(start: int, end: int) -> IO[bytes]:
            stream = VerifiedRange(opener(0, max(size - 1, 0)), entry, start=start, end=end,
                                   where=where, hint=f"run `sentenialx models fsck {info.model}`")
            return cast(IO[bytes], stream)

        return size, open_verified

    def presigned_url(self, info: VersionInfo, entry: FileEntry, *, expires: int) -> str | None:
        """A short-lived URL of one file's stored bytes, or None when the store has no such URLs.

        The bytes are as stored, not verified: the client that follows the URL hashes
        them against the manifest, as it does every download.
        """
        if not isinstance(self.store, Presigns):
            return None
        return self.store.presign_get(file_key(info.model, entry.path), expires=expires,
                                      filename=Path(entry.path).name)

    def diff(self, a: str, b: str) -> dict[str, Any]:
        """Compare two versions: files added, removed, changed; metadata and metrics."""
        return diff_versions(self.resolve(a, include_revoked=True),
                             self.resolve(b, include_revoked=True))


class VerifiedRange(io.RawIOBase):
    """Bytes ``start..end`` of a stored file, never the last of them before the whole file verifies.

    The source is the file from its first byte. Bytes before ``start`` are hashed and
    dropped; the range is hashed and returned as it is read; when a read would
    complete the range, the rest of the file is hashed first and the read raises
    :class:`IntegrityError` instead of returning, if the size or sha256 differs
    from the manifest. A client streaming from it thus gets either every byte of
    the range, verified, or a body cut short: never a complete wrong answer.
    """

    def __init__(self, src: IO[bytes], entry: FileEntry, *, start: int, end: int, where: str,
                 hint: str) -> None:
        super().__init__()
        self._src = src
        self._entry = entry
        self._skip = start
        self._left = max(end - start + 1, 0)
        self._hash = hashlib.sha256()
        self._seen = 0
        self._where = where
        self._hint = hint

    def readable(self) -> bool:
        """Always True."""
        return True

    def _take(self, n: int) -> bytes:
        parts = []
        while n > 0:
            chunk = self._src.read(min(n, _SKIP_CHUNK))
            if not chunk:
                break
            self._hash.update(chunk)
            self._seen += len(chunk)
            n -= len(chunk)
            parts.append(chunk)
        return b"".join(parts)

    def read(self, size: int | None = -1) -> bytes:
        """Up to ``size`` bytes of the range (all that is left when negative).

        Raises:
            IntegrityError: the stored file does not match its manifest entry.
        """
        if self._left == 0:
            return b""
        if self._skip:
            self._take(self._skip)
            self._skip = 0
        want = self._left if size is None or size < 0 else min(size, self._left)
        data = self._take(want)
        self._left -= len(data)
        if len(data) < want:
            self._left = 0
            self._refuse()
        if self._left == 0:
            # The last piece of the range waits until every byte of the file is hashed.
            while self._take(_SKIP_CHUNK):
                pass
            if self._seen != self._entry.size or self._hash.hexdigest() != self._entry.sha256:
                self._refuse()
        return data

    def _refuse(self) -> None:
        actual = self._hash.hexdigest() if self._seen == self._entry.size else ""
        log.error("%s: stored bytes differ from the manifest (%d bytes, sha256 %s; expected %d,"
                  " %s); not served", self._where, self._seen, actual[:12] or "?",
                  self._entry.size, self._entry.sha256[:12])
        raise IntegrityError(path=self._entry.path, expected=self._entry.sha256, actual=actual,
                             hint=self._hint)

    def close(self) -> None:
        """Close the source."""
        try:
            self._src.close()
        finally:
            super().close()


def diff_versions(va: VersionInfo, vb: VersionInfo) -> dict[str, Any]:
    """Files added, removed and changed, and metrics and metadata that differ, from ``va`` to ``vb``."""

    def rel(v: VersionInfo) -> dict[str, FileEntry]:
        out = {}
        for f in v.files:
            p = f.path
            for prefix in (v.stem + "/", v.stem + "_", v.stem):
                if p.startswith(prefix):
                    p = p[len(prefix):] or p
                    break
            out[f"{f.role}:{p}"] = f
        return out

    fa, fb = rel(va), rel(vb)
    changed = [{"file": k, "a": fa[k].sha256, "b": fb[k].sha256, "size_a": fa[k].size,
                "size_b": fb[k].size} for k in sorted(fa.keys() & fb.keys())
               if fa[k].sha256 != fb[k].sha256]
    ma, mb = va.meta.get("metrics", {}), vb.meta.get("metrics", {})
    metrics = {}
    for k in sorted(set(ma) | set(mb)):
        x, y = ma.get(k), mb.get(k)
        d: dict[str, Any] = {"a": x, "b": y}
        if isinstance(x, (int, float)) and isinstance(y, (int, float)):
            d["delta"] = y - x
        if x != y:
            metrics[k] = d
    meta = {k: {"a": va.meta.get(k), "b": vb.meta.get(k)}
            for k in sorted(set(va.meta) | set(vb.meta))
            if k != "metrics" and va.meta.get(k) != vb.meta.get(k)}
    return {"a": va.ref, "b": vb.ref, "same_digest": va.digest == vb.digest,
            "added": sorted(fb.keys() - fa.keys()), "removed": sorted(fa.keys() - fb.keys()),
            "changed": changed, "metrics": metrics, "metadata": meta}



def stored_bytes(store: Any, key: str) -> tuple[int, Opener]:
    """Size and opener for a stored object: a plain file when the store is local.

    Raises:
        NotFound: the object is missing from the store.
    """
    local = store.local_path(key)
    if local is not None:
        try:
            size = os.stat(local).st_size
        except FileNotFoundError:
            raise NotFound(f"{key} is missing from the store; run `sentenialx models fsck`",
                           what="file") from None

        def open_local(start: int, _end: int) -> IO[bytes]:
            f = open(local, "rb")  # noqa: SIM115 - FileStream closes it
            if start:
                f.seek(start)
            return f

        return size, open_local
    st = store.stat(key)
    if st is None:
        raise NotFound(f"{key} is missing from the store; run `sentenialx models fsck`",
                       what="file")

    def open_remote(start: int, end: int) -> IO[bytes]:
        try:
            f: IO[bytes] = store.open_read(key, start=start, end=end)
        except TypeError:  # a store without ranged reads: skip to the start
            f = store.open_read(key)
            left = start
            while left > 0:
                got = f.read(min(_SKIP_CHUNK, left))
                if not got:
                    break
                left -= len(got)
        return f

    return int(st.size), open_remote


__all__ = ["Opener", "Reader", "VerifiedRange", "diff_versions", "stored_bytes"]
