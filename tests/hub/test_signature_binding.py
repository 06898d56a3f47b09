"""Signatures bound to their model and version; the hub key outside the hub folder.

An OpenSSF bundle covers file names and digests only, so the same bytes under another
version or model would verify. The hub binds a signature by its subject name
(``model@version:file``) and by its history: a ``sign`` event of that version must record
that bundle and key. The hub's private key lives outside the folder, so someone who can
write only the folder cannot re-sign a rewritten history for a reader who pins the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.errors import SignatureError, StateError
from sentenialx.hub.events import GENESIS, Event
from sentenialx.hub.hub import Hub
from sentenialx.hub.release import bound_subject_name
from sentenialx.hub.signing import (
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    sign_files,
    verify_bundle,
)
from sentenialx.hub.state import HUB_PUB, LEGACY_HUB_KEY, sign_doc, verify_doc
from sentenialx.hub.transfer import copy_hub
from sentenialx.hub.values import VersionInfo

Cli = Callable[..., Any]


@pytest.fixture(autouse=True)
def no_user_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("SENTENIALX_HUB_KEY", raising=False)
    monkeypatch.delenv("SENTENIALX_HUB_KEY_PASSPHRASE", raising=False)


def ok(r: Any) -> Any:
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    return r


@pytest.fixture
def release_key(tmp_path: Path) -> tuple[Path, Path, str]:
    priv, pub = tmp_path / "keys" / "release.pem", tmp_path / "keys" / "release.pub"
    return priv, pub, generate_keypair(priv, pub)


def trust_enforced(hub: Hub, pub: Path, *models: str) -> None:
    ts = hub.trust_store()
    kid = ts.trust_key(pub, name="release")
    hub.save_trust(ts, action="trust-key", detail={"key_id": kid})
    for m in models:
        ts = hub.trust_store()
        ts.set_mode(model=m, mode="enforce")
        hub.save_trust(ts, action="mode", detail={"model": m, "mode": "enforce"})


def sig_file(hub: Hub, info: VersionInfo) -> Path:
    return hub.root / hub.sig_key(info)


def plant(hub: Hub, info: VersionInfo, bundle: bytes) -> None:
    """What someone who can write the folder does: put a .sig beside a version."""
    p = sig_file(hub, info)
    if p.exists():
        os.chmod(p, 0o644)
    p.write_bytes(bundle)


@pytest.fixture
def same_bytes(hub: Hub, sample_file: Callable[..., Path],
               release_key: tuple[Path, Path, str]) -> dict[str, VersionInfo]:
    """distill@1.0.0 (signed), distill@1.0.1 and other@1.0.0, all three the same bytes."""
    priv, pub, _ = release_key
    src = sample_file(3000, seed=4)
    a = hub.register("distill", src)
    b = hub.register("distill", src)
    c = hub.register("other", src)
    trust_enforced(hub, pub, "distill", "other")
    hub.sign(a.ref, priv)
    return {"signed": hub.resolve(a.ref), "next": hub.resolve(b.ref),
            "other": hub.resolve(c.ref)}


# -- binding -----------------------------------------------------------------------------------
def test_hub_signature_names_model_and_version_and_still_verifies_with_the_tool(
        same_bytes: dict[str, VersionInfo], hub: Hub, release_key: tuple[Path, Path, str]) -> None:
    info = same_bytes["signed"]
    bundle = sig_file(hub, info).read_bytes()
    name, files = hub.signature_subject(info)
    assert name == bound_subject_name("distill", "1.0.0", hub.weights_entry(info).path)
    assert name.startswith("distill@1.0.0:")
    v = verify_bundle(bundle, files=files, public_keys={"k": load_public_key(release_key[1])})
    assert v.model_name == name
    tool = Path(sys.executable).with_name("model_signing")
    exe = str(tool) if tool.exists() else shutil.which("model_signing")
    assert exe, "the model_signing CLI is missing; install the dev extra"
    proc = subprocess.run([exe, "verify", "key", str(hub.path(info.ref)), "--signature",
                           str(sig_file(hub, info)), "--public_key", str(release_key[1])],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.parametrize("target", ["next", "other"])
def test_signature_replayed_onto_the_same_bytes_elsewhere_is_refused(
        target: str, same_bytes: dict[str, VersionInfo], hub: Hub,
        snapshot: Callable[[Hub], dict[str, Any]]) -> None:
    signed, victim = same_bytes["signed"], same_bytes[target]
    plant(hub, victim, sig_file(hub, signed).read_bytes())
    before = snapshot(hub)
    with pytest.raises(SignatureError, match="made for 'distill@1.0.0:") as exc:
        hub.verify_signature(victim)
    assert exc.value.version == victim.ref
    with pytest.raises(SignatureError):
        hub.open_bytes(victim.ref)
    with pytest.raises(SignatureError):
        hub.load(victim.ref)
    problems = [p for p in hub.fsck().problems if p.kind == "signature"]
    assert [(p.model, p.version) for p in problems] == [(victim.model, victim.version)]
    assert "no `sign` event" in problems[0].message
    assert snapshot(hub) == before  # refusals and fsck changed nothing
    # The original stays trusted.
    assert hub.open_bytes(signed.ref) == hub.path(signed.ref).read_bytes()


def test_a_legacy_named_signature_needs_its_sign_event(same_bytes: dict[str, VersionInfo],
                                                       hub: Hub,
                                                       release_key: tuple[Path, Path, str]) -> None:
    """A bundle made by the trusted key for these bytes under the tool's own subject name
    (the file name) passes the name check; no sign event of 1.0.1 records it: refused."""
    victim = same_bytes["next"]
    _, files = hub.signature_subject(victim)
    bundle = sign_files(files, model_name=hub.weights_entry(victim).path,
                        private_key=load_private_key(release_key[0]))
    plant(hub, victim, bundle)
    with pytest.raises(SignatureError, match="no `sign` event of this version"):
        hub.verify_signature(victim)
    [p] = [p for p in hub.fsck().problems if p.kind == "signature"]
    assert p.version == "1.0.1" and p.actual == hashlib.sha256(bundle).hexdigest()


def test_a_sig_other_than_the_recorded_one_is_refused(same_bytes: dict[str, VersionInfo], hub: Hub,
                                                      release_key: tuple[Path, Path, str]) -> None:
    """A second, valid bundle for 1.0.0 by the trusted key, never recorded by the hub."""
    info = same_bytes["signed"]
    recorded = sig_file(hub, info).read_bytes()
    name, files = hub.signature_subject(info)
    other = sign_files(files, model_name=name, private_key=load_private_key(release_key[0]))
    assert other != recorded  # ECDSA signatures are randomised
    plant(hub, info, other)
    with pytest.raises(SignatureError, match="not the one the history recorded"):
        hub.verify_signature(info)
    [p] = [p for p in hub.fsck().problems if p.kind == "signature"]
    assert p.expected == hashlib.sha256(recorded).hexdigest()
    assert p.actual == hashlib.sha256(other).hexdigest()
    assert "is not the signature the history recorded" in p.message


def test_a_forged_sign_event_without_the_key_is_refused(same_bytes: dict[str, VersionInfo],
                                                        hub: Hub,
                                                        release_key: tuple[Path, Path, str]) -> None:
    """Someone who writes the index records a legacy-named bundle for 1.0.1, reusing
    1.0.0's provenance signature: the provenance names another version, so it fails."""
    victim = same_bytes["next"]
    _, files = hub.signature_subject(victim)
    bundle = sign_files(files, model_name=hub.weights_entry(victim).path,
                        private_key=load_private_key(release_key[0]))
    plant(hub, victim, bundle)
    [orig] = [e for e in hub.events() if e.kind == "sign"]
    hub.index.append_event("sign", "distill", "1.0.1", actor="mallory@evil",
                           payload=dict(orig.payload,
                                        sig_sha256=hashlib.sha256(bundle).hexdigest()))
    with pytest.raises(SignatureError, match="provenance statement for this version"):
        hub.verify_signature(victim)


def test_a_local_copy_keeps_verifying_on_the_destination(same_bytes: dict[str, VersionInfo],
                                                         hub: Hub, make_hub: Callable[..., Hub],
                                                         release_key: tuple[Path, Path, str]
                                                         ) -> None:
    dst = make_hub()
    trust_enforced(dst, release_key[1], "distill")
    rep = copy_hub(hub, dst, ["distill@1.0.0", "distill@1.0.1"])
    assert rep.signatures == ["distill@1.0.0"]
    info = dst.resolve("distill@1.0.0")
    assert dst.verify_signature(info) == release_key[2]
    assert dst.open_bytes("distill@1.0.0") == hub.open_bytes("distill@1.0.0")
    assert not [p for p in dst.fsck().problems if p.kind == "signature"]
    with pytest.raises(SignatureError):
        dst.open_bytes("distill@1.0.1")  # never signed on either hub


# -- the hub key outside the folder ------------------------------------------------------------
def db(hub: Hub) -> sqlite3.Connection:
    return sqlite3.connect(hub.root / "registry.db")


def rewrite_event(hub: Hub, edit_seq: int) -> None:
    """Edit one event's actor, re-hash the chain after it, rewrite events.jsonl to match."""
    conn = db(hub)
    rows = conn.execute("SELECT seq, ts, kind, model, version, actor, payload FROM events"
                        " ORDER BY seq").fetchall()
    prev, out = GENESIS, []
    for seq, ts, kind, model, version, who, payload in rows:
        who = "mallory@evil" if seq == edit_seq else who
        body = Event(seq, ts, kind, model, version, who, json.loads(payload), prev)
        ev = Event(seq, ts, kind, model, version, who, body.payload, prev, body.compute_hash())
        conn.execute("UPDATE events SET actor=?, prev_hash=?, hash=? WHERE seq=?",
                     (who, ev.prev_hash, ev.hash, seq))
        out.append(ev)
        prev = ev.hash
    conn.commit()
    conn.close()
    (hub.root / "events.jsonl").write_text(
        "".join(json.dumps(e.to_dict(), sort_keys=True) + "\n" for e in out))


def head(hub: Hub) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((hub.root / "registry.head.json").read_text())
    return doc


@pytest.fixture
def keyed(hub: Hub, cli: Cli, sample_file: Callable[..., Path],
          tmp_path: Path) -> tuple[Hub, Path, Path]:
    """A hub with a key at tmp_path/secret/hub.pem; returns (hub, private key, reader's pin)."""
    hub.register("distill", sample_file(2000, seed=1))
    hub.register("distill", sample_file(2000, seed=2))
    out = tmp_path / "secret" / "hub.pem"
    r = ok(cli("keys", "hub-key", "--out", out, models=False))
    assert str(out) in r.stdout
    assert not list(hub.root.rglob("*.pem")) and not (hub.root / LEGACY_HUB_KEY).exists()
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    pin = tmp_path / "reader" / "hub.pub"
    pin.parent.mkdir()
    shutil.copy(hub.root / HUB_PUB, pin)  # the reader keeps its own copy
    assert key_id(load_public_key(pin)) == key_id(load_private_key(out).public_key())
    last = hub.events()[-1]
    assert last.payload["action"] == "hub-key" and "BEGIN PUBLIC KEY" in last.payload["public_key"]
    assert head(hub)["seq"] == last.seq and "sig" in head(hub)
    ok(cli("log", "--verify", "--hub-pubkey", pin))
    assert hub.fsck(pubkey=pin).ok
    return hub, out, pin


def test_a_folder_only_attacker_is_caught_by_the_pinned_key(keyed: tuple[Hub, Path, Path],
                                                            cli: Cli, tmp_path: Path) -> None:
    hub, _priv, pin = keyed
    # The attacker holds the folder, not the private key: rewrite event 1, the export,
    # drop the key path from hub.toml, swap in their own public key, re-sign the head.
    rewrite_event(hub, 1)
    (hub.root / "hub.toml").unlink()
    evil_priv, evil_pub = tmp_path / "evil" / "k.pem", tmp_path / "evil" / "k.pub"
    generate_keypair(evil_priv, evil_pub)
    os.chmod(hub.root / HUB_PUB, 0o644)
    shutil.copy(evil_pub, hub.root / HUB_PUB)
    seq, top = hub.index.head()
    doc = {k: v for k, v in head(hub).items() if k not in ("sig", "key_id")}
    (hub.root / "registry.head.json").write_text(json.dumps(
        sign_doc(load_private_key(evil_priv), dict(doc, seq=seq, head=top))))
    # Trusting the folder, the rewrite passes: that is what pinning is for.
    assert hub.verify_log().ok
    r = cli("log", "--verify", "--hub-pubkey", pin)
    assert r.exit_code == 1 and "is not the pinned hub key" in r.stdout, r.stdout
    assert not hub.verify_log(pubkey=load_public_key(pin)).ok
    rep = hub.fsck(pubkey=pin)
    assert any(p.kind == "chain" and "pinned" in p.message for p in rep.problems)
    assert cli("fsck", "--hub-pubkey", pin).exit_code == 1
    # Leaving the folder's public key alone does not help: the head fails the pin.
    shutil.copy(pin, hub.root / HUB_PUB)
    r = cli("log", "--verify", "--hub-pubkey", pin)
    assert r.exit_code == 1 and "does not verify" in r.stdout, r.stdout


def test_a_writer_holding_the_key_sees_a_swapped_public_key(keyed: tuple[Hub, Path, Path],
                                                            cli: Cli, tmp_path: Path) -> None:
    hub, _priv, _pin = keyed
    rewrite_event(hub, 1)
    evil_priv, evil_pub = tmp_path / "evil" / "k.pem", tmp_path / "evil" / "k.pub"
    generate_keypair(evil_priv, evil_pub)
    os.chmod(hub.root / HUB_PUB, 0o644)
    shutil.copy(evil_pub, hub.root / HUB_PUB)
    seq, top = hub.index.head()
    doc = {k: v for k, v in head(hub).items() if k not in ("sig", "key_id")}
    forged = sign_doc(load_private_key(evil_priv), dict(doc, seq=seq, head=top))
    (hub.root / "registry.head.json").write_text(json.dumps(forged))
    r = cli("log", "--verify")  # hub.toml still names the real key
    assert r.exit_code == 1 and "not the public half of the hub key this writer holds" \
        in r.stdout, r.stdout
    # ...and its next write does not vouch for the forged head.
    hub.set_alias("distill@1.0.0", "staging")
    assert head(hub) == forged


def test_hub_key_inside_the_hub_folder_is_refused(hub: Hub, cli: Cli,
                                                  snapshot: Callable[[Hub], dict[str, Any]]
                                                  ) -> None:
    before = snapshot(hub)
    for inside in (hub.root / "hub.pem", hub.root / "trust" / "k.pem", hub.root / ".." /
                   hub.root.name / "x.pem"):
        r = cli("keys", "hub-key", "--out", inside, models=False)
        assert r.exit_code == 5, (r.stdout, r.stderr)
        assert "inside the hub folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1
        assert not Path(os.path.normpath(inside)).exists()
    assert snapshot(hub) == before
    assert not (hub.root / HUB_PUB).exists() and not (hub.root / "hub.toml").exists()


def test_a_passphrase_protected_hub_key(hub: Hub, cli: Cli, sample_file: Callable[..., Path],
                                        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    hub.register("distill", sample_file(2000, seed=1))
    out = tmp_path / "secret" / "hub.pem"
    monkeypatch.setenv("HUBPASS", "correct horse")
    ok(cli("keys", "hub-key", "--out", out, "--passphrase-env", "HUBPASS", models=False))
    assert b"ENCRYPTED" in out.read_bytes()
    pin = load_public_key(hub.root / HUB_PUB)
    signed = head(hub)
    verify_doc(pin, signed)
    assert hub.verify_log(pubkey=pin).ok
    # A writer without the passphrase still registers; the signed head stays as it was.
    hub.register("distill", sample_file(2000, seed=2))
    assert head(hub) == signed
    assert hub.verify_log().ok  # the older signed head still fits the chain
    rep = hub.verify_log(pubkey=pin)
    assert not rep.ok and f"events {signed['seq'] + 1}..{signed['seq'] + 1} are not covered" \
        in rep.reason
    with pytest.raises(StateError, match="does not hold it"):
        hub.signed_state()
    monkeypatch.setenv("SENTENIALX_HUB_KEY_PASSPHRASE", "wrong")
    hub.set_alias("distill@1.0.0", "staging")
    assert head(hub) == signed
    # With the passphrase the next write re-signs the head over the whole chain.
    monkeypatch.setenv("SENTENIALX_HUB_KEY_PASSPHRASE", "correct horse")
    hub.set_alias("distill@1.0.1", "staging")
    assert head(hub)["seq"] == hub.index.head()[0]
    assert hub.verify_log(pubkey=pin).ok
    verify_doc(pin, hub.signed_state())


def test_an_in_folder_hub_key_is_refused_until_moved_out(hub: Hub, cli: Cli,
                                                         sample_file: Callable[..., Path],
                                                         tmp_path: Path) -> None:
    kid = generate_keypair(hub.root / LEGACY_HUB_KEY, hub.root / HUB_PUB)
    hub.register("distill", sample_file(2000, seed=1))
    assert "sig" not in head(hub)  # the in-folder key signs nothing
    with pytest.raises(StateError, match="keys hub-key --out PATH"):
        hub.signed_state()
    r = cli("log", "--verify")
    assert r.exit_code == 1 and "inside the hub folder" in r.stdout
    out = tmp_path / "secret" / "hub.pem"
    ok(cli("keys", "hub-key", "--out", out, models=False))
    assert not (hub.root / LEGACY_HUB_KEY).exists()
    assert key_id(load_private_key(out).public_key()) == kid  # same key: pins stay valid
    ok(cli("log", "--verify", "--hub-pubkey", hub.root / HUB_PUB))
    verify_doc(load_public_key(hub.root / HUB_PUB), head(hub))


def test_cli_adopts_a_tool_signature_only_when_it_verifies(hub: Hub, cli: Cli,
                                                           sample_file: Callable[..., Path],
                                                           release_key: tuple[Path, Path, str],
                                                           tmp_path: Path) -> None:
    priv, pub, kid = release_key
    a = hub.register("distill", sample_file(2000, seed=1))
    b = hub.register("distill", sample_file(2000, seed=2))
    trust_enforced(hub, pub, "distill")
    _, files = hub.signature_subject(a)
    tool_made = tmp_path / "a.sig"
    tool_made.write_bytes(sign_files(files, model_name=hub.weights_entry(a).path,
                                     private_key=load_private_key(priv)))
    r = cli("sign", b.ref, "--adopt", tool_made)  # a's bundle is not b's
    assert r.exit_code != 0 and "changed since signing" in r.stderr, r.stderr
    assert not sig_file(hub, b).exists() and not [e for e in hub.events() if e.kind == "sign"]
    assert cli("sign", a.ref, "--adopt", tool_made, "--key", priv).exit_code == 5
    ok(cli("sign", a.ref, "--adopt", tool_made))
    assert hub.verify_signature(hub.resolve(a.ref)) == kid
    assert not [p for p in hub.fsck().problems if p.kind == "signature"]
