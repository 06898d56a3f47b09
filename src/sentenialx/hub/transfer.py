"""Copying versions between two hubs, local or remote: ``pull`` and ``push``.

A copied version keeps its version number, metadata, lineage and files, so its
manifest, and therefore its digest, is the same on both sides; that is checked
after every copy. Parents named in its lineage are copied first (registering a
version needs its parents to resolve). Files whose bytes the destination already
holds are not sent (dedup by sha256 and size), and every byte that is sent is
hashed on arrival: a remote destination checks each upload against the declared
sha256, a local one hashes while storing, and the final digest comparison covers
both.

``copy_versions`` (pull/push) does not copy signatures (``.sig`` sidecars); sign again on
the destination, or use :func:`copy_hub` (``models copy``), which carries them between
hub folders together with the source's events as provenance.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sentenialx.hub.errors import (
    Conflict,
    GateFailed,
    HubError,
    IntegrityError,
    InvalidInput,
    NotFound,
)
from sentenialx.hub.hashing import Progress
from sentenialx.hub.manifest import FileEntry
from sentenialx.hub.values import VersionInfo

AnyHub = Any
"""A :class:`~sentenialx.hub.hub.Hub`, local, shared or served (``hub.is_served``)."""


log = logging.getLogger("sentenialx.transfer")

@dataclass(slots=True)
class CopyResult:
    """What happened to one version."""

    ref: str
    status: str  # copied | present
    digest: str
    files: int = 0
    files_sent: int = 0
    bytes_sent: int = 0
    files_deduped: int = 0
    aliases: list[str] = field(default_factory=list)
    aliases_held: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {"ref": self.ref, "status": self.status, "digest": self.digest,
                "files": self.files, "files_sent": self.files_sent,
                "bytes_sent": self.bytes_sent, "files_deduped": self.files_deduped,
                "aliases": self.aliases, "aliases_held": self.aliases_held}


@dataclass(frozen=True, slots=True)
class _Layout:
    """How a version's manifest maps back to register's inputs."""

    base: str
    main: tuple[tuple[str, FileEntry], ...]  # (path inside the input, entry)
    attachments: tuple[tuple[str, FileEntry], ...]  # (attachment name, entry)


def _layout(info: VersionInfo) -> _Layout:
    """Split a manifest into register's inputs; refuse what register could not reproduce.

    Raises:
        InvalidInput: the files do not follow register's naming (``<stem>...``).
    """
    suffix = f"_v{info.version}"
    if not info.stem.endswith(suffix):
        raise InvalidInput(f"{info.ref}: stem {info.stem!r} does not end in {suffix!r};"
                           " it cannot be copied with the same file names")
    base = info.stem[: -len(suffix)]
    from sentenialx.hub.hub import Hub

    if Hub._stem_base(base) != base:
        raise InvalidInput(f"{info.ref}: stored name {base!r} would be renamed by register;"
                           " it cannot be copied with the same file names")
    main: list[tuple[str, FileEntry]] = []
    att: list[tuple[str, FileEntry]] = []
    for f in info.files:
        if info.layout == "dir" and f.path.startswith(info.stem + "/"):
            main.append((f.path[len(info.stem) + 1:], f))
        elif f.path.startswith(info.stem + "_"):
            att.append((f.path[len(info.stem) + 1:], f))
        elif info.layout == "file" and f.role == "weights" and (
                f.path == info.stem or f.path[len(info.stem):].startswith(".")) and \
                f.path.startswith(info.stem):
            main.append((f.path, f))
        else:
            raise InvalidInput(f"{info.ref}: file {f.path!r} does not follow register's naming;"
                               " it cannot be copied")
    if not main or (info.layout == "file" and len(main) != 1):
        raise InvalidInput(f"{info.ref}: no main file to copy")
    return _Layout(base, tuple(main), tuple(att))


def _find(hub: AnyHub, model: str, version: str) -> VersionInfo | None:
    try:
        return hub.resolve(f"{model}@{version}", include_revoked=True)  # type: ignore[no-any-return]
    except NotFound:
        return None


def _parent_refs(dst: AnyHub, info: VersionInfo) -> list[str]:
    """Parents as register takes them, naming the same versions in the destination.

    The original ref text is kept when it resolves to the same version there (so the
    lineage is identical); otherwise the exact ``model@version`` is used.
    """
    out = []
    for p in info.lineage.get("parents", []) or []:
        role, model, version = str(p.get("role") or "parent"), str(p["model"]), str(p["version"])
        ref = str(p.get("ref") or f"{model}@{version}")
        try:
            v = dst.resolve(ref)
            if (v.model, v.version) != (model, version):
                ref = f"{model}@{version}"
        except HubError:
            ref = f"{model}@{version}"
        out.append(f"{role}={ref}")
    return out


def _source_path(src: AnyHub, info: VersionInfo, entry: FileEntry, *,
                 progress: Progress | None, spooled: list[Path]) -> Path:
    """A local file with the entry's bytes: the store's own file, or the verified cache copy."""
    if src.is_served:
        # Progress counts what reaches the destination; the fetch is not counted twice.
        return Path(src.fetch(info, entry))
    key = f"{info.model}/{entry.path}"
    local = src.store.local_path(key)
    if local is not None:
        return Path(local)
    # A store without local files (S3): spool to a temporary file, removed after the copy.
    fd, name = tempfile.mkstemp(prefix="sentenialx-copy-")
    with os.fdopen(fd, "wb") as out, src.store.open_read(key) as f:
        shutil.copyfileobj(f, out, 1024 * 1024)
    spooled.append(Path(name))
    return Path(name)


def _place(src: Path, dst: Path, *, symlink_ok: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        if symlink_ok:
            os.symlink(src, dst)
        else:
            shutil.copyfile(src, dst)


def _stored_key(dst: AnyHub, entry: FileEntry) -> str | None:
    hit = dst.index.find_file_by_sha(entry.sha256, entry.size)
    return f"{hit[0]}/{hit[1]}" if hit else None


def _copy_local(src: AnyHub, dst: AnyHub, info: VersionInfo, *, actor: str | None,
                progress: Progress | None, spooled: list[Path]
                ) -> tuple[VersionInfo, CopyResult]:
    lay = _layout(info)
    res = CopyResult(info.ref, "copied", str(info.digest), files=len(info.files))
    staging = Path(tempfile.mkdtemp(prefix=".tmp-pull-", dir=dst.root))
    try:
        def source(entry: FileEntry) -> Path:
            key = _stored_key(dst, entry)
            local = dst.store.local_path(key) if key else None
            if local is not None and Path(local).is_file():
                res.files_deduped += 1
                return Path(local)
            res.files_sent += 1
            res.bytes_sent += entry.size
            return _source_path(src, info, entry, progress=progress, spooled=spooled)

        if info.layout == "file":
            rel, entry = lay.main[0]
            main = staging / "in" / rel
            _place(source(entry), main, symlink_ok=True)
        else:
            main = staging / "in" / lay.base
            for rel, entry in lay.main:
                _place(source(entry), main / rel, symlink_ok=False)
        attachments: list[tuple[str, str | os.PathLike[str]]] = []
        for i, (name, entry) in enumerate(lay.attachments):
            p = staging / "att" / str(i) / name
            _place(source(entry), p, symlink_ok=True)
            attachments.append((entry.role, p))
        # register copies (never links) from the staging names, hashing every byte on
        # the way in: the destination's files are its own inodes, verified on arrival.
        done = dst.register(info.model, main, version=info.version, metadata=info.meta,
                            parents=_parent_refs(dst, info),
                            data_digest=info.lineage.get("data_digest"),
                            attachments=attachments, actor=actor, name=lay.base,
                            progress=progress)
    finally:
        _rmtree(staging)
    return done, res


def _copy_remote(src: AnyHub, dst: AnyHub, info: VersionInfo, *,
                 progress: Progress | None, spooled: list[Path]
                 ) -> tuple[VersionInfo, CopyResult]:
    lay = _layout(info)
    res = CopyResult(info.ref, "copied", str(info.digest), files=len(info.files))
    spec = {
        "layout": info.layout, "name": lay.base, "version": info.version,
        "metadata": info.meta, "parents": _parent_refs(dst, info),
        "data_digest": info.lineage.get("data_digest"), "digest": info.digest,
        "files": [{"path": rel, "size": e.size, "sha256": e.sha256} for rel, e in lay.main],
        "attachments": [{"role": e.role, "name": n, "size": e.size, "sha256": e.sha256}
                        for n, e in lay.attachments],
    }

    class _LazyBlobs(dict[str, Path]):
        # Only files the server lacks are fetched from the source (and counted).
        def __missing__(self, sha: str) -> Path:
            entry = next(f for f in info.files if f.sha256 == sha)
            p = _source_path(src, info, entry, progress=progress, spooled=spooled)
            self[sha] = p
            return p

    done, sent = dst.upload(info.model, spec, _LazyBlobs(), progress=progress)
    sizes = {f.sha256: f.size for f in info.files}
    res.files_sent = sum(1 for f in info.files if f.sha256 in sent)
    res.bytes_sent = sum(sizes[s] for s in sent)
    res.files_deduped = len(info.files) - res.files_sent
    return done, res


def copy_versions(src: AnyHub, dst: AnyHub, refs: Sequence[str], *,
                  include_revoked: bool = False, aliases: bool = False,
                  actor: str | None = None, progress: Progress | None = None
                  ) -> list[CopyResult]:
    """Copy the versions ``refs`` name (and their lineage parents) from ``src`` to ``dst``.

    Args:
        src: the hub to read (local, shared or served).
        dst: the hub to write.
        refs: refs resolved in ``src`` (``distill@production``...).
        include_revoked: also copy revoked versions named exactly (their revocation is
            copied too).
        aliases: also point, in ``dst``, the aliases that name each copied version in
            ``src``.
        actor: who the destination records (a remote one records its token).
        progress: called with byte counts.

    Raises:
        NotFound: a ref does not resolve in ``src``.
        Conflict: ``dst`` holds the same version number with other content.
        IntegrityError: a copy's digest differs from the source's.
        PermissionDenied: a token may not read or write what this needs.
    """
    if not refs:
        raise InvalidInput("name at least one ref to copy")
    results: list[CopyResult] = []
    seen: set[str] = set()
    revoked: list[VersionInfo] = []
    spooled: list[Path] = []

    def one(ref: str, *, want_revoked: bool, with_aliases: bool) -> None:
        info = src.resolve(ref, include_revoked=want_revoked)
        if info.ref in seen:
            return
        seen.add(info.ref)
        for p in info.lineage.get("parents", []) or []:
            one(f"{p['model']}@{p['version']}", want_revoked=True, with_aliases=False)
        have = _find(dst, info.model, info.version)
        if have is not None:
            if have.digest != info.digest:
                raise Conflict(f"{info.ref} exists in the destination with digest"
                               f" {str(have.digest)[:12]}…, not {str(info.digest)[:12]}…;"
                               " versions are immutable, so nothing was copied over it")
            res = CopyResult(info.ref, "present", str(info.digest), files=len(info.files),
                             files_deduped=len(info.files))
        else:
            if dst.is_served:
                done, res = _copy_remote(src, dst, info, progress=progress, spooled=spooled)
            else:
                done, res = _copy_local(src, dst, info, actor=actor, progress=progress,
                                        spooled=spooled)
            if done.digest != info.digest:
                with contextlib.suppress(HubError):
                    dst.delete(done.ref, confirm=True, actor=actor)
                raise IntegrityError(f"{info.ref}: the copy's digest {str(done.digest)[:12]}…"
                                     f" differs from the source's {str(info.digest)[:12]}…;"
                                     " the copy was removed", path=info.ref,
                                     expected=str(info.digest), actual=str(done.digest))
        if info.revoked:
            revoked.append(info)
        if with_aliases:
            for a in src.aliases(info.model):
                if a.version == info.version:
                    try:
                        cur = dst.index.get_alias(info.model, a.alias).version
                    except NotFound:
                        cur = None
                    if cur != info.version:
                        try:
                            dst.set_alias(info.ref, a.alias, expect=cur or "", actor=actor)
                        except GateFailed as exc:
                            # A copy moves a gated alias only through the destination's own
                            # gates; the version is copied, the alias is reported as held back.
                            log.warning("%s: alias %s not moved: %s", info.ref, a.alias, exc)
                            res.aliases_held.append(a.alias)
                            continue
                    res.aliases.append(a.alias)
        results.append(res)

    try:
        for ref in refs:
            one(ref, want_revoked=include_revoked, with_aliases=aliases)
    finally:
        for p in spooled:
            p.unlink(missing_ok=True)
    # Revocations last: a revoked parent must still resolve while its children register.
    for info in revoked:
        have = _find(dst, info.model, info.version)
        if have is not None and not have.revoked:
            dst.revoke(info.ref, reason=info.revoke_reason or "revoked in the source hub",
                       actor=actor)
    return results


def _rmtree(p: Path) -> None:
    def onerror(func: Any, path: str, _exc: Any) -> None:
        with contextlib.suppress(OSError):
            os.chmod(os.path.dirname(path), 0o700)
            func(path)

    if p.exists():
        shutil.rmtree(p, onerror=onerror)


def closure_size(src: AnyHub, refs: Sequence[str], *, include_revoked: bool = False) -> int:
    """Bytes of the versions ``refs`` name and their lineage parents (for a progress bar)."""
    seen: set[str] = set()
    total = 0
    todo = [(r, include_revoked) for r in refs]
    while todo:
        ref, revoked = todo.pop()
        info = src.resolve(ref, include_revoked=revoked)
        if info.ref in seen:
            continue
        seen.add(info.ref)
        total += int(info.size)
        todo += [(f"{p['model']}@{p['version']}", True)
                 for p in info.lineage.get("parents", []) or []]
    return total


# -- `sentenialx models copy` ----------------------------------------------------------
# Added with issue 5 (scale-out, `models copy`) as separate functions so that
# copy_versions (pull/push) is unchanged. A whole-hub mirror on top of copy_versions that
# also carries what it leaves behind: `.sig` sidecars with their `sign` events (the same
# bytes: a signature covers file digests, identical on both sides) and, as provenance, one
# `import` event per version naming the source hub and the hashes of its own events.


@dataclass(slots=True)
class HubCopyReport:
    """What :func:`copy_hub` did."""

    results: list[CopyResult] = field(default_factory=list)
    signatures: list[str] = field(default_factory=list)  # refs whose .sig was carried
    provenance: list[str] = field(default_factory=list)  # refs given an `import` event
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form."""
        return {"results": [r.to_dict() for r in self.results], "signatures": self.signatures,
                "provenance": self.provenance, "notes": self.notes}


def all_refs(src: AnyHub) -> list[str]:
    """``model@version`` of every version of every model in ``src`` (revoked included)."""
    return [f"{m['model']}@{v.version}" for m in src.models() for v in src.versions(m["model"])]


def _parents_first(src: AnyHub, refs: Sequence[str]) -> list[str]:
    # Exact refs, each after its lineage parents: copy_versions skips a version it already
    # reached as another's parent, and would then not carry that version's aliases.
    order: list[str] = []
    seen: set[str] = set()

    def visit(ref: str) -> None:
        info = src.resolve(ref, include_revoked=True)
        if info.ref in seen:
            return
        seen.add(info.ref)
        for p in info.lineage.get("parents", []) or []:
            visit(f"{p['model']}@{p['version']}")
        order.append(info.ref)

    for r in refs:
        visit(r)
    return order


def _hub_identity(h: AnyHub) -> dict[str, Any]:
    # A served index shows no hub_id (it stays on its host): the URL names it.
    return {"hub_id": h.index.state()["hub_id"], "location": h.url}


def _carry_signature(src: AnyHub, dst: AnyHub, info: VersionInfo, *, source: dict[str, Any],
                     actor: str) -> bool:
    """Copy the version's `.sig` (if dst has none) and replay src's `sign` events; True if done."""
    try:
        bundle = src.store.read_bytes(src.sig_key(info))
    except NotFound:
        return False
    carried = False
    key = dst.sig_key(info)
    if dst.store.stat(key) is None:
        dst.store.put_small(key, bundle)
        carried = True
    have = {str(e.payload.get("provenance_sig")) for e in dst.index.events(model=info.model)
            if e.kind == "sign" and e.version == info.version}
    for ev in src.index.events(model=info.model):
        if ev.kind != "sign" or ev.version != info.version or \
                str(ev.payload.get("provenance_sig")) in have:
            continue
        # The payload is kept whole, so dst's provenance gate can check the signed statement.
        payload = dict(ev.payload, source=dict(source, seq=ev.seq, hash=ev.hash))
        dst.index.append_event("sign", info.model, info.version, actor=actor, payload=payload)
        carried = True
    return carried


def _record_provenance(src: AnyHub, dst: AnyHub, info: VersionInfo, *, source: dict[str, Any],
                       dest: dict[str, Any], actor: str) -> bool:
    """Append an `import` event naming the source hub and its events for this version."""
    mine = [e for e in src.events(model=info.model) if e.version == info.version]
    # dst is never served here (copy_hub sends no events to a served hub).
    for e in dst.index.events(model=info.model):
        if e.kind == "import" and e.version == info.version and \
                e.payload.get("source", {}).get("hub_id") == source["hub_id"]:
            return False  # already recorded by an earlier (possibly interrupted) run
    if dest["hub_id"] and any(e.kind == "import" and e.payload.get("source", {}).get("hub_id")
                              == dest["hub_id"] for e in mine):
        return False  # a round trip back to where it came from: nothing new to record
    payload = {"digest": info.digest, "source": source,
               "source_events": [{"seq": e.seq, "kind": e.kind, "hash": e.hash} for e in mine]}
    dst.index.append_event("import", info.model, info.version, actor=actor, payload=payload)
    return True


def copy_hub(src: AnyHub, dst: AnyHub, refs: Sequence[str] = (), *, actor: str | None = None,
             progress: Progress | None = None) -> HubCopyReport:
    """Mirror versions from ``src`` to ``dst``: files, metadata, lineage, aliases,
    revocations, signatures and provenance, verified, skipping what ``dst`` already has.

    Resumable: a re-run copies only what is missing (an interrupted registration leaves
    nothing behind; one killed outright leaves a pending row that `gc` clears).

    Args:
        src: the hub to read.
        dst: the hub to write.
        refs: refs in ``src``; none means every version of every model.
        actor: who ``dst`` records.
        progress: called with byte counts.

    Raises:
        NotFound: a ref does not resolve in ``src``.
        Conflict: ``dst`` holds the same version number with other content.
        IntegrityError: a copy's digest differs from the source's.
    """
    from sentenialx.hub._core import default_actor

    actor = actor or default_actor()
    rep = HubCopyReport()
    targets = _parents_first(src, list(refs) or all_refs(src))
    if not targets:
        return rep
    rep.results = copy_versions(src, dst, targets, include_revoked=True, aliases=True,
                                actor=actor, progress=progress)
    if dst.is_served:
        rep.notes.append("signatures and provenance events are not sent to a served hub")
        return rep
    if src.is_served:
        rep.notes.append("signatures are not read from a served hub")
    source, dest = _hub_identity(src), _hub_identity(dst)
    for r in rep.results:
        info = src.resolve(r.ref, include_revoked=True)
        if not src.is_served and _carry_signature(src, dst, info, source=source,
                                                               actor=actor):
            rep.signatures.append(r.ref)
        if _record_provenance(src, dst, info, source=source, dest=dest, actor=actor):
            rep.provenance.append(r.ref)
    # A gated alias held back for want of a signature may pass now that the signatures
    # and provenance are carried: try it once more, through the same gates.
    for r in rep.results:
        for alias in list(r.aliases_held):
            try:
                dst.set_alias(r.ref, alias, actor=actor)
            except GateFailed as exc:
                log.warning("%s: alias %s not moved: %s", r.ref, alias, exc)
                continue
            r.aliases_held.remove(alias)
            r.aliases.append(alias)
    if rep.signatures or rep.provenance:
        dst.write_registry_json()  # exports the new events (events.jsonl)
    return rep


__all__ = ["CopyResult", "HubCopyReport", "all_refs", "closure_size", "copy_hub", "copy_versions"]
