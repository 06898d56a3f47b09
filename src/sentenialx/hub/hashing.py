"""One-pass hashing: hash while copying, hash while reading, hash many files in parallel.

Every input byte is read once. ``hashlib`` releases the GIL for large buffers,
and so do file writes, so a writer thread lets the SHA-256 of one chunk run
while the previous chunk is being written: the hash hides behind the write.
"""

from __future__ import annotations

import hashlib
import mmap
import os
import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
                  sync_every: int | None = None, hasher: Any = None,
                  limit: int | None = None) -> Digest:
    """Copy ``src`` to ``dst`` and hash it, reading every byte once.

    A writer thread writes chunk *n* while this thread hashes chunk *n+1*. Chunks
    live in a small ring of reused buffers, so memory stays at ``BUFFERS`` chunks
    whatever the file size, and no chunk costs a fresh allocation (page faults are
    expensive, in a VM above all). A buffer goes back to the reader only once it
    is written, so the bytes written are exactly the bytes hashed. The buffers are
    page-aligned (anonymous mmaps), so ``dst`` may be a file opened with O_DIRECT.

    With ``sync_every``, the writer also calls ``fdatasync`` after that many bytes:
    the disk then writes while this thread is still hashing, and the caller's
    final fsync (which alone makes the copy durable) has only the tail left.

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
        unsynced = 0
        try:
            while True:
                item = full.get()
                if item is None:
                    return
                buf, n = item
                view = memoryview(buf)[:n]
                while view:
                    w = dst.write(view)
                    if w is None:  # only a non-blocking stream does this; files never do
                        raise OSError("short write to a non-blocking stream")
                    view = view[w:]
                free.put(buf)
                unsynced += n
                if sync_every and unsynced >= sync_every:
                    os.fdatasync(dst.fileno())
                    unsynced = 0
        except BaseException as exc:  # noqa: BLE001 - re-raised in the reader below
            errors.append(exc)
            # Keep handing buffers back so the reader never blocks after a failure.
            while (item := full.get()) is not None:
                free.put(item[0])

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
