"""``sentenialx models ...``: the hub's verbs."""

from __future__ import annotations

import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from sentenialx.hub._format import (
    dumps_json,
    human_size,
    models_text,
    show_text,
    show_view,
    versions_text,
    versions_view,
)
from sentenialx.hub.cli import (
    EXIT_CHECK_FAILED,
    HubGroup,
    hub_option,
    json_option,
    open_hub,
    print_json,
)
from sentenialx.hub.errors import InvalidInput


def _parse_meta(pairs: tuple[str, ...], meta_file: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    if meta_file:
        try:
            loaded = json.loads(Path(meta_file).read_text())
        except OSError as exc:
            raise InvalidInput(f"--meta-file {meta_file!r}: {exc.strerror}") from None
        except ValueError as exc:
            raise InvalidInput(f"--meta-file {meta_file!r} is not JSON: {exc}") from None
        if not isinstance(loaded, dict):
            raise InvalidInput(f"--meta-file {meta_file!r} must hold a JSON object")
        meta.update(loaded)
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise InvalidInput(f"--meta {pair!r}: use KEY=VALUE")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        # metrics.accuracy=0.97 sets a nested key.
        target = meta
        parts = key.split(".")
        for p in parts[:-1]:
            target = target.setdefault(p, {})
            if not isinstance(target, dict):
                raise InvalidInput(f"--meta {pair!r}: {p!r} is not an object")
        target[parts[-1]] = value
    return meta


@click.group(cls=HubGroup)
def models() -> None:
    """Register, find, verify and manage model versions."""


@models.command()
@click.argument("model")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--version", "version", metavar="X.Y.Z", help="Explicit semver version.")
@click.option("--bump", type=click.Choice(["major", "minor", "patch"]),
              help="Next version from the highest existing (default patch; first is 1.0.0).")
@click.option("--meta", multiple=True, metavar="KEY=VALUE",
              help="Metadata; VALUE is JSON if it parses. Dotted keys nest: metrics.accuracy=0.97.")
@click.option("--meta-file", metavar="FILE", help="A JSON object of metadata.")
@click.option("--parent", multiple=True, metavar="[ROLE=]REF",
              help="Lineage: a model this one derives from, e.g. teacher=distill-teacher@1.0.0.")
@click.option("--data-digest", metavar="SHA256", help="sha256 of the training data.")
@click.option("--attach", multiple=True, metavar="ROLE=PATH",
              help="Attach a log, chart, report, config or other file.")
@click.option("--alias", metavar="NAME", help="Point this alias at the new version.")
@click.option("--name", metavar="STEM", help="Stored file name stem (default: the input's).")
@click.option("--link", is_flag=True,
              help="Hardlink instead of copying (same filesystem; the input becomes read-only).")
@click.option("--sign-with", "sign_with", metavar="KEY", type=click.Path(exists=True),
              help="Sign the new version with this private key.")
@click.option("--passphrase-env", metavar="VAR", help="The signing key's passphrase is in $VAR.")
@click.option("--idempotency-key", "idempotency_key", metavar="KEY",
              help="Make a retry safe: the same KEY with the same inputs returns the version"
                   " the first attempt registered.")
@hub_option
@json_option
def register(model: str, path: Path, version: str | None, bump: str | None,
             meta: tuple[str, ...], meta_file: str | None, parent: tuple[str, ...],
             data_digest: str | None, attach: tuple[str, ...], alias: str | None,
             name: str | None, link: bool, sign_with: str | None, passphrase_env: str | None,
             idempotency_key: str | None, hub_path: str | None, as_json: bool) -> None:
    """Register PATH (a file or a folder) as a new version of MODEL."""
    from sentenialx.hub._progress import byte_progress

    metadata = _parse_meta(meta, meta_file)
    attachments = []
    for a in attach:
        role, sep, p = a.partition("=")
        if not sep:
            raise InvalidInput(f"--attach {a!r}: use ROLE=PATH (roles: log, chart, report,"
                               " config, other)")
        attachments.append((role, p))
    hub = open_hub(hub_path)
    total = _input_size(path) + sum(_input_size(Path(p)) for _, p in attachments)
    with byte_progress(f"register {model}", total) as progress:
        info = hub.register(model, path, version=version, bump=bump, metadata=metadata,
                            parents=parent, data_digest=data_digest, attachments=attachments,
                            alias=alias, link=link, name=name, progress=progress,
                            idempotency_key=idempotency_key)
    if sign_with:
        from sentenialx.hub.cli.keys import _passphrase

        hub.sign(info.ref, sign_with, passphrase=_passphrase(passphrase_env))
    if as_json:
        print_json(info.to_dict())
    else:
        click.echo(f"registered {info.ref}  sha256:{info.digest}  ({len(info.files)} files,"
                   f" {human_size(info.size)})")


def _input_size(p: Path) -> int:
    try:
        if p.is_file():
            return p.stat().st_size
        if p.is_dir():
            return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    except OSError:
        return 0
    return 0


@models.command()
@click.option("--index", "index_url", metavar="URL", help="Index database (default: SQLite in the folder).")
@click.option("--store", "store_url", metavar="URL", help="Blob store (default: the folder).")
@click.option("--s3-endpoint", "endpoint", metavar="URL", help="S3 endpoint URL.")
@click.option("--cache-max-bytes", type=int, help="Cap of the local read cache for remote stores.")
@click.option("--hub", "hub_path", envvar="SENTENIALX_HUB", default=None, metavar="PATH",
              help="Hub folder to write hub.toml into.")
def init(index_url: str | None, store_url: str | None, endpoint: str | None,
         cache_max_bytes: int | None, hub_path: str | None) -> None:
    """Create or upgrade a hub; with --index/--store, write hub.toml for a shared hub."""
    import os
    from pathlib import Path as _P

    from sentenialx.hub.config import write_config
    from sentenialx.hub.hub import DEFAULT_ROOT, Hub

    root = _P(hub_path or os.environ.get("SENTENIALX_HUB") or DEFAULT_ROOT)
    if index_url or store_url or endpoint or cache_max_bytes:
        p = write_config(root, index=index_url, store=store_url, s3_endpoint=endpoint,
                         cache_max_bytes=cache_max_bytes)
        click.echo(f"wrote {p}")
    hub = Hub.open(root)
    click.echo(f"hub ready at {hub.root}: {hub.init()}")


@models.command("list")
@hub_option
@json_option
def list_(hub_path: str | None, as_json: bool) -> None:
    """List models with their latest version and aliases."""
    rows = open_hub(hub_path).models()
    click.echo(dumps_json(rows) if as_json else models_text(rows))


@models.command()
@click.argument("model")
@hub_option
@json_option
def versions(model: str, hub_path: str | None, as_json: bool) -> None:
    """List every version of MODEL."""
    hub = open_hub(hub_path)
    vs = hub.versions(model)
    al = hub.aliases(model)
    click.echo(dumps_json(versions_view(vs, al)) if as_json else versions_text(vs, al))


@models.command()
@click.argument("ref")
@click.option("--include-revoked", is_flag=True, help="Resolve a revoked version too.")
@hub_option
@json_option
def show(ref: str, include_revoked: bool, hub_path: str | None, as_json: bool) -> None:
    """Show one version: metadata, lineage and files."""
    hub = open_hub(hub_path)
    v = hub.resolve(ref, include_revoked=include_revoked)
    d = show_view(v, hub.aliases(v.model), hub.root)
    click.echo(dumps_json(d) if as_json else show_text(v, d))


@models.command()
@click.argument("ref")
@hub_option
@json_option
def path(ref: str, hub_path: str | None, as_json: bool) -> None:
    """Print the absolute path of REF's weights file (or folder)."""
    p = open_hub(hub_path).path(ref)
    if as_json:
        print_json({"ref": ref, "path": str(p)})
    else:
        click.echo(str(p))


@models.command()
@click.argument("ref", required=False)
@click.option("--model", "model", help="Verify every version of one model.")
@click.option("--deep", is_flag=True, help="Re-hash every file, ignoring the stat cache.")
@hub_option
@json_option
def verify(ref: str | None, model: str | None, deep: bool, hub_path: str | None,
           as_json: bool) -> None:
    """Verify REF, a model, or the whole hub against the manifests."""
    from sentenialx.hub._progress import byte_progress

    hub = open_hub(hub_path)
    total = 0
    if deep:
        vs = ([hub.resolve(ref, include_revoked=True)] if ref else
              hub.versions(model) if model else hub.all_versions())
        total = sum(v.size for v in vs)
    with byte_progress("verify", total) as progress:
        rep = hub.verify(ref, model=model, deep=deep, progress=progress)
    if as_json:
        print_json(rep.to_dict())
    else:
        for p in rep.problems:
            click.echo(f"{p.kind.upper():8} {p.message}")
        status = "OK" if rep.ok else f"FAILED ({len(rep.problems)} problems)"
        trusted = "" if deep else ", others trusted from the stat cache"
        click.echo(f"{status}: {rep.versions} versions, {rep.files} files, {rep.hashed} hashed"
                   f" ({human_size(rep.bytes_hashed)}){trusted}")
    if not rep.ok:
        sys.exit(EXIT_CHECK_FAILED)


@models.group(cls=HubGroup)
def alias() -> None:
    """Set, move, remove, list and roll back aliases (production, staging...)."""


@alias.command("set")
@click.argument("ref")
@click.argument("name")
@click.option("--expect", metavar="VERSION",
              help="Only move if NAME points at VERSION now ('' = must be unset).")
@click.option("--force", is_flag=True,
              help="Move a gated alias even if a gate fails (recorded in the history).")
@hub_option
@json_option
def alias_set(ref: str, name: str, expect: str | None, force: bool, hub_path: str | None,
              as_json: bool) -> None:
    """Point alias NAME at the version REF resolves to (a gated alias only through its gates)."""
    hub = open_hub(hub_path)
    prev = hub.set_alias(ref, name, expect=expect, force=force)
    v = hub.resolve(f"{ref.split('@')[0]}@{name}")
    if as_json:
        print_json({"alias": name, "model": v.model, "version": v.version, "previous": prev})
    else:
        click.echo(f"{v.model}@{name} -> {v.version}" + (f" (was {prev})" if prev else ""))


@alias.command("rm")
@click.argument("model")
@click.argument("name")
@click.option("--expect", metavar="VERSION", help="Only remove if NAME points at VERSION now.")
@hub_option
def alias_rm(model: str, name: str, expect: str | None, hub_path: str | None) -> None:
    """Remove alias NAME of MODEL."""
    v = open_hub(hub_path).remove_alias(model, name, expect=expect)
    click.echo(f"removed {model}@{name} (was {v})")


@alias.command("list")
@click.argument("model", required=False)
@hub_option
@json_option
def alias_list(model: str | None, hub_path: str | None, as_json: bool) -> None:
    """List aliases."""
    rows = open_hub(hub_path).aliases(model)
    if as_json:
        print_json([a.to_dict() for a in rows])
        return
    for a in rows:
        click.echo(f"{a.model}@{a.alias} -> {a.version}  ({a.updated_at[:19]} by {a.updated_by})")


@alias.command("history")
@click.argument("model")
@click.argument("name", required=False)
@hub_option
@json_option
def alias_history(model: str, name: str | None, hub_path: str | None, as_json: bool) -> None:
    """Every move of MODEL's aliases, oldest first."""
    rows = open_hub(hub_path).alias_history(model, name)
    if as_json:
        print_json([m.to_dict() for m in rows])
        return
    for m in rows:
        click.echo(f"{m.ts[:19]}  {m.model}@{m.alias}: {m.previous or '-'} -> {m.version or '(removed)'}"
                   f"  by {m.actor}")


@alias.command("rollback")
@click.argument("model")
@click.argument("name")
@click.option("--force", is_flag=True,
              help="Roll a gated alias back even if a gate fails (recorded in the history).")
@hub_option
def alias_rollback(model: str, name: str, force: bool, hub_path: str | None) -> None:
    """Move alias NAME back to where it pointed before its last move (through its gates)."""
    v = open_hub(hub_path).rollback(model, name, force=force)
    click.echo(f"{model}@{name} -> {v}")


@models.command()
@click.argument("ref")
@click.option("--reason", required=True, help="Why (recorded in the history).")
@click.option("--undo", is_flag=True, help="Un-revoke instead.")
@hub_option
def revoke(ref: str, reason: str, undo: bool, hub_path: str | None) -> None:
    """Revoke a version: kept, but no longer resolved unless asked for."""
    hub = open_hub(hub_path)
    v = hub.unrevoke(ref) if undo else hub.revoke(ref, reason=reason)
    click.echo(f"{'un-revoked' if undo else 'revoked'} {v.ref}")


@models.command()
@click.argument("ref")
@click.option("--yes", is_flag=True, help="Confirm: deleting cannot be undone.")
@hub_option
def delete(ref: str, yes: bool, hub_path: str | None) -> None:
    """Delete a version and its files (needs --yes)."""
    v = open_hub(hub_path).delete(ref, confirm=yes)
    click.echo(f"deleted {v.ref}")


@models.command()
@click.option("--model", "model", help="Only this model's events.")
@click.option("--limit", type=int, help="Only the last N events.")
@click.option("--verify", "verify_chain", is_flag=True, help="Check the whole hash chain.")
@click.option("--hub-pubkey", "hub_pubkey", metavar="PEM", envvar="SENTENIALX_HUB_PUBKEY",
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="With --verify: the hub's public key, pinned (the folder's copy is not trusted).")
@hub_option
@json_option
def log(model: str | None, limit: int | None, verify_chain: bool, hub_pubkey: Path | None,
        hub_path: str | None, as_json: bool) -> None:
    """Show the hash-chained history (newest last)."""
    hub = open_hub(hub_path)
    if verify_chain:
        rep = hub.verify_log(**({"pubkey": hub_pubkey} if hub_pubkey else {}))
        if as_json:
            print_json({"ok": rep.ok, "events": rep.count, "head": rep.head,
                        "first_bad": rep.first_bad, "reason": rep.reason})
        elif rep.ok:
            click.echo(f"OK: {rep.count} events, head {rep.head}")
        else:
            click.echo(f"FAILED: {rep.reason}")
        if not rep.ok:
            sys.exit(EXIT_CHECK_FAILED)
        return
    evs = hub.events(model=model, limit=limit)
    if as_json:
        print_json([e.to_dict() for e in evs])
        return
    for e in evs:
        extra = " ".join(f"{k}={v}" for k, v in sorted(e.payload.items())
                         if k in ("alias", "previous", "reason", "digest") and v)
        click.echo(f"#{e.seq:<5} {e.ts[:19]}  {e.kind:<12} {e.model}@{e.version}  by {e.actor}"
                   f"  {extra[:100]}")


@models.command()
@click.argument("ref_a")
@click.argument("ref_b")
@hub_option
@json_option
def diff(ref_a: str, ref_b: str, hub_path: str | None, as_json: bool) -> None:
    """Compare two versions: files, metrics and metadata."""
    d = open_hub(hub_path).diff(ref_a, ref_b)
    if as_json:
        print_json(d)
        return
    click.echo(f"{d['a']} -> {d['b']}" + ("  (identical manifests)" if d["same_digest"] else ""))
    for f in d["added"]:
        click.echo(f"  + {f}")
    for f in d["removed"]:
        click.echo(f"  - {f}")
    for c in d["changed"]:
        click.echo(f"  ~ {c['file']}  {c['a'][:12]} -> {c['b'][:12]}")
    for k, m in d["metrics"].items():
        delta = f" ({m['delta']:+.4g})" if "delta" in m else ""
        click.echo(f"  metric {k}: {m['a']} -> {m['b']}{delta}")
    for k, m in d["metadata"].items():
        click.echo(f"  {k}: {json.dumps(m['a'])} -> {json.dumps(m['b'])}")


def _grace(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1] in units:
            return timedelta(seconds=float(text[:-1]) * units[text[-1]])
        return timedelta(seconds=float(text))
    except (ValueError, IndexError):
        raise InvalidInput(f"--grace {text!r}: use a number with s, m, h or d (e.g. 1h)") from None


@models.command()
@click.option("--grace", default="1h", show_default=True,
              help="Only remove what is older than this (e.g. 30m, 2h, 0s).")
@click.option("--dry-run", is_flag=True, help="Only report what would be removed.")
@hub_option
@json_option
def gc(grace: str, dry_run: bool, hub_path: str | None, as_json: bool) -> None:
    """Remove orphans: files no version names and crashed registrations."""
    rep = open_hub(hub_path).gc(grace=_grace(grace), dry_run=dry_run)
    if as_json:
        print_json(rep.to_dict())
        return
    verb = "would remove" if dry_run else "removed"
    for k in rep.removed:
        click.echo(f"{verb} {k}")
    for p in rep.stale_pending:
        click.echo(f"{verb} unfinished registration {p}")
    click.echo(f"{verb} {len(rep.removed)} files, {human_size(rep.freed_bytes)}"
               f"; kept {rep.kept_young} younger than {grace}")


@models.command()
@click.argument("model", required=False)
@click.option("--deep", is_flag=True, help="Re-hash every file.")
@click.option("--repair", is_flag=True,
              help="First rebuild registry.json, events.jsonl, the signed head and the stat cache.")
@click.option("--grace", default="1h", show_default=True,
              help="Leftovers younger than this may still be in use and are not reported.")
@click.option("--hub-pubkey", "hub_pubkey", metavar="PEM", envvar="SENTENIALX_HUB_PUBKEY",
              type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="The hub's public key, pinned (the folder's copy is not trusted).")
@hub_option
@json_option
def fsck(model: str | None, deep: bool, repair: bool, grace: str, hub_pubkey: Path | None,
         hub_path: str | None, as_json: bool) -> None:
    """Check index, files, sidecars, registry.json and the event chain against each other."""
    rep = open_hub(hub_path).fsck(model, deep=deep, repair=repair, grace=_grace(grace),
                                  **({"pubkey": hub_pubkey} if hub_pubkey else {}))
    if as_json:
        print_json(rep.to_dict())
    else:
        for item in rep.repaired:
            click.echo(f"REBUILT  {item}")
        for p in rep.problems:
            click.echo(f"{p.kind.upper():8} {p.message}")
        click.echo(("OK" if rep.ok else f"FAILED ({len(rep.problems)} problems)") +
                   f": {rep.versions} versions, {rep.events} events, chain head {rep.chain_head[:16]}")
    if not rep.ok:
        sys.exit(EXIT_CHECK_FAILED)


@models.command("export-registry")
@click.option("--output", "-o", metavar="FILE", help="Write here instead of the hub's registry.json.")
@hub_option
def export_registry(output: str | None, hub_path: str | None) -> None:
    """Regenerate registry.json from the index (or write it elsewhere)."""
    hub = open_hub(hub_path)
    view = hub.export_registry(output)
    click.echo(f"wrote {output or hub.root / 'registry.json'} ({len(view)} models)")


@models.command("import-registry")
@click.argument("registry", type=click.Path(path_type=Path))
@hub_option
@json_option
def import_registry(registry: Path, hub_path: str | None, as_json: bool) -> None:
    """Adopt a seed-style store (registry.json and its files), verifying every hash."""
    out = open_hub(hub_path).import_registry(registry)
    if as_json:
        print_json([v.to_dict() for v in out])
        return
    for v in out:
        click.echo(f"imported {v.ref}  sha256:{v.digest}")


# The verbs defined elsewhere, imported only when one of them runs.
models.lazy_commands({
    "sign": "sentenialx.hub.cli.keys:sign",
    "promote": "sentenialx.hub.cli.keys:promote",
    "serve": "sentenialx.hub.cli.serve:serve",
    "token": "sentenialx.hub.cli.serve:token",
    "pull": "sentenialx.hub.cli.serve:pull",
    "push": "sentenialx.hub.cli.serve:push",
    "copy": "sentenialx.hub.cli.copy:copy",
    "import-mlflow": "sentenialx.hub.cli.mlflow:import_mlflow",
    "import-hf": "sentenialx.hub.cli.hf:import_hf",
})
