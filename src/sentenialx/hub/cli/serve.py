"""``sentenialx models serve``, ``token``, ``pull`` and ``push``: the hub over HTTP."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import click

from sentenialx.hub._format import human_size
from sentenialx.hub.cli import HubGroup, console, hub_option, json_option, open_hub, print_json
from sentenialx.hub.errors import InvalidInput

_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _size(text: str) -> int:
    units = {"k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}
    t = text.strip().lower().removesuffix("ib").removesuffix("b")
    try:
        if t and t[-1] in units:
            return int(float(t[:-1]) * units[t[-1]])
        return int(t)
    except ValueError:
        raise InvalidInput(f"size {text!r}: use bytes or a number with K, M, G (e.g. 8G)") from None


def _duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
    try:
        if text and text[-1] in units:
            return timedelta(seconds=float(text[:-1]) * units[text[-1]])
        return timedelta(seconds=float(text))
    except ValueError:
        raise InvalidInput(f"duration {text!r}: use a number with s, m, h, d or w (e.g. 30d)"
                           ) from None


def _local_hub(hub_path: str | None) -> Any:
    from sentenialx.hub.transport.http import is_remote

    if is_remote(hub_path):
        raise InvalidInput("this command works on the hub's own files: give --hub PATH on the"
                           " server host, not a URL")
    return open_hub(hub_path)




@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind; anything but loopback exposes the hub to the network.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--anonymous-read", is_flag=True,
              help="Let requests without a token read (never write).")
@click.option("--max-upload", default="8G", show_default=True, metavar="SIZE",
              help="Largest upload accepted (413 above it).")
@click.option("--log-level", default="info", show_default=True,
              type=click.Choice(["critical", "error", "warning", "info", "debug"]))
@click.option("--header-timeout", default=20.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0.1),
              help="Drop a connection whose request headers take longer than this.")
@click.option("--body-timeout", default=20.0, show_default=True, metavar="SECONDS",
              type=click.FloatRange(min=0.1),
              help="Drop a request whose body brings less than --min-body-rate bytes/s"
                   " over this long.")
@click.option("--min-body-rate", default=1024, show_default=True, metavar="BYTES",
              type=click.IntRange(min=1), help="Slowest body upload accepted, in bytes/s.")
@click.option("--presign/--no-presign", default=True, show_default=True,
              help="On an S3 store, answer API downloads with a 307 to a presigned URL, so"
                   " bytes go from S3 to the client; --no-presign streams them through the"
                   " server (for clients that cannot reach S3).")
@click.option("--presign-ttl", default=300, show_default=True, metavar="SECONDS",
              type=click.IntRange(1, 7 * 24 * 3600), help="Lifetime of a presigned URL.")
@click.option("--tuf-online-keys", envvar="SENTENIALX_TUF_ONLINE_KEYS", metavar="DIR",
              type=click.Path(file_okay=False),
              help="Folder of the TUF snapshot/timestamp keys (default: the one `tuf init`"
                   " wrote); the server re-signs timestamp before it expires.")
@hub_option
def serve(host: str, port: int, anonymous_read: bool, max_upload: str, log_level: str,
          header_timeout: float, body_timeout: float, min_body_rate: int, presign: bool,
          presign_ttl: int, tuf_online_keys: str | None, hub_path: str | None) -> None:
    """Serve the hub: REST API (/api/v1, /openapi.json) and web pages, with token auth."""
    import uvicorn

    from sentenialx.hub.server import create_app
    from sentenialx.hub.server._timeouts import guarded_protocol

    hub = _local_hub(hub_path)
    app = create_app(hub, anonymous_read=anonymous_read, max_upload_bytes=_size(max_upload),
                     presign_ttl=presign_ttl if presign else None,
                     tuf_online_keys=tuf_online_keys)
    active = [t for t in hub.tokens.list() if t.active]
    if host not in _LOOPBACK:
        click.echo(f"warning: serving on {host}: reachable from the network; put TLS in front",
                   err=True)
    if not active and not anonymous_read:
        click.echo("note: no active token; create one with `sentenialx models token create"
                   " NAME --scope read`", err=True)
    click.echo(f"serving {hub.root} on http://{host}:{port} (API /api/v1, /openapi.json)",
               err=True)
    protocol = guarded_protocol(header_timeout=header_timeout, body_timeout=body_timeout,
                                min_body_rate=min_body_rate)
    uvicorn.run(app, host=host, port=port, log_level=log_level, timeout_keep_alive=30,
                http=protocol)


@click.group(cls=HubGroup)
def token() -> None:
    """Create, list and revoke API tokens (stored only as sha256 hashes)."""


@token.command("create")
@click.argument("name")
@click.option("--scope", type=click.Choice(["read", "write", "admin"]), default="read",
              show_default=True, help="read < write (register, alias, revoke) < admin (delete).")
@click.option("--model", "models", multiple=True, metavar="NAME",
              help="Limit the token to this model (repeatable; * and ? patterns allowed).")
@click.option("--expires", metavar="DURATION", help="Lifetime, e.g. 30d or 12h (default: none).")
@hub_option
@json_option
def token_create(name: str, scope: str, models: tuple[str, ...], expires: str | None,
                 hub_path: str | None, as_json: bool) -> None:
    """Create token NAME; the secret is printed once and never stored."""
    hub = _local_hub(hub_path)
    secret, tok = hub.tokens.create(name, scope=scope, models=list(models) or None,
                                    expires_in=_duration(expires) if expires else None)
    if as_json:
        print_json(dict(tok.to_dict(), token=secret))
        return
    click.echo(secret)
    limits = f" on {', '.join(tok.models)}" if tok.models else ""
    click.echo(f"created token {name!r} ({scope}{limits}"
               f"{', expires ' + tok.expires_at if tok.expires_at else ''}); it is shown only"
               " now: keep it in $SENTENIALX_TOKEN", err=True)


@token.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include revoked tokens.")
@hub_option
@json_option
def token_list(show_all: bool, hub_path: str | None, as_json: bool) -> None:
    """List tokens (names, scopes, limits; never secrets)."""
    rows = _local_hub(hub_path).tokens.list(include_revoked=show_all)
    if as_json:
        print_json([t.to_dict() for t in rows])
        return
    from rich.table import Table

    t = Table("name", "scope", "models", "created", "expires", "last used", "status")
    for tok in rows:
        status = ("revoked" if tok.revoked_at else "active" if tok.active else "expired")
        t.add_row(tok.name, tok.scope, ", ".join(tok.models) if tok.models else "all",
                  tok.created_at[:19], (tok.expires_at or "-")[:19],
                  (tok.last_used_at or "-")[:19], status)
    console().print(t)


@token.command("revoke")
@click.argument("name")
@hub_option
def token_revoke(name: str, hub_path: str | None) -> None:
    """Revoke token NAME; servers refuse it from their next request on."""
    tok = _local_hub(hub_path).tokens.revoke(name)
    click.echo(f"revoked token {tok.name!r}")


def _open_any(location: str | None) -> Any:
    from sentenialx.hub.hub import Hub

    return Hub.open(location)


def _print_results(results: list[Any], as_json: bool) -> None:
    if as_json:
        print_json([r.to_dict() for r in results])
        return
    for r in results:
        if r.status == "present":
            click.echo(f"present {r.ref}  sha256:{r.digest[:12]}  (already there)")
        else:
            click.echo(f"copied  {r.ref}  sha256:{r.digest[:12]}  ({r.files_sent} of {r.files}"
                       f" files sent, {human_size(r.bytes_sent)}; {r.files_deduped} already there)"
                       + (f"  aliases: {', '.join(r.aliases)}" if r.aliases else ""))


def _copy(src: Any, dst: Any, refs: tuple[str, ...], include_revoked: bool, aliases: bool,
          as_json: bool) -> None:
    from sentenialx.hub._progress import byte_progress
    from sentenialx.hub.transfer import closure_size, copy_versions

    total = closure_size(src, refs, include_revoked=include_revoked)
    with byte_progress("copy", total) as progress:
        results = copy_versions(src, dst, list(refs), include_revoked=include_revoked,
                                aliases=aliases, progress=progress)
    _print_results(results, as_json)


@click.command()
@click.argument("src")
@click.argument("refs", nargs=-1, required=True)
@click.option("--to", "to", envvar="SENTENIALX_HUB", default=None, metavar="HUB",
              help="Destination hub: a folder or http(s) URL (default: $SENTENIALX_HUB or"
                   " ./models/artifacts).")
@click.option("--aliases", is_flag=True, help="Also set, here, the aliases naming each version"
                                              " there.")
@click.option("--include-revoked", is_flag=True, help="Also copy revoked versions named exactly.")
@click.option("--hub-key", "hub_key", envvar="SENTENIALX_HUB_PUBKEY", metavar="PUB",
              type=click.Path(exists=True, dir_okay=False),
              help="SRC's pinned hub public key: refuse a replayed (older) or expired state.")
@click.option("--tuf-root", "tuf_root", envvar="SENTENIALX_TUF_ROOT", metavar="ROOT_JSON",
              type=click.Path(exists=True, dir_okay=False),
              help="Read SRC over TUF, trusting only this root.json (`sentenialx tuf root`):"
                   " signed releases only, refused on rollback, freeze or tampering.")
@json_option
def pull(src: str, refs: tuple[str, ...], to: str | None, aliases: bool, include_revoked: bool,
         hub_key: str | None, tuf_root: str | None, as_json: bool) -> None:
    """Copy versions REFS (and their lineage) from hub SRC into this hub, verified."""
    if tuf_root:
        from sentenialx.hub.hub import Hub

        if hub_key:
            raise InvalidInput("--hub-key and --tuf-root do not go together: over TUF the"
                               " signed timestamp and snapshot replace the hub's signed state")

        _copy(Hub.open(src, tuf_root=tuf_root), _open_any(to), refs, include_revoked, aliases,
              as_json)
        return
    source = _open_any(src)
    if hub_key:
        if source.is_served:
            source.guard_state(hub_key)  # remembers the highest generation seen
        else:
            from sentenialx.hub.signing import load_public_key
            from sentenialx.hub.state import StateGuard

            StateGuard(load_public_key(hub_key)).check(source)
    _copy(source, _open_any(to), refs, include_revoked, aliases, as_json)


@click.command()
@click.argument("dest")
@click.argument("refs", nargs=-1, required=True)
@click.option("--aliases", is_flag=True, help="Also set, there, the aliases naming each version"
                                              " here.")
@click.option("--include-revoked", is_flag=True, help="Also copy revoked versions named exactly.")
@hub_option
@json_option
def push(dest: str, refs: tuple[str, ...], aliases: bool, include_revoked: bool,
         hub_path: str | None, as_json: bool) -> None:
    """Copy versions REFS (and their lineage) from this hub to hub DEST, verified."""
    _copy(_open_any(hub_path), _open_any(dest), refs, include_revoked, aliases, as_json)
