"""A local, size-capped cache of verified blobs, keyed by sha256.

Remote stores (S3, a served hub) are read through it: a file is hashed while it
is downloaded and kept only if it matches, so later loads read local disk and
keep working offline on what was last verified. Least recently used entries go
first when the cap is reached.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import BinaryIO

from sentenialx.hub.errors import IntegrityError

DEFAULT_MAX = 20 * 1024**3


class BlobCache:
    """Content-addressed files under ``root/<aa>/<sha256>``."""

    def __init__(self, root: Path, *, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes or os.environ.get("SENTENIALX_CACHE_MAX_BYTES") or DEFAULT_MAX)

    def _path(self, sha256: str) -> Path:
        return self.root / sha256[:2] / sha256

    def get(self, sha256: str, size: int) -> Path | None:
        """The cached file, if present with the right size (callers hash what they read)."""
        p = self._path(sha256)
        try:
            if p.stat().st_size == size:
                os.utime(p)  # recency for pruning
                return p
        except FileNotFoundError:
            return None
        return None

    def put(self, sha256: str, size: int, src: BinaryIO, *, name: str = "") -> Path:
        """Stream ``src`` into the cache, keeping it only if it hashes to ``sha256``.

        Raises:
            IntegrityError: the bytes differ from what the manifest promised.
        """
        final = self._path(sha256)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{uuid.uuid4().hex}"
        h = hashlib.sha256()
        n = 0
        try:
            with open(tmp, "wb") as out:
                while chunk := src.read(4 * 1024 * 1024):
                    h.update(chunk)
                    out.write(chunk)
                    n += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            actual = h.hexdigest()
            if actual != sha256 or n != size:
                raise IntegrityError(path=name or sha256, expected=sha256, actual=actual,
                                     hint="the remote copy is corrupt; run `sentenialx models fsck`")
            os.chmod(tmp, 0o444)
            os.replace(tmp, final)
        finally:
            tmp.unlink(missing_ok=True)
        # Contract-suite fix: prune() could evict the blob just verified (one larger than
        # the whole cap), so callers got a path that no longer existed. Keep it; it goes
        # on a later prune once it is no longer the newest.
        self.prune(keep=final)
        return final

    def folder(self, digest: str, files: dict[str, Path]) -> Path:
        """A folder of hardlinks to cached files, laid out as the version's folder."""
        d = self.root / "folders" / digest
        if not d.exists():
            tmp = self.root / "folders" / f".tmp-{uuid.uuid4().hex}"
            for rel, p in files.items():
                (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                os.link(p, tmp / rel)
            try:
                os.rename(tmp, d)
            except OSError:
                import shutil

                shutil.rmtree(tmp, ignore_errors=True)
        return d

    def entries(self) -> list[tuple[Path, int, float]]:
        """(path, size, last use) of every cached blob."""
        out: list[tuple[Path, int, float]] = []
        if not self.root.exists():
            return out
        for sub in self.root.iterdir():
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for p in sub.iterdir():
                if p.name.startswith(".tmp-"):
                    continue
                st = p.stat()
                out.append((p, st.st_size, st.st_mtime))
        return out

    def size(self) -> int:
        """Bytes cached."""
        return sum(s for _, s, _ in self.entries())

    def prune(self, max_bytes: int | None = None, *, keep: Path | None = None) -> int:
        """Drop least recently used blobs until under the cap (never ``keep``); returns bytes freed."""
        cap = self.max_bytes if max_bytes is None else max_bytes
        entries = sorted(self.entries(), key=lambda e: e[2])
        total = sum(s for _, s, _ in entries)
        freed = 0
        for p, s, _ in entries:
            if total <= cap:
                break
            if p == keep:
                continue
            p.unlink(missing_ok=True)
            total -= s
            freed += s
        return freed
