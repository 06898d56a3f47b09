"""The blob store protocol: a few primitives; the Hub builds everything else on them.

Keys are posix paths relative to the store's root, e.g.
``distill/threat_student_v1.2.0.onnx`` or ``distill/threat_student_v1.2.0/adapter.bin``.
A store never overwrites a key that holds a version's bytes: ``put_*`` claims the
final key atomically and raises :class:`~sentenialx.hub.errors.AlreadyExists` if
it is taken.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

from sentenialx.hub.hashing import Digest, Progress


@dataclass(frozen=True, slots=True)
class BlobStat:
    """What a stat of a stored object tells."""

    size: int
    mtime_ns: int
    ino: int = 0
    ctime_ns: int = 0


@dataclass(frozen=True, slots=True)
class Source:
    """One input file to store: where it comes from and its relative key part."""

    relpath: str
    path: Path


class BlobStore(Protocol):
    """What the Hub needs from a place that keeps bytes."""

    url: str

    def put_file(self, key: str, src: Path, *, link: bool = False,
                 progress: Progress | None = None) -> Digest:
        """Store one file under ``key``, hashing while copying (or hardlinking)."""

    def put_dir(self, key: str, sources: Sequence[Source], *, link: bool = False,
                progress: Progress | None = None) -> list[Digest]:
        """Store a folder under ``key`` so it appears in one step."""

    def put_small(self, key: str, data: bytes) -> None:
        """Atomically write or replace a small sidecar."""

    def dedup(self, key: str, existing: str) -> bool:
        """Make ``key`` share the bytes of ``existing`` (same content); True if done."""

    def open_read(self, key: str) -> BinaryIO:
        """Open a stored object for reading."""

    def read_bytes(self, key: str) -> bytes:
        """Read a whole stored object."""

    def stat(self, key: str) -> BlobStat | None:
        """Stat a stored object, or None if it is missing."""

    def delete(self, key: str) -> None:
        """Remove an object or a folder of objects (missing is fine)."""

    def list(self, prefix: str = "") -> Iterator[tuple[str, BlobStat]]:
        """Every object under ``prefix`` (recursively), temporaries included."""

    def local_path(self, key: str) -> Path | None:
        """A filesystem path for ``key`` when the store is local."""
