"""One-pass hashing: hash while copying, hash while reading, hash many files in parallel.

Every input byte is read once. ``hashlib`` releases the GIL for large buffers,
and so do file writes, so a writer thread lets the SHA-256 of one chunk run
while the previous chunk is being written: the hash hides behind the write.
With write-behind (:func:`copy_and_hash`), the disk also writes while we hash.
"""

from __future__ import annotations

import errno
import hashlib
import mmap
import os
import queue
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, BinaryIO

CHUNK = 4 * 1024 * 1024
"""Read size: large enough that hashlib drops the GIL and syscalls are few."""

BUFFERS = 4
"""Chunks in flight between reader and writer in :func:`copy_and_hash`."""

Progress = Callable[[int], None]
"""Called with the number of bytes just processed."""


@dataclass(frozen=True, slots=True)
class Digest:
    """Size and sha256 of a byte stream."""

    size: int
    sha256: str


def hash_file(path: str | os.PathLike[str], *, progress: Progress | None = None) -> Digest:
    """Hash a file in one pass.

    Raises:
        OSError: the file cannot be read.
    """
    h = hashlib.sha256()
    size = 0
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while True:
            n = f.readinto(view)
            if not n:
                break
            h.update(view[:n])
            size += n
            if progress:
                progress(n)
    return Digest(size, h.hexdigest())


def hash_bytes(data: bytes | memoryview) -> Digest:
    """Hash bytes already in memory."""
    return Digest(len(data), hashlib.sha256(data).hexdigest())


def hash_files(
    paths: Sequence[str | os.PathLike[str]],
    *,
    workers: int | None = None,
    progress: Progress | None = None,
) -> list[Digest]:
    """Hash several files in parallel threads (one file per thread), in input order.

    Raises:
        OSError: a file cannot be read.
    """
    if len(paths) <= 1:
        return [hash_file(p, progress=progress) for p in paths]
    workers = workers or min(len(paths), os.cpu_count() or 2)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(lambda p: hash_file(p, progress=progress), paths))


def copy_and_hash(src: BinaryIO, dst: BinaryIO, *, progress: Progress | None = None,
                  write_behind: int | None = None, splice: bool = False,
                  hasher: Any = None, limit: int | None = None) -> Digest:
    """Copy ``src`` to ``dst`` and hash it, reading every byte once.

    A writer thread writes chunk *n* while this thread hashes chunk *n+1*. Chunks
    live in a small ring of reused buffers, so memory stays at ``BUFFERS`` chunks
    whatever the file size, and no chunk costs a fresh allocation (page faults are
    expensive, in a VM above all). A buffer goes back to the reader only once it
    is written, so the bytes written are exactly the bytes hashed.

    With ``write_behind`` (bytes), the writer asks the kernel to start writing each
    such window of ``dst`` to disk as soon as it is in the page cache, without
    waiting for it (Linux ``sync_file_range``): the disk then writes while this
    thread is still hashing, and the caller's final fsync (which alone makes the
    copy durable) has only the tail left. Where the call is missing or refused,
    nothing else changes.

    With ``splice`` (``dst`` a file), each chunk goes to ``dst`` through a pipe
    (Linux ``vmsplice`` + ``splice``) instead of ``write``: the kernel then copies
    it into the page cache with its own memcpy, where ``write``'s copy from user
    memory costs several times more CPU in a VM (measured here). The pipe
    only refers to the chunk's buffer, which goes back to the reader once the pipe
    is drained into ``dst``, so the bytes written are still the bytes hashed. Where
    either call is refused before moving a byte, plain writes take over.

    ``hasher`` continues an existing ``hashlib`` object (the digest returned is then
    of everything it has seen); ``limit`` stops after that many bytes of ``src``.

    Raises:
        OSError: reading or writing failed.
    """
    h = hasher if hasher is not None else hashlib.sha256()
    size = 0
    left = -1 if limit is None else limit
    free: queue.Queue[mmap.mmap] = queue.Queue()
    for _ in range(BUFFERS):
        free.put(mmap.mmap(-1, CHUNK))
    full: queue.Queue[tuple[mmap.mmap, int] | None] = queue.Queue()
    errors: list[BaseException] = []
    readinto = getattr(src, "readinto", None)

    def writer() -> None:
        behind = WriteBehind(dst.fileno(), write_behind) if write_behind else None
        pipe = _SplicePipe.open(dst.fileno()) if splice else None
        try:
            while True:
                item = full.get()
                if item is None:
                    return
                buf, n = item
                done = pipe.write(buf, n) if pipe is not None else 0
                if done < n and pipe is not None:
                    pipe.close()  # refused: plain writes from here on
                    pipe = None
                view = memoryview(buf)[done:n]
                while view:
                    w = dst.write(view)
                    if w is None:  # only a non-blocking stream does this; files never do
                        raise OSError("short write to a non-blocking stream")
                    view = view[w:]
                # Only now, with the pipe drained into dst, may the reader refill buf.
                free.put(buf)
                if behind is not None:
                    behind.wrote(n)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the reader below
            errors.append(exc)
            if pipe is not None:
                pipe.close()  # drops what it still holds of a buffer, before any is refilled
                pipe = None
            # Keep handing buffers back so the reader never blocks after a failure.
            while (item := full.get()) is not None:
                free.put(item[0])
        finally:
            if pipe is not None:
                pipe.close()

    t = threading.Thread(target=writer, name="sentenialx-writer", daemon=True)
    t.start()
    try:
        while not errors and left != 0:
            buf = free.get()
            want = CHUNK if left < 0 else min(CHUNK, left)
            if readinto is not None:
                n = readinto(memoryview(buf)[:want])
                if n is None:
                    raise OSError("source would block; expected a file")
            else:
                chunk = src.read(want)
                n = len(chunk)
                memoryview(buf)[:n] = chunk
            if not n:
                break
            if left > 0:
                left -= n
            h.update(memoryview(buf)[:n])
            full.put((buf, n))
            size += n
            if progress:
                progress(n)
    finally:
        full.put(None)
        t.join()
    if errors:
        raise errors[0]
    return Digest(size, h.hexdigest())


SYNC_FILE_RANGE_WRITE = 2
"""Linux ``sync_file_range`` flag: start writing the dirty pages of a range, do not wait."""


class WriteBehind:
    """Starts the write-back of each full window of a file being written, without waiting.

    The file is written in order from offset ``at``; :meth:`wrote` is told each time
    more bytes are in. Only a hint to the kernel: it changes when bytes reach the disk,
    never which bytes, and durability still comes from the caller's fsync. So any
    refusal (another OS, a pipe, a filesystem without it) just turns it off.
    """

    def __init__(self, fd: int, window: int, *, at: int = 0) -> None:
        self.fd = fd
        self.window = window
        self.start = at
        self.end = at

    def wrote(self, n: int) -> None:
        """Record ``n`` more bytes written; start the write-back of a window once full."""
        self.end += n
        if self.end - self.start < self.window:
            return
        if not start_writeback(self.fd, self.start, self.end - self.start):
            self.window = sys.maxsize  # refused once: never asked again for this file
            return
        self.start = self.end


def start_writeback(fd: int, offset: int, length: int) -> bool:
    """Ask the kernel to start writing ``length`` bytes of ``fd`` at ``offset`` to disk now.

    Linux ``sync_file_range(SYNC_FILE_RANGE_WRITE)``: it does not wait, and it changes
    when bytes reach the disk, never which bytes; durability still comes from the
    caller's fsync. False where the call is missing or refused.
    """
    fn = _sync_file_range()
    return fn is not None and fn(fd, offset, length, SYNC_FILE_RANGE_WRITE) == 0


_REFUSED = {errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EXDEV, errno.EBADF}
"""Errors by which vmsplice or splice says it cannot serve this file (not a disk failure)."""


class _SplicePipe:
    """A pipe that moves a buffer's bytes into a file with vmsplice + splice."""

    def __init__(self, fd: int, r: int, w: int, size: int, vmsplice: Any) -> None:
        self.fd = fd
        self.r = r
        self.w = w
        self.size = size
        self.vmsplice = vmsplice
        self.addrs: dict[int, tuple[Any, int]] = {}

    @classmethod
    def open(cls, fd: int) -> _SplicePipe | None:
        """A pipe into ``fd``, or None where vmsplice is missing."""
        vms = _vmsplice()
        if vms is None or not hasattr(os, "splice"):
            return None
        r, w = os.pipe()
        size = CHUNK
        import fcntl

        # As large as a chunk where allowed (root, or fs.pipe-max-size), else 1 MiB.
        for want in (CHUNK, 1024 * 1024):
            try:
                size = fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, want)
                break
            except OSError:
                size = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
        return cls(fd, r, w, size, vms)

    def _addr(self, buf: mmap.mmap) -> int:
        got = self.addrs.get(id(buf))
        if got is None:
            import ctypes

            ref = ctypes.c_char.from_buffer(buf)  # held: it keeps the address valid
            got = self.addrs[id(buf)] = (ref, ctypes.addressof(ref))
        return got[1]

    def write(self, buf: mmap.mmap, n: int) -> int:
        """Move ``buf[:n]`` into the file; the bytes moved (fewer only if refused at once).

        Raises:
            OSError: the file write failed (a full disk, an I/O error).
        """
        import ctypes

        base = self._addr(buf)
        done = 0
        while done < n:
            k = self.vmsplice(self.w, base + done, min(self.size, n - done))
            if k < 0:
                err = ctypes.get_errno()
                if err in _REFUSED:
                    return done
                raise OSError(err, os.strerror(err))
            moved = 0
            while moved < k:
                try:
                    m = os.splice(self.r, self.fd, k - moved)
                except OSError as exc:
                    if moved == 0 and exc.errno in _REFUSED:
                        return done  # nothing of this piece reached the file
                    raise
                if m == 0:
                    raise OSError(errno.EIO, "splice moved nothing")
                moved += m
            done += k
        return done

    def close(self) -> None:
        os.close(self.r)
        os.close(self.w)


@cache
def _vmsplice() -> Callable[[int, int, int], int] | None:
    """``vmsplice(fd, address, length)`` through libc (Linux), or None."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    class IoVec(ctypes.Structure):
        _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]

    try:
        fn = ctypes.CDLL(None, use_errno=True).vmsplice
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.POINTER(IoVec), ctypes.c_ulong, ctypes.c_uint]
    fn.restype = ctypes.c_ssize_t

    def vmsplice(fd: int, addr: int, length: int) -> int:
        iov = IoVec(addr, length)
        return int(fn(fd, ctypes.byref(iov), 1, 0))

    return vmsplice


@cache
def _sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """libc's ``sync_file_range`` (Linux), or None; loaded on the first big write only."""
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename inside it survives a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_verified(path: Path, *, expected: str, size: int | None = None) -> bytes:
    """Read a whole file once, hash it, and return the bytes only if they match.

    Raises:
        IntegrityError: size or sha256 differs from the manifest.
        OSError: the file cannot be read.
    """
    from sentenialx.hub.errors import IntegrityError

    with open(path, "rb", buffering=0) as f:
        data = f.read()
    if size is not None and len(data) != size:
        raise IntegrityError(
            f"{path.name}: size mismatch (expected {size} bytes, got {len(data)})",
            path=str(path),
            expected=expected,
            actual="",
        )
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise IntegrityError(path=path.name, expected=expected, actual=actual)
    return data
