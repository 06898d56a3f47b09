"""The :class:`BlobStore` protocol: a few primitives; the Hub builds everything else on them.

Keys are posix paths relative to the store's root, e.g.
``distill/threat_student_v1.2.0.onnx`` or ``distill/threat_student_v1.2.0/adapter.bin``;
a key that is absolute or holds ``..`` is refused. The rules every backend keeps
(``tests/contract/test_store_contract.py`` runs them against each one):

- ``put_file`` / ``put_dir`` claim a key that must not exist; they never replace it
  (:class:`~sentenialx.hub.errors.AlreadyExists`), and a failed put leaves no object
  under the key.
- ``put_small`` is the one way to replace bytes: a sidecar, swapped in whole.
- ``open_read`` of a missing key raises :class:`~sentenialx.hub.errors.NotFound`;
  ``stat`` answers None; ``delete`` of a missing key is a no-op.
- ``open_entry`` is the read primitive of the one read path (``_read.py``): the bytes
  of one manifest entry of a version, wherever they live. A store addressed by keys
  answers ``open_read(file_key(model, path))``; a served hub (``transport/http.py``)
  addresses files by model, version and path. Nobody trusts these bytes: the reader
  hashes them against the manifest.

Some backends can do more, cheaply; the Hub asks with ``isinstance`` on the small
protocols below instead of naming a backend class.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from sentenialx.hub.hashing import Digest, Progress

if TYPE_CHECKING:
    from datetime import datetime
    from types import TracebackType

    from sentenialx.hub.manifest import FileEntry
    from sentenialx.hub.values import VersionInfo


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


class ReadStream(Protocol):
    """A stored object opened for reading: ``read``, ``close``, usable in ``with``."""

    def read(self, n: int = -1, /) -> bytes:
        """Up to ``n`` bytes (all that is left when ``n < 0``); ``b""`` at the end."""
        ...

    def close(self) -> None:
        """Release the underlying file or connection."""
        ...

    def __enter__(self) -> ReadStream:
        """The stream itself."""
        ...

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None, /) -> None:
        """Close the stream."""
        ...


@runtime_checkable
class BlobStore(Protocol):
    """What the Hub needs from a place that keeps bytes."""

    url: str
    """Where the store is: a local folder or ``s3://bucket/prefix``."""

    def put_file(self, key: str, src: Path, *, link: bool = False,
                 progress: Progress | None = None) -> Digest:
        """Store one file under a new ``key``, hashing while copying.

        Args:
            key: the object's key; it must not exist.
            src: the file to copy.
            link: hardlink instead of copying, where the backend can.
            progress: called with each chunk's size.

        Raises:
            AlreadyExists: ``key`` is taken (the old object is unchanged).
        """
        ...

    def put_dir(self, key: str, sources: Sequence[Source], *, link: bool = False,
                progress: Progress | None = None) -> list[Digest]:
        """Store a folder under a new ``key`` (``key/<relpath>`` per source).

        Raises:
            AlreadyExists: something is already stored under ``key``.
        """
        ...

    def put_small(self, key: str, data: bytes) -> None:
        """Write or replace a small object (a sidecar) in one step: readers see old or new."""
        ...

    def open_read(self, key: str) -> ReadStream:
        """Open a stored object for reading.

        Raises:
            NotFound: no object under ``key``.
        """
        ...

    def open_entry(self, info: VersionInfo, entry: FileEntry) -> ReadStream:
        """Open the (unverified) bytes of one manifest entry of ``info``.

        Raises:
            NotFound: the file is missing from the store.
        """
        ...

    def stat(self, key: str) -> BlobStat | None:
        """Size and change markers of an object, or None if it is missing."""
        ...

    def list(self, prefix: str = "") -> Iterator[tuple[str, BlobStat]]:
        """Every object under ``prefix`` (recursively), temporaries included."""
        ...

    def delete(self, key: str) -> None:
        """Remove an object, or every object under ``key/``; missing is fine."""
        ...

    def local_path(self, key: str) -> Path | None:
        """A filesystem path for ``key`` when the store is local, else None."""
        ...


def read_bytes(store: BlobStore, key: str) -> bytes:
    """A whole stored object, through :meth:`BlobStore.open_read`.

    Raises:
        NotFound: no object under ``key``.
    """
    with store.open_read(key) as f:
        return f.read()


@runtime_checkable
class Dedup(Protocol):
    """A store that can make one key share another's bytes (local hardlinks)."""

    def dedup(self, key: str, existing: str) -> bool:
        """Make ``key`` share the bytes of ``existing`` (same content); True if done."""
        ...


@runtime_checkable
class ServerSideCopy(Protocol):
    """A store that copies an object without the bytes passing through the client (S3)."""

    def copy(self, src_key: str, dst_key: str) -> None:
        """Copy ``src_key`` to ``dst_key`` inside the store.

        Raises:
            NotFound: ``src_key`` is missing.
        """
        ...


@runtime_checkable
class AbandonedUploads(Protocol):
    """A store whose interrupted uploads linger invisibly until aborted (S3 multipart)."""

    def abandoned_uploads(self, *, older_than: datetime) -> list[str]:
        """Uploads started before ``older_than`` and never completed."""
        ...

    def abandoned_upload_ages(self, *, older_than: datetime) -> list[tuple[str, float]]:
        """Those uploads with the seconds since each was started."""
        ...

    def abort_uploads(self, *, older_than: datetime) -> list[str]:
        """Abort those uploads; returns what was aborted."""
        ...


@runtime_checkable
class Presigns(Protocol):
    """A store that can hand out a short-lived URL for reading one object (S3).

    The URL is a bearer credential for that one object until it expires: only a
    caller that has already checked who may read it asks for one.
    """

    def presign_get(self, key: str, *, expires: int, filename: str | None = None) -> str:
        """A URL that GETs ``key`` (Range allowed) for ``expires`` seconds, no other credential.

        ``filename`` sets the Content-Disposition the store answers with.
        """
        ...


@runtime_checkable
class FillsCache(Protocol):
    """A source that brings an entry's bytes into the verified cache itself (a served hub).

    It resumes interrupted downloads and admits only bytes whose sha256 matches the
    entry, so the read path asks it for a cached file instead of a stream.
    """

    def fetch(self, info: VersionInfo, entry: FileEntry, *, progress: Progress | None = None
              ) -> Path:
        """The verified cached copy of ``entry``, downloading what is missing.

        Raises:
            IntegrityError: the bytes received do not match the entry.
            StoreUnavailable: the source is unreachable and the file is not cached.
        """
        ...


if TYPE_CHECKING:
    from sentenialx.hub.store.local import LocalStore
    from sentenialx.hub.store.s3 import S3Store

    # mypy proves each backend satisfies the protocols it claims, signatures included.
    def _local_is_a_store(store: LocalStore) -> BlobStore:
        return store

    def _local_dedups(store: LocalStore) -> Dedup:
        return store

    def _s3_is_a_store(store: S3Store) -> BlobStore:
        return store

    def _s3_copies(store: S3Store) -> ServerSideCopy:
        return store

    def _s3_has_uploads(store: S3Store) -> AbandonedUploads:
        return store

    def _s3_presigns(store: S3Store) -> Presigns:
        return store


__all__ = ["AbandonedUploads", "BlobStat", "BlobStore", "Dedup", "FillsCache", "Presigns",
           "ReadStream", "ServerSideCopy", "Source", "read_bytes"]
