"""Alias moves (through their gates), revocation and deletion: changes after registration."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

from sentenialx.hub import layout
from sentenialx.hub._core import Core, Part, Trust, default_actor
from sentenialx.hub._views import Views
from sentenialx.hub.errors import (
    GateFailed,
    InvalidInput,
    NotFound,
)
from sentenialx.hub.refs import Version, validate_alias, validate_name
from sentenialx.hub.values import VersionInfo

if TYPE_CHECKING:
    from sentenialx.hub.trust import GateResult


class Lifecycle(Part):
    """Moves aliases (through their gates), revokes and deletes versions."""

    def __init__(self, core: Core, *, views: Views, trust: Trust) -> None:
        super().__init__(core)
        self.views = views
        self.trust = trust

    def set_alias(self, ref: str, alias: str, *, expect: str | None = None,
                  actor: str | None = None, force: bool = False) -> str | None:
        """Point ``alias`` at the version ``ref`` resolves to; returns the previous version."""
        validate_alias(alias)
        info = self.resolve(ref)
        if expect:
            expect = str(Version.parse(expect))
        prev, _results = self.move(info, alias, expect=expect, actor=actor, force=force)
        return prev

    def move(self, info: VersionInfo, alias: str, *, expect: str | None = None,
             actor: str | None = None, force: bool = False, kind: str = "alias",
             extra: dict[str, Any] | None = None) -> tuple[str | None, list[GateResult]]:
        """Move ``alias`` to ``info``: the one place every alias move goes through.

        A gated alias moves only when its gates pass for ``info``, whoever asks (alias
        set, rollback, promote, copy, CLI or HTTP); ``force`` moves it anyway and the
        event records that, with the gates that failed. The move is a compare-and-set
        on the alias value the gates were judged against, so a concurrent move between
        the check and the write makes this one fail with Conflict instead of slipping
        an unchecked version in.

        Raises:
            GateFailed: a gate failed and ``force`` is not set.
            InvalidInput: the version is revoked.
            Conflict: the alias moved since the caller (or the gate check) looked.
        """
        if info.revoked:
            raise InvalidInput(f"{info.ref} is revoked; an alias cannot point at it")
        results: list[GateResult] = []
        event_extra = dict(extra or {})
        if self.trust.is_gated(alias):
            if expect is None:
                try:
                    expect = self.index.get_alias(info.model, alias).version
                except NotFound:
                    expect = ""
            results = self.trust.check_gates(info.ref, to=alias)
            failed = [r for r in results if not r.ok]
            if failed and not force:
                raise GateFailed(f"promotion of {info.ref} to {alias} refused: "
                                 + "; ".join(f"{r.gate}: {r.detail}" for r in failed),
                                 failed=tuple(r.gate for r in failed))
            event_extra.update(force=force, gates=[r.to_dict() for r in results])
            if kind == "alias":
                kind = "promote"
        prev = self.index.set_alias(info.model, alias, info.version, expect=expect,
                                    actor=actor or default_actor(), kind=kind,
                                    extra=event_extra or None)
        self.views.write_registry_json()
        return prev, results

    def promote(self, ref: str, *, to: str = "production", force: bool = False,
                expect: str | None = None, actor: str | None = None) -> list[GateResult]:
        """Move alias ``to`` to ``ref`` if every gate passes (or ``force``, recorded as such)."""
        validate_alias(to)
        info = self.resolve(ref)
        if expect:
            expect = str(Version.parse(expect))
        if not self.trust.is_gated(to):
            # An alias without gates is promoted like any move, recorded as a promotion.
            self.move(info, to, expect=expect, actor=actor, force=force, kind="promote",
                      extra={"force": force, "gates": []})
            return []
        _prev, results = self.move(info, to, expect=expect, actor=actor, force=force,
                                   kind="promote")
        return results

    def remove_alias(self, model: str, alias: str, *, expect: str | None = None,
                     actor: str | None = None) -> str:
        """Remove an alias; returns the version it pointed at."""
        validate_name(model)
        validate_alias(alias)
        v = self.index.remove_alias(model, alias, expect=expect, actor=actor or default_actor())
        self.views.write_registry_json()
        return v

    def rollback(self, model: str, alias: str, *, actor: str | None = None,
                 force: bool = False) -> str:
        """Move ``alias`` back to the version it pointed at before its last move."""
        validate_name(model)
        validate_alias(alias)
        current = self.index.get_alias(model, alias)
        hist = [m for m in self.index.alias_history(model, alias) if m.version == current.version]
        if not hist or not hist[-1].previous:
            raise NotFound(f"alias {model}@{alias} has no earlier version to roll back to",
                           what="alias")
        target = self.index.get_version(model, hist[-1].previous)
        if target.revoked:
            raise InvalidInput(f"cannot roll {model}@{alias} back to {target.version}: it is revoked"
                               f" ({target.revoke_reason or 'no reason given'})")
        self.move(target, alias, expect=current.version, actor=actor, force=force,
                  extra={"rollback": True})
        return target.version

    def revoke(self, ref: str, *, reason: str, actor: str | None = None) -> VersionInfo:
        """Revoke a version: it stays stored but no longer resolves unless asked for."""
        if not reason or not reason.strip():
            raise InvalidInput("revoking needs a reason (--reason)")
        info = self.resolve(ref, include_revoked=True)
        self.index.set_revoked(info.model, info.version, revoked=True, reason=reason,
                               actor=actor or default_actor())
        self.views.write_registry_json()
        return self.index.get_version(info.model, info.version)

    def unrevoke(self, ref: str, *, actor: str | None = None) -> VersionInfo:
        """Undo a revocation."""
        info = self.resolve(ref, include_revoked=True)
        self.index.set_revoked(info.model, info.version, revoked=False, reason=None,
                               actor=actor or default_actor())
        self.views.write_registry_json()
        return self.index.get_version(info.model, info.version)

    def delete(self, ref: str, *, confirm: bool = False, actor: str | None = None) -> VersionInfo:
        """Delete a version: index rows first, then its files and sidecars."""
        info = self.resolve(ref, include_revoked=True)
        if not confirm:
            raise InvalidInput(f"deleting {info.ref} cannot be undone; pass --yes to confirm")
        gone = self.index.delete_version(info.model, info.version, actor=actor or default_actor())
        # The index no longer names these files; if we die here, gc removes them.
        for key in layout.version_keys(gone):
            with contextlib.suppress(OSError):
                self.store.delete(key)
        self.views.write_registry_json()
        return gone


__all__ = ["Lifecycle"]
