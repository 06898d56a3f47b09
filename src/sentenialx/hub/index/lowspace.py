"""Reading a SQLite index on a nearly full disk without writing (standard library only).

A WAL-mode SQLite reader maps the ``-shm`` wal-index, creating and growing it on
its first read. With almost no space left, creating it fails (``disk I/O error``,
even for ``list``), or, on a filesystem whose blocks are smaller than a memory page
(ext4 with 1 KiB blocks), succeeds in part: SQLite allocates the file one byte per
page, and the first store into the rest of a mapped page faults. The process dies
of SIGBUS with no message.

So when space is short, no usable ``-shm`` exists and the WAL holds nothing (absent
or empty: every commit is in the main file), the index is opened ``immutable``:
read-only, no ``-shm``, no locks, nothing written. That snapshot is exact as long
as nobody rewrites the main file meanwhile, which only a checkpoint does, after a
writer managed to commit in less than :data:`LOW_SPACE` bytes. When the WAL does
hold changes, they are readable only through the wal-index, and the open is refused
with one line rather than risking a SIGBUS.
"""

from __future__ import annotations

import os

from sentenialx.hub.errors import StoreUnavailable

LOW_SPACE = 256 * 1024
"""Free bytes below which a SQLite index is read as an immutable snapshot (see above)."""


def free_bytes(path: str) -> int | None:
    """Bytes this process may still write on the filesystem holding ``path`` (None: unknown)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return None
    # f_bavail, even for root: ext4's own reserved clusters are in f_bfree and nobody can
    # write them; at worst root, which may use the -m reserve, is refused a write early.
    return st.f_bavail * st.f_frsize


def low_space_reason(db: str) -> str | None:
    """Why the SQLite file ``db`` must be read as an immutable snapshot, or None.

    Raises:
        StoreUnavailable: the disk is nearly full and the WAL holds changes that only
            a wal-index (which cannot be made) could read.
    """
    if db in ("", ":memory:") or not os.path.isfile(db):
        return None
    free = free_bytes(os.path.dirname(os.path.abspath(db)))
    if free is None or free >= LOW_SPACE:
        return None
    try:
        shm = os.stat(db + "-shm")
        # A wal-index whose every page is allocated can be shared as it is.
        if shm.st_size > 0 and shm.st_blocks * 512 >= shm.st_size:
            return None
    except FileNotFoundError:
        pass
    try:
        wal = os.path.getsize(db + "-wal")
    except FileNotFoundError:
        wal = 0
    if wal:
        raise StoreUnavailable(f"index {db} cannot be read: the disk is full ({free} bytes free)"
                               " and its write-ahead log holds changes not yet in the main file;"
                               " free space there and try again", where=db)
    return f"the disk is full ({free} bytes free)"


def read_only_uri(db: str) -> str:
    """A ``sqlite3.connect(..., uri=True)`` URI reading ``db`` without writing anything.

    Raises:
        StoreUnavailable: see :func:`low_space_reason`.
    """
    # The three characters a URI path cannot hold as they are (no urllib: fast paths).
    path = os.path.abspath(db).replace("%", "%25").replace("?", "%3f").replace("#", "%23")
    uri = f"file:{path}?mode=ro"
    return uri + "&immutable=1" if low_space_reason(db) else uri


__all__ = ["LOW_SPACE", "free_bytes", "low_space_reason", "read_only_uri"]
