"""``sentenialx tuf init|root|rotate|delegate|status``: the hub's TUF repository for edge hosts."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import click

from sentenialx.hub.cli import HubGroup, hub_option, json_option, open_hub, print_json
from sentenialx.hub.cli.keys import _passphrase
from sentenialx.hub.errors import InvalidInput

_KEY = click.Path(path_type=Path, exists=True, dir_okay=False)


def _expiries(items: tuple[str, ...]) -> dict[str, timedelta]:
    from sentenialx.hub.cli.serve import _duration

    out = {}
    for it in items:
        role, sep, value = it.partition("=")
        if not sep or not role:
            raise InvalidInput(f"--expires {it!r}: use ROLE=DURATION, e.g. timestamp=1d")
        out[role] = _duration(value)
    return out


@click.group(cls=HubGroup)
def tuf() -> None:
    """The hub's TUF repository: signed releases for hosts that trust no server."""


@tuf.command()
@click.option("--root-key", "root_keys", multiple=True, required=True, type=_KEY,
              help="Offline root private key PEM (repeat for several; kept offline).")
@click.option("--threshold", default=1, show_default=True, type=click.IntRange(min=1),
              help="Root signatures a new root needs.")
@click.option("--targets-key", required=True, type=_KEY,
              help="Offline targets private key PEM: it delegates releases to release keys.")
@click.option("--online-keys", type=click.Path(path_type=Path, file_okay=False),
              help="Folder for the snapshot and timestamp keys, outside the hub (default"
                   " ~/.config/sentenialx/tuf-online/<hub id>).")
@click.option("--expires", "expires", multiple=True, metavar="ROLE=DURATION",
              help="Validity of a role's metadata: root, targets, release, snapshot,"
                   " timestamp (e.g. timestamp=1d).")
@click.option("--passphrase-env", metavar="VAR", help="The keys' passphrase is in $VAR.")
@hub_option
@json_option
def init(root_keys: tuple[Path, ...], threshold: int, targets_key: Path, online_keys: Path | None,
         expires: tuple[str, ...], passphrase_env: str | None, hub_path: str | None,
         as_json: bool) -> None:
    """Create the hub's TUF repository (root v1, targets delegating to the policy's release keys)."""
    out = open_hub(hub_path).tuf_init(root_keys=list(root_keys), threshold=threshold,
                                      targets_key=targets_key, online_dir=online_keys,
                                      expiry=_expiries(expires),
                                      passphrase=_passphrase(passphrase_env))
    if as_json:
        print_json(out)
        return
    click.echo(f"TUF repository created; give clients {out['root']} (`sentenialx tuf root`)")
    click.echo(f"online keys (snapshot, timestamp): {out['online_keys']}; release roles:"
               f" {', '.join(out['roles']) or 'none (trust release keys, then `tuf delegate`)'}")


@tuf.command()
@hub_option
def root(hub_path: str | None) -> None:
    """Print the newest root.json: what clients pass as --tuf-root."""
    click.echo(open_hub(hub_path).tuf_repository().root_bytes().decode(), nl=False)


@tuf.command()
@click.option("--root-key", "old_keys", multiple=True, required=True, type=_KEY,
              help="A current root key (enough of them for the current threshold).")
@click.option("--new-root-key", "new_keys", multiple=True, required=True, type=_KEY,
              help="A root key of the new root (repeat for several).")
@click.option("--threshold", type=click.IntRange(min=1), help="The new root threshold.")
@click.option("--new-online-keys", type=click.Path(path_type=Path, file_okay=False),
              help="Also replace the snapshot and timestamp keys with new ones made in this"
                   " (new) folder outside the hub; then serve with --tuf-online-keys DIR.")
@click.option("--passphrase-env", metavar="VAR", help="The keys' passphrase is in $VAR.")
@hub_option
def rotate(old_keys: tuple[Path, ...], new_keys: tuple[Path, ...], threshold: int | None,
           new_online_keys: Path | None, passphrase_env: str | None, hub_path: str | None
           ) -> None:
    """Write the next root with new root keys, signed by the old threshold and the new one."""
    v = open_hub(hub_path).tuf_rotate(old_keys=list(old_keys), new_keys=list(new_keys),
                                      threshold=threshold, passphrase=_passphrase(passphrase_env),
                                      new_online_dir=new_online_keys)
    click.echo(f"root v{v} written; clients that trust an older root update to it on refresh"
               + (f"; new online keys in {new_online_keys}: serve with --tuf-online-keys"
                  if new_online_keys else ""))


@tuf.command()
@click.option("--targets-key", required=True, type=_KEY, help="The offline targets key PEM.")
@click.option("--passphrase-env", metavar="VAR", help="The key's passphrase is in $VAR.")
@hub_option
def delegate(targets_key: Path, passphrase_env: str | None, hub_path: str | None) -> None:
    """Re-sign targets: delegate each model pattern to the release keys the policy trusts now."""
    roles = open_hub(hub_path).tuf_delegate(targets_key, passphrase=_passphrase(passphrase_env))
    click.echo(f"targets re-signed; release roles: {', '.join(roles) or 'none'}")


@tuf.command()
@hub_option
@json_option
def status(hub_path: str | None, as_json: bool) -> None:
    """Each role's version, expiry, threshold and keys."""
    rows = open_hub(hub_path).tuf_repository().status()
    if as_json:
        print_json([r.to_dict() for r in rows])
        return
    for r in rows:
        keys = ", ".join(k[:12] for k in r.keys)
        paths = f"  models {r.paths[0]}" if r.paths else ""
        click.echo(f"{r.role:<24} v{r.version:<5} expires {r.expires}  {r.threshold} of"
                   f" [{keys}]{paths}")
