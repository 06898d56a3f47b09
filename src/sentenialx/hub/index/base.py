"""The :class:`Index` protocol: what the Hub asks of the place that records versions.

The records it returns live in :mod:`sentenialx.hub.values`. The protocol lists
exactly the calls the Hub facade makes (``hub.py``, ``release.py``, ``state.py``,
``transfer.py``); :class:`~sentenialx.hub.index.sql.SqlIndex` implements it on
SQLite and PostgreSQL and ``tests/contract/test_index_contract.py`` holds every
implementation to the same behaviour.

Every write is one transaction that bumps :meth:`Index.generation`, so a reader
that sees the same generation twice saw the same index.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from sentenialx.hub.values import AliasInfo, AliasMove, VersionInfo

if TYPE_CHECKING:
    from sentenialx.hub.events import Event
    from sentenialx.hub.manifest import FileEntry
    from sentenialx.hub.refs import Ref

StatRow = tuple[int, int, int, int, str]
"""``(size, mtime_ns, ino, ctime_ns, sha256)`` of a file verified before."""


def dumps(obj: Any) -> str:
    """JSON for metadata columns (stable key order, readable)."""
    return json.dumps(obj, sort_keys=True, ensure_ascii=False)


@runtime_checkable
class Index(Protocol):
    """Versions, aliases, the event chain and the stat cache of one hub.

    Errors are the hub's own: a missing model, version or alias raises
    :class:`~sentenialx.hub.errors.NotFound`, a taken version
    :class:`~sentenialx.hub.errors.AlreadyExists`, a lost compare-and-set
    :class:`~sentenialx.hub.errors.Conflict`, an unreachable database
    :class:`~sentenialx.hub.errors.StoreUnavailable`.
    """

    url: str
    """Where the index lives (credentials included; show ``safe_url`` instead)."""

    # -- the hub as a whole -------------------------------------------------------------
    def generation(self) -> int:
        """The change counter; bumped by every write transaction."""
        ...

    def state(self) -> dict[str, Any]:
        """``generation``, ``updated_at`` and the hub's stable ``hub_id``."""
        ...

    def dispose(self) -> None:
        """Release pooled connections (before a fork, or when done)."""
        ...

    # -- registering --------------------------------------------------------------------
    def reserve_version(self, model: str, *, version: str | None, bump: str | None,
                        stem_for: Callable[[str], str], layout: str, meta: dict[str, Any],
                        lineage: dict[str, Any], actor: str) -> VersionInfo:
        """Allocate ``version`` (or the next one by ``bump``) and record it as ``pending``.

        Raises:
            AlreadyExists: an explicit version is already registered.
            Conflict: another writer is registering that version right now.
        """
        ...

    def complete_version(self, vid: int, *, files: Sequence[FileEntry], digest: str,
                         event_kind: str, event_payload: dict[str, Any], actor: str,
                         alias: str | None = None,
                         idempotency: tuple[str, str] | None = None) -> VersionInfo:
        """Mark a pending version ready with its files and event (and alias) in one step.

        ``idempotency`` ``(key, request_digest)`` is recorded in the same step; a key
        already recorded returns its earlier version instead (same digest) or refuses.

        Raises:
            NotFound: the pending row is gone (garbage-collected as stale).
            Conflict: the idempotency key is recorded for another request.
        """
        ...

    def idempotent_version(self, key: str) -> tuple[str, VersionInfo] | None:
        """``(request_digest, version)`` an idempotency key was recorded with, or None."""
        ...

    def abort_version(self, vid: int) -> None:
        """Drop a pending row; a ready version is left alone."""
        ...

    def pending_versions(self) -> list[VersionInfo]:
        """Registrations that have not completed (in progress or crashed)."""
        ...

    def remove_stale_pending(self, vid: int, *, created_before: str) -> bool:
        """Drop a pending row older than ``created_before``; True if dropped."""
        ...

    def find_file_by_sha(self, sha256: str, size: int) -> tuple[str, str] | None:
        """``(model, path)`` of a ready version's file with these bytes, or None."""
        ...

    # -- reading versions ---------------------------------------------------------------
    def get_version(self, model: str, version: str, *, include_pending: bool = False) -> VersionInfo:
        """One version with its files.

        Raises:
            NotFound: no such version (or model).
        """
        ...

    def resolve_ref(self, ref: Ref, *, include_revoked: bool = False) -> VersionInfo:
        """The ready version ``ref`` names, decided in one read (the rules of ``lookup.py``).

        Raises:
            NotFound: nothing matches, or it is revoked and ``include_revoked`` is False.
            InvalidInput: a digest prefix is ambiguous.
        """
        ...

    def list_versions(self, model: str, *, include_revoked: bool = True,
                      with_files: bool = False) -> list[VersionInfo]:
        """A model's ready versions in semver order, oldest first.

        Raises:
            NotFound: the model has no versions.
        """
        ...

    def latest(self, model: str) -> VersionInfo:
        """The highest ready, non-revoked version by semver precedence.

        Raises:
            NotFound: none.
        """
        ...

    def by_digest(self, model: str, prefix: str) -> VersionInfo:
        """The ready version whose digest starts with ``prefix``.

        Raises:
            NotFound: none matches.
            InvalidInput: more than one matches.
        """
        ...

    def models(self) -> list[dict[str, Any]]:
        """Every model with its version count, latest version and aliases."""
        ...

    def all_ready_versions(self) -> list[VersionInfo]:
        """Every ready version with its files."""
        ...

    # -- changing versions --------------------------------------------------------------
    def set_revoked(self, model: str, version: str, *, revoked: bool, reason: str | None,
                    actor: str) -> None:
        """Revoke or restore a version, with its event.

        Raises:
            NotFound: no such version.
        """
        ...

    def delete_version(self, model: str, version: str, *, actor: str) -> VersionInfo:
        """Remove a version's rows, with its event; returns what was removed.

        Raises:
            NotFound: no such version.
        """
        ...

    # -- aliases ------------------------------------------------------------------------
    def set_alias(self, model: str, alias: str, version: str, *, expect: str | None, actor: str,
                  kind: str = "alias", extra: dict[str, Any] | None = None) -> str | None:
        """Point ``alias`` at ``version``; returns the previous version.

        With ``expect`` the move happens only if the alias points there now
        (``""``: only if it does not exist).

        Raises:
            NotFound: the version is not ready.
            Conflict: the alias moved since the caller looked.
        """
        ...

    def remove_alias(self, model: str, alias: str, *, expect: str | None, actor: str) -> str:
        """Remove an alias; returns the version it named.

        Raises:
            NotFound: no such alias.
            Conflict: it moved since the caller looked.
        """
        ...

    def get_alias(self, model: str, alias: str) -> AliasInfo:
        """Where an alias points.

        Raises:
            NotFound: no such alias.
        """
        ...

    def list_aliases(self, model: str | None = None) -> list[AliasInfo]:
        """Every alias, or one model's."""
        ...

    def alias_history(self, model: str, alias: str | None = None) -> list[AliasMove]:
        """Every move of a model's aliases (or of one alias), oldest first."""
        ...

    # -- events -------------------------------------------------------------------------
    def append_event(self, kind: str, model: str, version: str, *, actor: str,
                     payload: dict[str, Any]) -> Event:
        """Append one event to the chain, in its own write transaction."""
        ...

    def events(self, *, model: str | None = None, limit: int | None = None) -> list[Event]:
        """Events oldest first: the whole chain, or one model's, or the newest ``limit``."""
        ...

    def last_event(self, kind: str, *, model: str | None = None) -> Event | None:
        """The newest event of a kind (optionally of one model)."""
        ...

    def head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the newest event; ``(0, GENESIS)`` when there is none."""
        ...

    # -- the stat cache (what fast verify trusts without re-hashing) ---------------------
    def stat_cache(self) -> dict[str, StatRow]:
        """Every cached ``path -> (size, mtime_ns, ino, ctime_ns, sha256)``."""
        ...

    def stat_cache_get(self, paths: Sequence[str]) -> dict[str, StatRow]:
        """The cached rows of some paths (absent paths are left out)."""
        ...

    def stat_cache_put(self, rows: Sequence[tuple[str, int, int, int, int, str]]) -> None:
        """Record ``(path, size, mtime_ns, ino, ctime_ns, sha256)`` of files just hashed."""
        ...


@runtime_checkable
class ResolvesRefs(Protocol):
    """An index that resolves refs itself: a served hub, whose server's Hub applies the rules.

    The Hub's resolver asks it instead of combining ``latest`` / ``get_alias`` /
    ``get_version`` calls, so a ref costs one request and can be answered offline
    from the last verified answer.
    """

    def resolve(self, ref: str, *, include_revoked: bool = False) -> VersionInfo:
        """The ready version ``ref`` names.

        Raises:
            InvalidRef: the ref is malformed.
            NotFound: nothing matches, or it is revoked and ``include_revoked`` is False.
        """
        ...


if TYPE_CHECKING:
    from sentenialx.hub.index.sql import SqlIndex

    def _sql_index_is_an_index(index: SqlIndex) -> Index:
        # mypy proves SqlIndex satisfies the protocol, signatures included.
        return index


__all__ = ["AliasInfo", "AliasMove", "Index", "ResolvesRefs", "StatRow", "VersionInfo", "dumps"]
