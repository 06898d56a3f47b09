"""What a streaming upload needs from the hub's storage, kept out of the server.

The server stages uploaded bytes in a private folder inside the hub root, and
may reuse bytes the hub already holds instead of receiving them again (dedup).
Both touch the index and the store, which no front end may; these functions are
the narrow door (the Hub exposes them, see DESIGN.md "Layers").
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sentenialx.hub.errors import IntegrityError
from sentenialx.hub.hashing import hash_file
from sentenialx.hub.store.local import TMP_PREFIX, LocalStore


def find_stored(hub: Any, sha256: str, size: int, *, visible: Callable[[str], bool]
                ) -> str | None:
    """The store key of a ready file with these bytes in a model ``visible`` accepts, or None.

    Only visible models count: otherwise a token limited to one model could declare
    the sha256 of another model's file and read it back from its own version.
    """
    for model, path in hub.index.find_files_by_sha(sha256, size):
        if visible(model):
            return f"{model}/{path}"
    return None


def copy_stored(hub: Any, key: str, dst: Path, *, sha256: str, size: int) -> None:
    """Put the stored object ``key`` at ``dst`` (a hardlink when local), verified.

    Dedup must not spread a damaged copy, so the bytes are hashed after placing.

    Raises:
        IntegrityError: the stored bytes no longer match ``sha256`` and ``size``.
    """
    local = hub.store.local_path(key)
    dst.parent.mkdir(parents=True, exist_ok=True)
    if local is not None and Path(local).is_file():
        try:
            Path(dst).hardlink_to(local)
        except OSError:
            shutil.copyfile(local, dst)
    else:
        with hub.store.open_read(key) as src, open(dst, "wb") as out:
            shutil.copyfileobj(src, out, 1024 * 1024)
    d = hash_file(dst)
    if d.sha256 != sha256 or d.size != size:
        raise IntegrityError(path=key, expected=sha256, actual=d.sha256,
                             hint=f"run `sentenialx models fsck {key.split('/')[0]}`")


def new_staging(hub: Any) -> Path:
    """A private staging folder inside the hub root (``gc`` removes it if we crash)."""
    return Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}upload-", dir=hub.root))


def store_is_local(hub: Any) -> bool:
    """True when the blob store is a folder, so staged files can be linked into place."""
    return isinstance(hub.store, LocalStore)


__all__ = ["copy_stored", "find_stored", "new_staging", "store_is_local"]
