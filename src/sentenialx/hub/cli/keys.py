"""``sentenialx keys ...`` and the release verbs ``models sign`` / ``models promote``."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from sentenialx.hub.cli import HubGroup, hub_option, json_option, open_hub, print_json
from sentenialx.hub.errors import InvalidInput


def _passphrase(env: str | None) -> bytes | None:
    if not env:
        return None
    value = os.environ.get(env)
    if value is None:
        raise InvalidInput(f"--passphrase-env {env}: that environment variable is not set")
    return value.encode()


@click.group(cls=HubGroup)
def keys() -> None:
    """Signing keys and the hub's trust policy."""


@keys.command()
@click.option("--out", "out_dir", default=".", show_default=True, type=click.Path(path_type=Path),
              help="Folder for NAME.pem (private, mode 0600) and NAME.pub.")
@click.option("--name", default="sentenialx-signing", show_default=True)
@click.option("--passphrase-env", metavar="VAR", help="Encrypt the private key with $VAR.")
@json_option
def generate(out_dir: Path, name: str, passphrase_env: str | None, as_json: bool) -> None:
    """Write an ECDSA P-256 key pair and print its key id."""
    from sentenialx.hub.refs import validate_name
    from sentenialx.hub.signing import generate_keypair

    validate_name(name, what="key")
    out_dir.mkdir(parents=True, exist_ok=True)
    priv, pub = out_dir / f"{name}.pem", out_dir / f"{name}.pub"
    kid = generate_keypair(priv, pub, passphrase=_passphrase(passphrase_env))
    if as_json:
        print_json({"key_id": kid, "private_key": str(priv), "public_key": str(pub)})
    else:
        click.echo(f"key id {kid}\nprivate {priv} (mode 0600)\npublic  {pub}")


@keys.command()
@click.argument("public_key", type=click.Path(path_type=Path, exists=True, dir_okay=False))
@click.option("--name", help="A name for the key (default: the file's stem).")
@click.option("--model", "models", multiple=True, metavar="PATTERN",
              help="Trust it only for these models (glob; default all).")
@hub_option
def trust(public_key: Path, name: str | None, models: tuple[str, ...], hub_path: str | None) -> None:
    """Trust PUBLIC_KEY for signatures in this hub."""
    hub = open_hub(hub_path)
    ts = hub.trust_store()
    kid = ts.trust_key(public_key, name=name or public_key.stem, models=models or ("*",))
    hub.save_trust(ts, action="trust-key", detail={"key_id": kid, "models": list(models or ("*",))})
    click.echo(f"trusted {kid} for {', '.join(models or ('*',))}")


@keys.command()
@click.argument("key")
@hub_option
def revoke(key: str, hub_path: str | None) -> None:
    """Revoke a trusted KEY (id, id prefix or name): its signatures no longer count."""
    hub = open_hub(hub_path)
    ts = hub.trust_store()
    kid = ts.revoke_key(key)
    hub.save_trust(ts, action="revoke-key", detail={"key_id": kid})
    click.echo(f"revoked {kid}")


@keys.command("hub-key")
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Where to write the hub's private key (outside the hub folder; mode 0600).")
@click.option("--passphrase-env", metavar="VAR", help="Encrypt the private key with $VAR.")
@hub_option
@json_option
def hub_key(out: Path, passphrase_env: str | None, hub_path: str | None, as_json: bool) -> None:
    """Give the hub its own key: it then signs its state and the exported chain head.

    The private key goes to --out, never into the hub folder; the folder and the
    history keep only the public key, and hub.toml names the path for writers on this
    machine (elsewhere set $SENTENIALX_HUB_KEY; an encrypted key also needs
    $SENTENIALX_HUB_KEY_PASSPHRASE). A hub whose key is still trust/hub_key.pem has it
    moved to --out.
    """
    from sentenialx.hub.state import HUB_PUB, PASSPHRASE_ENV, create_hub_key

    hub = open_hub(hub_path)
    secret = _passphrase(passphrase_env)
    kid = create_hub_key(hub.root, out, passphrase=secret)
    pem = (hub.root / HUB_PUB).read_text()
    # The trust event below is the first write the new key signs: it must be able to
    # decrypt the key whatever variable the operator keeps the passphrase in.
    saved = os.environ.get(PASSPHRASE_ENV)
    if secret is not None:
        os.environ[PASSPHRASE_ENV] = secret.decode()
    try:
        hub.save_trust(hub.trust_store(), action="hub-key",
                       detail={"key_id": kid, "public_key": pem})
    finally:
        if saved is None:
            os.environ.pop(PASSPHRASE_ENV, None)
        else:
            os.environ[PASSPHRASE_ENV] = saved
    if as_json:
        print_json({"key_id": kid, "private_key": str(out), "public_key": str(hub.root / HUB_PUB)})
    else:
        click.echo(f"hub key {kid}; private key {out}; readers pin {hub.root / HUB_PUB}"
                   " (copy it now: `--hub-pubkey PUB` trusts that copy, not the folder)")


@keys.command("list")
@hub_option
@json_option
def list_(hub_path: str | None, as_json: bool) -> None:
    """List trusted keys and the policy's modes and gates."""
    ts = open_hub(hub_path).trust_store()
    ks = ts.keys()
    if as_json:
        print_json({"keys": [{"key_id": k.key_id, "name": k.name, "models": list(k.models),
                              "revoked": k.revoked, "source": k.source} for k in ks],
                    "aliases": ts.policy.get("aliases", {}), "models": ts.policy.get("models", {}),
                    "default": ts.policy.get("default"), "gates": ts.policy.get("gates", {})})
        return
    for k in ks:
        click.echo(f"{k.key_id}  {k.name:<20} models={','.join(k.models)}"
                   f"{'  REVOKED' if k.revoked else ''}  ({k.source})")
    click.echo(f"modes: aliases={ts.policy.get('aliases')} models={ts.policy.get('models')}"
               f" default={ts.policy.get('default')}")
    click.echo(f"gates: {ts.policy.get('gates')}")


@keys.command()
@click.option("--alias", help="Mode for versions this alias points at.")
@click.option("--model", help="Mode for every version of models matching this pattern.")
@click.option("--default", "default", is_flag=True, help="Mode for everything else.")
@click.option("--mode", type=click.Choice(["enforce", "warn", "off"]), required=True)
@hub_option
def mode(alias: str | None, model: str | None, default: bool, mode: str,
         hub_path: str | None) -> None:
    """Set which versions need a signature, and how strictly."""
    hub = open_hub(hub_path)
    ts = hub.trust_store()
    ts.set_mode(alias=alias, model=model, default=default, mode=mode)
    hub.save_trust(ts, action="mode", detail={"alias": alias, "model": model,
                                              "default": default, "mode": mode})
    click.echo(f"mode {mode} for {alias and 'alias ' + alias or model and 'model ' + model or 'default'}")


@keys.command()
@click.argument("alias")
@click.option("--min", "mins", multiple=True, metavar="METRIC=VALUE", help="metric >= VALUE.")
@click.option("--max", "maxs", multiple=True, metavar="METRIC=VALUE", help="metric <= VALUE.")
@click.option("--not-above-current", multiple=True, metavar="METRIC",
              help="metric must not exceed the version ALIAS points at now.")
@click.option("--signature/--no-signature", default=True, help="Require a trusted signature.")
@click.option("--provenance/--no-provenance", default=True,
              help="Require a recorded and signed training-data digest.")
@hub_option
def gate(alias: str, mins: tuple[str, ...], maxs: tuple[str, ...],
         not_above_current: tuple[str, ...], signature: bool, provenance: bool,
         hub_path: str | None) -> None:
    """Set the promotion gates for ALIAS (replaces the old ones)."""
    def pairs(items: tuple[str, ...]) -> dict[str, float]:
        out = {}
        for it in items:
            k, sep, v = it.partition("=")
            try:
                out[k] = float(v)
            except ValueError:
                raise InvalidInput(f"gate {it!r}: use METRIC=NUMBER") from None
            if not sep or not k:
                raise InvalidInput(f"gate {it!r}: use METRIC=NUMBER")
        return out

    hub = open_hub(hub_path)
    ts = hub.trust_store()
    g = {"min": pairs(mins), "max": pairs(maxs), "not_above_current": list(not_above_current),
         "signature": signature, "provenance": provenance}
    ts.policy.setdefault("gates", {})[alias] = g
    hub.save_trust(ts, action="gates", detail={"alias": alias, "gates": g})
    click.echo(f"gates for {alias}: {g}")


@click.command()
@click.argument("ref")
@click.option("--key", "key_path", type=click.Path(path_type=Path, exists=True),
              help="Private key PEM.")
@click.option("--adopt", "adopt", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Instead of signing, record this `model_signing sign key` bundle as REF's"
                   " signature (it must verify with a trusted key).")
@click.option("--passphrase-env", metavar="VAR", help="The key's passphrase is in $VAR.")
@hub_option
@json_option
def sign(ref: str, key_path: Path | None, adopt: Path | None, passphrase_env: str | None,
         hub_path: str | None, as_json: bool) -> None:
    """Sign REF: an OpenSSF model-signing .sig beside it, plus signed provenance."""
    if (key_path is None) == (adopt is None):
        raise InvalidInput("give exactly one of --key KEY (sign) or --adopt SIG (record a"
                           " signature made with the model_signing tool)")
    hub = open_hub(hub_path)
    if adopt is not None:
        out = hub.adopt_signature(ref, adopt.read_bytes())
    else:
        assert key_path is not None
        out = hub.sign(ref, key_path, passphrase=_passphrase(passphrase_env))
    if as_json:
        print_json(out)
    else:
        click.echo(f"signed {out['ref']} with {out['key_id'][:16]}…  {out['sig']}"
                   + (f"  (TUF: {out['tuf']})" if out.get("tuf") else ""))


@click.command()
@click.argument("ref")
@click.option("--to", "to", default="production", show_default=True, help="Alias to move.")
@click.option("--force", is_flag=True, help="Move even if gates fail (recorded as forced).")
@click.option("--expect", metavar="VERSION", help="Only if the alias points at VERSION now.")
@click.option("--key", "key_path", type=click.Path(path_type=Path, exists=True, dir_okay=False),
              help="Release key PEM: also publish the move to TUF clients (REF must be a"
                   " release this key signed).")
@click.option("--passphrase-env", metavar="VAR", help="The key's passphrase is in $VAR.")
@hub_option
@json_option
def promote(ref: str, to: str, force: bool, expect: str | None, key_path: Path | None,
            passphrase_env: str | None, hub_path: str | None, as_json: bool) -> None:
    """Move alias --to to REF if the hub's promotion gates pass (--key: publish it over TUF)."""
    hub = open_hub(hub_path)
    results = hub.promote(ref, to=to, force=force, expect=expect, key=key_path,
                          passphrase=_passphrase(passphrase_env))
    if as_json:
        print_json({"ref": ref, "to": to, "forced": force, "gates": [r.to_dict() for r in results]})
        return
    for r in results:
        click.echo(f"{'PASS' if r.ok else 'FAIL'}  {r.gate:<28} {r.detail}")
    forced = force and any(not r.ok for r in results)
    click.echo(f"{to} -> {hub.resolve(ref).ref}" + ("  (FORCED)" if forced else ""),
               file=sys.stdout)
