"""The one local cache of verified blobs: digest-keyed, size-capped, never trusting a writer.

Every remote read goes through it (S3 objects read by :class:`~sentenialx.hub.hub.Hub`,
files downloaded from a served hub by :mod:`sentenialx.hub.transport.http`)::

    <root>/sha256/ab/<sha256>            verified bytes, read-only
    <root>/sha256/ab/<sha256>.verified   the stat seen when they were admitted (a cheap re-check)
    <root>/sha256/ab/<sha256>.partial    a resumable write in progress (HTTP downloads)
    <root>/sha256/ab/<sha256>.lock       serialises work on one blob across processes
    <root>/folders/<digest>/...          hardlinks laid out as a folder version

Invariants:

- A blob is admitted only when the bytes written were hashed while being written
  and matched both the expected sha256 and size; otherwise nothing is left behind.
- :meth:`BlobCache.get` hands out a blob only while its stat still matches the one
  recorded at admission, or it hashes again; a blob that changed is dropped.
- Nothing is written outside ``root``: every name is built from a validated sha256,
  digest or relative path, its folder must resolve inside the root, and files are
  created with ``O_EXCL | O_NOFOLLOW`` and renamed into place, so a symlink planted
  in the cache is replaced, never followed.
- Least recently used blobs are evicted once the cache is over ``max_bytes``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import queue
import re
import stat
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from sentenialx.hub.errors import IntegrityError, InvalidInput, StoreUnavailable
from sentenialx.hub.hashing import WriteBehind, copy_and_hash
from sentenialx.hub.refs import validate_relpath

log = logging.getLogger("sentenialx.cache")

DEFAULT_MAX = 20 * 1024**3
_READ = 4 * 1024 * 1024
_HEX64 = re.compile(r"[0-9a-f]{64}")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


def default_cache_dir() -> Path:
    """``$SENTENIALX_CACHE``, else ``$XDG_CACHE_HOME/sentenialx``, else ``~/.cache/sentenialx``."""
    env = os.environ.get("SENTENIALX_CACHE")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "sentenialx"


def _sha(sha256: str) -> str:
    if not isinstance(sha256, str) or not _HEX64.fullmatch(sha256):
        raise InvalidInput(f"sha256 {str(sha256)[:80]!r} is not 64 lowercase hex digits")
    return sha256


def confined(root: Path, rel: str) -> Path:
    """``root / rel`` for a validated relative path, refused if it would leave ``root``.

    Existing folders on the way are resolved, so a planted symlink that points out of
    the root is caught; missing ones are created by :func:`make_parents`.

    Raises:
        InvalidInput: ``rel`` is not a clean relative path, or resolves outside ``root``.
    """
    validate_relpath(rel)
    dest = root / rel
    base = root.resolve()
    if not dest.parent.resolve().is_relative_to(base):
        raise InvalidInput(f"cache path {rel!r} resolves outside the cache {str(root)!r}")
    return dest


def make_parents(root: Path, dest: Path) -> None:
    """Create ``dest``'s folders, refusing any that is a symlink or resolves outside ``root``.

    Raises:
        InvalidInput: a folder on the way is a symlink or lies outside ``root``.
    """
    base = root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    rel = dest.parent.relative_to(root)
    cur = root
    for part in rel.parts:
        cur = cur / part
        with contextlib.suppress(FileExistsError):
            cur.mkdir()
        if cur.is_symlink() or not cur.is_dir() or not cur.resolve().is_relative_to(base):
            raise InvalidInput(f"cache folder {str(cur)!r} is a symlink or not a folder inside"
                               f" {str(root)!r}; remove it")


def write_atomic(root: Path, dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` (inside ``root``) by a fresh temporary file and a rename.

    The temporary name is unique and opened with ``O_EXCL | O_NOFOLLOW``; the rename
    replaces whatever ``dest`` was (a planted symlink included) without following it.

    Raises:
        InvalidInput: ``dest`` is not inside ``root``.
    """
    make_parents(root, dest)
    tmp = dest.with_name(f".tmp-{uuid.uuid4().hex}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def read_bounded(path: Path, limit: int) -> bytes | None:
    """A regular file's bytes (never through a symlink), or None if absent or over ``limit``."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        data = f.read(limit + 1)
    return data if len(data) <= limit else None


def link_files(root: Path, files: dict[str, Path]) -> None:
    """Make each ``root/<rel>`` name its blob (a hardlink, else a read-only copy).

    Each name is replaced atomically; a symlink already there is replaced, not followed.

    Raises:
        InvalidInput: a relative path is unclean or leads outside ``root``.
    """
    for rel, blob in files.items():
        dest = confined(root, rel)
        make_parents(root, dest)
        with contextlib.suppress(OSError):
            if not dest.is_symlink() and os.path.samefile(blob, dest):
                continue
        tmp = dest.with_name(f".tmp-{uuid.uuid4().hex}")
        try:
            try:
                os.link(blob, tmp)
            except OSError:
                _copy_readonly(blob, tmp)
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)


def _copy_readonly(src: Path, tmp: Path) -> None:
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644)
    with os.fdopen(fd, "wb") as out, open(src, "rb") as f:
        while chunk := f.read(_READ):
            out.write(chunk)
        os.fchmod(out.fileno(), 0o444)


class BlobCache:
    """Verified blobs by sha256 under ``root`` (see the module docstring for the layout)."""

    def __init__(self, root: str | os.PathLike[str], *, max_bytes: int | None = None) -> None:
        self.root = Path(root)
        self.max_bytes = int(max_bytes or os.environ.get("SENTENIALX_CACHE_MAX_BYTES")
                             or DEFAULT_MAX)

    # -- names --------------------------------------------------------------------------
    def path(self, sha256: str) -> Path:
        """Where the verified bytes with this sha256 live (whether or not they are cached).

        Raises:
            InvalidInput: ``sha256`` is not 64 lowercase hex digits.
        """
        s = _sha(sha256)
        return self.root / "sha256" / s[:2] / s

    def _side(self, sha256: str, suffix: str) -> Path:
        p = self.path(sha256)
        return p.with_name(p.name + suffix)

    # -- reads --------------------------------------------------------------------------
    def get(self, sha256: str, size: int) -> Path | None:
        """The cached blob if it is still what was verified, else None.

        Cheap when nothing changed: the size and the stat recorded at admission
        (size, mtime, inode) are compared. Otherwise the blob is hashed again
        and dropped if it no longer matches. A symlink in its place is dropped unread.

        Raises:
            InvalidInput: ``sha256`` is malformed.
        """
        p = self.path(sha256)
        try:
            st = p.lstat()
        except FileNotFoundError:
            return None
        if not stat.S_ISREG(st.st_mode) or st.st_size != size:
            self.drop(sha256)
            return None
        rec = self._side(sha256, ".verified")
        known = read_bounded(rec, 256)
        if known is not None:
            with contextlib.suppress(ValueError):
                if json.loads(known) == _stat_record(st):
                    _touch(rec)
                    return p
        if _hash_nofollow(p) != sha256:
            log.warning("cache: %s no longer matches its sha256; dropped", p)
            self.drop(sha256)
            return None
        self._remember(sha256)
        return p

    # -- writes -------------------------------------------------------------------------
    def put(self, sha256: str, size: int, src: BinaryIO, *, name: str = "") -> Path:
        """Stream ``src`` into the cache, admitting it only if it hashes to ``sha256``/``size``.

        At most ``size + 1`` bytes are read from ``src``.

        Raises:
            IntegrityError: the bytes differ from what the manifest promised (nothing is kept).
            InvalidInput: ``sha256`` is malformed.
        """
        w = self.begin(sha256, size, name=name, resume=False)
        try:
            w.fill(src, limit=size + 1)
            return w.commit()
        finally:
            w.close()

    def begin(self, sha256: str, size: int, *, name: str = "", resume: bool = True
              ) -> PartialBlob:
        """Open a (resumable) write of one blob; see :class:`PartialBlob`.

        Raises:
            InvalidInput: ``sha256`` is malformed, or the cache folder is unsafe.
            StoreUnavailable: the partial file is not a regular file.
        """
        return PartialBlob(self, sha256, size, name=name, resume=resume)

    def partial_path(self, sha256: str) -> Path:
        """Where a resumable write of this blob keeps its bytes."""
        return self._side(sha256, ".partial")

    def _admit(self, tmp: Path, sha256: str) -> Path:
        final = self.path(sha256)
        make_parents(self.root, final)
        # rename() replaces whatever is at the final name, a planted symlink included,
        # without following it.
        os.replace(tmp, final)
        self._remember(sha256)
        self.prune(keep=final)
        return final

    def _remember(self, sha256: str) -> None:
        st = self.path(sha256).lstat()
        write_atomic(self.root, self._side(sha256, ".verified"),
                     json.dumps(_stat_record(st)).encode())

    def drop(self, sha256: str) -> None:
        """Forget a blob (its bytes and its stat record)."""
        for q in (self.path(sha256), self._side(sha256, ".verified")):
            with contextlib.suppress(FileNotFoundError):
                q.unlink()

    @contextlib.contextmanager
    def lock(self, sha256: str) -> Iterator[None]:
        """Serialise work on one blob across processes.

        This only avoids two processes downloading the same bytes: correctness never
        depends on it, since a blob is admitted only after its own bytes were hashed.
        """
        import fcntl

        p = self._side(sha256, ".lock")
        make_parents(self.root, p)
        fd = os.open(p, os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    # -- folders ------------------------------------------------------------------------
    def folder(self, digest: str, files: dict[str, Path]) -> Path:
        """A folder of hardlinks to cached blobs, laid out as the version's folder.

        An existing folder is reused only if each of its names is still the given blob.

        Raises:
            InvalidInput: ``digest`` is malformed or a relative path is unclean.
        """
        d = self.root / "folders" / _sha(digest)
        for rel in files:
            validate_relpath(rel)
        if d.is_dir() and not d.is_symlink() and all(_same(d / rel, p) for rel, p in files.items()):
            return d
        tmp = self.root / "folders" / f".tmp-{uuid.uuid4().hex}"
        make_parents(self.root, tmp)
        tmp.mkdir()
        link_files(tmp, files)
        old = self.root / "folders" / f".old-{uuid.uuid4().hex}"
        with contextlib.suppress(FileNotFoundError):
            os.rename(d, old)
        try:
            os.rename(tmp, d)
        except OSError:
            pass  # another process put an equivalent folder there first
        import shutil

        for leftover in (tmp, old):
            if leftover.is_symlink():
                leftover.unlink()
            else:
                shutil.rmtree(leftover, ignore_errors=True)
        return d

    # -- size and eviction --------------------------------------------------------------
    def entries(self) -> list[tuple[Path, int, float]]:
        """(path, size, last use) of every cached blob."""
        out: list[tuple[Path, int, float]] = []
        top = self.root / "sha256"
        if not top.is_dir():
            return out
        for sub in top.iterdir():
            if len(sub.name) != 2 or sub.is_symlink() or not sub.is_dir():
                continue
            for p in sub.iterdir():
                if not _HEX64.fullmatch(p.name):
                    continue
                try:
                    st = p.lstat()
                except FileNotFoundError:
                    continue
                try:
                    used = p.with_name(p.name + ".verified").lstat().st_mtime
                except FileNotFoundError:
                    used = st.st_mtime
                out.append((p, st.st_size, used))
        return out

    def size(self) -> int:
        """Bytes cached."""
        return sum(s for _, s, _ in self.entries())

    def prune(self, max_bytes: int | None = None, *, keep: Path | None = None) -> int:
        """Drop least recently used blobs until under the cap (never ``keep``); bytes freed.

        ``keep`` is the blob just admitted: a caller is about to use it, even when it is
        bigger than the whole cap. It goes on a later prune.
        """
        cap = self.max_bytes if max_bytes is None else max_bytes
        entries = sorted(self.entries(), key=lambda e: e[2])
        total = sum(s for _, s, _ in entries)
        freed = 0
        for p, s, _ in entries:
            if total <= cap:
                break
            if p == keep:
                continue
            self.drop(p.name)
            total -= s
            freed += s
        return freed


class PartialBlob:
    """One blob being written: every byte is hashed as it is written, then admitted or refused.

    With ``resume`` the bytes of an earlier attempt are kept and hashed again first, so
    an HTTP download continues where it stopped and a damaged partial file is caught
    by the final check like anything else. Writers may also write to :attr:`file` and
    update :attr:`hasher` with the same bytes themselves (the download pipeline does,
    to hash and write on two threads); :meth:`commit` checks both the digest and the
    file's actual size.
    """

    def __init__(self, cache: BlobCache, sha256: str, size: int, *, name: str = "",
                 resume: bool = True) -> None:
        self.cache, self.sha256, self.size = cache, _sha(sha256), int(size)
        self.name = name or sha256
        self.path = cache.partial_path(sha256) if resume else cache.path(sha256).with_name(
            f".tmp-{uuid.uuid4().hex}")
        make_parents(cache.root, self.path)
        flags = os.O_RDWR | os.O_CREAT | _NOFOLLOW | _CLOEXEC | (0 if resume else os.O_EXCL)
        try:
            fd = os.open(self.path, flags, 0o644)
        except OSError as exc:
            raise StoreUnavailable(f"cache file {str(self.path)!r} cannot be opened: {exc}"
                                   " (a symlink there is refused; remove it)") from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise StoreUnavailable(f"cache file {str(self.path)!r} is not a regular file")
        self.file: BinaryIO = os.fdopen(fd, "r+b")
        self.hasher = hashlib.sha256()
        self.have = 0
        kept = os.fstat(fd).st_size
        if kept > self.size:
            self.restart()
        else:
            while block := self.file.read(_READ):
                self.hasher.update(block)
                self.have += len(block)
        self.file.seek(self.have)

    def restart(self) -> None:
        """Throw away what was written and start from byte 0."""
        self.file.seek(0)
        self.file.truncate()
        self.hasher = hashlib.sha256()
        self.have = 0

    def write(self, data: bytes | memoryview) -> None:
        """Hash and append ``data``.

        Raises:
            IntegrityError: more bytes than the expected size (the write is discarded).
        """
        self.have += len(data)
        if self.have > self.size:
            self.discard()
            raise IntegrityError(path=self.name, expected=self.sha256, actual="",
                                 hint=f"more than the expected {self.size} bytes arrived")
        self.hasher.update(data)
        self.file.write(data)

    def fill(self, src: BinaryIO, *, limit: int) -> None:
        """Append up to ``limit`` bytes of ``src``, hashing them in the same pass.

        One thread hashes while another writes, and the bytes written are exactly the
        bytes hashed. A source with ``chunks()`` (an S3 object's parallel ranges) hands
        over its buffers as they arrive, and each is hashed and written as it is, with
        no copy; see :func:`_pour`. Otherwise the source is read into a ring of reused
        buffers. Either way the disk starts writing each chunk as soon as it is written
        (no fdatasync on the way, which stalls the reader), so the one fsync of
        :meth:`commit` that makes the blob durable has only the tail left.

        Raises:
            OSError: reading or writing failed (the caller discards the partial).
        """
        chunks = getattr(src, "chunks", None)
        if callable(chunks):
            self.file.flush()
            self.have += _pour(chunks(), self.file.fileno(), at=self.have, hasher=self.hasher,
                               limit=limit)
            self.file.seek(self.have)
            return
        self.file.flush()
        d = copy_and_hash(src, cast(BinaryIO, _Writeback(self.file.fileno(), at=self.have)),
                          hasher=self.hasher, limit=limit)
        self.have += d.size
        self.file.seek(self.have)

    def commit(self) -> Path:
        """Admit the bytes if their sha256 and size match; the cached blob's path.

        Raises:
            IntegrityError: they do not match; the partial bytes are removed.
        """
        self.file.flush()
        actual = self.hasher.hexdigest()
        written = os.fstat(self.file.fileno()).st_size
        if actual != self.sha256 or written != self.size:
            self.discard()
            raise IntegrityError(path=self.name, expected=self.sha256, actual=actual,
                                 hint="the source copy is damaged; its operator should run"
                                      " `sentenialx models fsck`")
        os.fsync(self.file.fileno())
        os.fchmod(self.file.fileno(), 0o444)
        self.file.close()
        return self.cache._admit(self.path, self.sha256)

    def discard(self) -> None:
        """Remove the partial bytes."""
        self.close()
        self.path.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the file, keeping a resumable partial for the next attempt."""
        if not self.file.closed:
            self.file.close()
        if not self.path.name.endswith(".partial"):
            # A non-resumable write never outlives its call.
            self.path.unlink(missing_ok=True)


_WRITEBACK = 8 * 1024 * 1024
"""Bytes written before the disk is asked to start writing them (:class:`WriteBehind`).

Only a head start: durability still comes from the fsync before a blob is admitted,
which then waits for the last few chunks instead of the whole file. (An fdatasync
instead would make the writer, and through it the download, wait for the disk.)
"""
_QUEUED = 1
"""Chunks waiting for the writer in :func:`_pour`, beyond the one it is writing."""


class _Writeback:
    """Positional writes to a file that start the disk's writeback every ``_WRITEBACK`` bytes."""

    def __init__(self, fd: int, *, at: int) -> None:
        self._fd, self._at = fd, at
        self._behind = WriteBehind(fd, _WRITEBACK, at=at)

    def write(self, data: bytes | memoryview) -> int:
        """Write some of ``data`` at the current offset; the bytes written."""
        n = os.pwrite(self._fd, data, self._at)
        self._at += n
        self._behind.wrote(n)
        return n

    def write_all(self, data: bytes | memoryview) -> None:
        """Write all of ``data``."""
        view = memoryview(data)
        while view:
            view = view[self.write(view):]

    def fileno(self) -> int:
        """The file descriptor written to."""
        return self._fd


def _pour(chunks: Iterator[bytes | memoryview], fd: int, *, at: int, hasher: Any,
          limit: int) -> int:
    """Write ``chunks`` to ``fd`` from offset ``at`` and hash them in order; bytes taken.

    This thread hashes chunk *n* while a writer thread writes it (both only read it: a
    chunk is never changed once handed over, see ``_RangedReader.chunks``), so the bytes
    on disk are exactly the bytes hashed. At most ``limit`` bytes are taken. Memory: the
    chunk being hashed, ``_QUEUED`` waiting and the one being written, whatever the size.

    Raises:
        OSError: a write failed (re-raised here; the caller discards the partial).
    """
    q: queue.Queue[bytes | memoryview | None] = queue.Queue(maxsize=_QUEUED)
    errors: list[BaseException] = []

    def writer() -> None:
        w = _Writeback(fd, at=at)
        while (chunk := q.get()) is not None:
            if errors:
                continue  # keep draining so the producer never blocks after a failure
            try:
                w.write_all(chunk)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)

    t = threading.Thread(target=writer, name="sentenialx-cache-writer", daemon=True)
    t.start()
    taken = 0
    try:
        for chunk in chunks:
            if errors:
                break
            view = memoryview(chunk).cast("B")
            if taken + len(view) > limit:
                view = view[:limit - taken]
            q.put(view)
            hasher.update(view)
            taken += len(view)
            if taken >= limit:
                break
    finally:
        q.put(None)
        t.join()
    if errors:
        raise errors[0]
    return taken


def _stat_record(st: os.stat_result) -> list[int]:
    # Not ctime: making a hardlink (path(), folder()) changes it without touching bytes.
    return [st.st_size, st.st_mtime_ns, st.st_ino]


def _touch(p: Path) -> None:
    # Recency for eviction lives on the record, not on the blob, so the blob's own
    # stat (which the record pins) never changes when it is used.
    with contextlib.suppress(OSError):
        os.utime(p, follow_symlinks=False)


def _hash_nofollow(p: Path) -> str:
    h = hashlib.sha256()
    try:
        fd = os.open(p, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError:
        return ""
    with os.fdopen(fd, "rb") as f:
        while block := f.read(_READ):
            h.update(block)
    return h.hexdigest()


def _same(a: Path, b: Path) -> bool:
    try:
        return not a.is_symlink() and os.path.samefile(a, b)
    except OSError:
        return False


__all__ = ["BlobCache", "PartialBlob", "confined", "default_cache_dir", "link_files",
           "make_parents", "read_bounded", "write_atomic"]
