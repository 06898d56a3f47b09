"""What every part of the Hub shares: the index, the stores, the cache, and ref resolution.

The Hub is composed of parts, each a module named after what it owns
(``_register``, ``_read``, ``_lifecycle``, ``_maintenance``, ``_views``,
``_seed``, ``release``). Each part holds the one :class:`Core` and the other
parts it calls, passed in explicitly when the Hub is built.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sentenialx.hub.errors import InvalidInput, NotFound, StoreUnavailable
from sentenialx.hub.index.base import ResolvesRefs
from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.refs import Ref, parse_ref
from sentenialx.hub.values import VersionInfo

if TYPE_CHECKING:
    from sentenialx.hub.index.sql import SqlIndex
    from sentenialx.hub.store.local import LocalStore
    from sentenialx.hub.trust import GateResult, TrustStore

_RESOLVE_CACHE_MAX = 10000


def default_actor() -> str:
    """Who is acting: ``$SENTENIALX_ACTOR`` or ``user@host``."""
    env = os.environ.get("SENTENIALX_ACTOR")
    if env:
        return env
    # Imported here: readers (the CLI's cold start among them) never need it.
    import getpass

    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid())
    # uname's nodename is what socket.gethostname() returns, without importing socket.
    return f"{user}@{os.uname().nodename}"


def weights_entry(info: VersionInfo) -> FileEntry:
    """The version's main weights file (first by path).

    Raises:
        NotFound: the version has no weights file.
    """
    w = info.manifest.weights()
    if not w:
        raise NotFound(f"{info.ref} has no weights file", what="file")
    return w[0]


class Core:
    """The index, the blob store, the local folder (views) and the read cache of one hub."""

    def __init__(self, root: Path, *, index: SqlIndex, store: Any, local: LocalStore | None,
                 cache: Any = None, files: Path | None = None) -> None:
        self.root = root
        self.index = index
        self.store = store
        self._local = local
        self.cache = cache
        # Where the read path materialises a version's files under their own names (a
        # served hub's <cache>/hubs/<host>/files); None keeps them in the blob cache.
        self.files = files
        # Decided once: a runtime Protocol check costs microseconds, and resolve is the
        # hot path (a cached answer takes a few).
        self._served_resolver: ResolvesRefs | None = (
            index if isinstance(index, ResolvesRefs) else None)
        self._resolved: dict[tuple[str, bool], tuple[int, VersionInfo]] = {}
        self._resolved_gen = -1

    @property
    def local(self) -> LocalStore:
        """The hub folder as a store (views).

        Raises:
            InvalidInput: a served hub has no folder of its own here.
        """
        if self._local is None:
            raise InvalidInput(f"{self.root} is a served hub's cache, not a hub folder")
        return self._local

    def clear_resolve_cache(self) -> None:
        """Forget every cached resolution (benchmarks measure the uncached path)."""
        self._resolved.clear()

    def resolve(self, ref: str | Ref, *, include_revoked: bool = False) -> VersionInfo:
        """Resolve a ref to a ready version (cached until the index changes).

        Raises:
            InvalidRef: the ref is malformed.
            NotFound: nothing matches, or it is revoked and ``include_revoked`` is False.
        """
        if self._served_resolver is not None:
            # A served hub resolves on its server (one request, remembered for offline
            # use); its answer is validated as untrusted input by the index.
            return self._served_resolver.resolve(str(ref), include_revoked=include_revoked)
        key = (str(ref), include_revoked)
        gen = self.index.generation()
        if gen != self._resolved_gen:
            self._resolved.clear()
            self._resolved_gen = gen
        # An entry carries the generation read before its index read, and only a caller
        # at that same generation may use it: a thread that read the index just before a
        # commit must not serve its older answer after the cache moved on.
        hit = self._resolved.get(key)
        if hit is not None and hit[0] == gen:
            return hit[1]
        r = ref if isinstance(ref, Ref) else parse_ref(ref)
        info = self._resolve_uncached(r, include_revoked)
        if len(self._resolved) > _RESOLVE_CACHE_MAX:
            self._resolved.clear()
        self._resolved[key] = (gen, info)
        return info

    def _resolve_uncached(self, r: Ref, include_revoked: bool) -> VersionInfo:
        # The rules (revoked versions, ranges, messages) are sentenialx.hub.index.lookup's,
        # shared with the CLI's cold start; the index applies them in one snapshot.
        return self.index.resolve_ref(r, include_revoked=include_revoked)


class Trust(Protocol):
    """What the storage parts ask of the release part (trust policy and gates)."""

    def trust_store(self) -> TrustStore:
        """The policy in force."""
        ...

    def check_trust(self, info: VersionInfo, *, mode: str | None = None) -> str:
        """Apply the trust policy to a version about to be handed out."""
        ...

    def check_gates(self, ref: str, *, to: str) -> list[GateResult]:
        """Evaluate the promotion gates of alias ``to`` for ``ref``."""
        ...

    def is_gated(self, alias: str) -> bool:
        """True when moving ``alias`` must pass gates."""
        ...


class Part:
    """A part of the Hub: it reaches the index and the stores through the one :class:`Core`."""

    def __init__(self, core: Core) -> None:
        self.core = core

    @property
    def root(self) -> Path:
        """The hub folder."""
        return self.core.root

    @property
    def index(self) -> SqlIndex:
        """The index (the truth)."""
        return self.core.index

    @property
    def store(self) -> Any:
        """The blob store holding versions' bytes and sidecars."""
        return self.core.store

    @property
    def local(self) -> LocalStore:
        """The hub folder as a store (views: registry.json, events)."""
        return self.core.local

    @property
    def cache(self) -> Any:
        """The verified read cache, for stores that are not local files."""
        return self.core.cache

    def resolve(self, ref: str | Ref, *, include_revoked: bool = False) -> VersionInfo:
        """See :meth:`Core.resolve`."""
        return self.core.resolve(ref, include_revoked=include_revoked)

    def cache_stats(self, rows: Sequence[tuple[str, int, int, int, int, str]]) -> None:
        """Record the stats of files a read path just hashed; best-effort.

        The stat cache only saves the next re-hash, so a read (``verify``, ``path``,
        ``open``) never fails because the index cannot be written (a full disk, a
        read-only folder): the failure is a warning and the next read hashes again.
        """
        try:
            self.index.stat_cache_put(rows)
        except StoreUnavailable as exc:
            logging.getLogger("sentenialx.read").warning(
                "verified %d file(s), but could not record them in the stat cache (%s); the"
                " next verify hashes them again", len(rows), exc)

    @staticmethod
    def weights_entry(info: VersionInfo) -> FileEntry:
        """See :func:`weights_entry`."""
        return weights_entry(info)


__all__ = ["Core", "Part", "Trust", "default_actor", "weights_entry"]
