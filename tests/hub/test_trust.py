"""Signed versions in a real hub, interoperating with the real ``model_signing`` CLI, and the
trust policy that ``open_bytes`` / ``read_files`` / ``load`` enforce.

The bundle format itself is covered by ``test_signing.py``; here the signatures are made
and checked through the Hub (``hub.sign``, ``hub.verify_signature``, ``hub.open_bytes``) on
the files the hub stored, and the policy is changed through ``sentenialx keys``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.errors import IntegrityError, NotFound, SignatureError
from sentenialx.hub.hub import Hub
from sentenialx.hub.signing import generate_keypair
from sentenialx.hub.values import VersionInfo

Cli = Callable[..., Any]


# -- helpers ---------------------------------------------------------------------------------
class Keys:
    """A P-256 key pair on disk and its id."""

    def __init__(self, folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.priv = folder / f"{name}.pem"
        self.pub = folder / f"{name}.pub"
        self.kid = generate_keypair(self.priv, self.pub)


def _tool() -> str:
    beside = Path(sys.executable).with_name("model_signing")
    found = str(beside) if beside.exists() else shutil.which("model_signing")
    assert found, "the model_signing CLI is missing; install the dev extra (pip install -e '.[dev]')"
    return found


def tool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_tool(), *map(str, args)], capture_output=True, text=True, timeout=300,
                          check=False)


def tool_sign(model: Path, keys: Keys, signature: Path) -> None:
    """``model_signing sign key``, writing the bundle where the hub keeps the version's .sig."""
    signature.unlink(missing_ok=True)  # the hub's sidecars are read-only
    proc = tool("sign", "key", model, "--private_key", keys.priv, "--signature", signature)
    assert proc.returncode == 0, proc.stderr


def tool_verify(model: Path, signature: Path, keys: Keys) -> subprocess.CompletedProcess[str]:
    return tool("verify", "key", model, "--signature", signature, "--public_key", keys.pub)


def sig_path(hub: Hub, info: VersionInfo) -> Path:
    """``<model>/<stem>.sig`` in the hub."""
    return hub.root / info.model / f"{info.stem}.sig"


def flip_byte(p: Path, offset: int = 0) -> None:
    """Flip one byte of a stored (read-only) file in place."""
    os.chmod(p, 0o644)
    with open(p, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0xFF]))
    os.chmod(p, 0o444)


def trust(cli: Cli, keys: Keys, *models: str) -> None:
    args = ["keys", "trust", keys.pub, "--name", keys.name]
    for m in models:
        args += ["--model", m]
    r = cli(*args, models=False)
    assert r.exit_code == 0, r.stderr
    assert keys.kid in r.stdout


def ok(r: Any) -> Any:
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    return r


@pytest.fixture(autouse=True)
def no_user_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the machine's ~/.config/sentenialx/trust keys out of these hubs."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def signer(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys", "alice")


@pytest.fixture
def stranger(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys", "mallory")


@pytest.fixture
def file_version(hub: Hub, sample_file: Callable[..., Path]) -> VersionInfo:
    """``distill@1.0.0``: one weights file."""
    return hub.register("distill", sample_file(20_000, seed=1, name="threat_student.onnx"))


@pytest.fixture
def dir_version(hub: Hub, tmp_path: Path) -> VersionInfo:
    """``lora@1.0.0``: a folder whose names sort differently by path component than as strings."""
    src = tmp_path / "inputs" / "adapter"
    for rel, data in {
        "adapter_model.safetensors": os.urandom(8000),
        "adapter_config.json": b'{"r": 16}',
        "tok/vocab.txt": b"a\nb\nc\n" * 50,
        "tok-extra/merges.txt": b"a b\n",
        "tok.json": b"{}",
    }.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    return hub.register("lora", src)


@pytest.fixture
def versions(file_version: VersionInfo, dir_version: VersionInfo) -> dict[str, VersionInfo]:
    return {"file": file_version, "dir": dir_version}


# -- our signatures and the model_signing CLI, through the hub -------------------------------
@pytest.mark.parametrize("kind", ["file", "dir"])
def test_hub_signature_verifies_with_the_tool(kind: str, hub: Hub, versions: dict[str, VersionInfo],
                                              signer: Keys, cli: Cli) -> None:
    info = versions[kind]
    out = hub.sign(info.ref, signer.priv)
    assert out["key_id"] == signer.kid
    assert Path(out["sig"]) == sig_path(hub, info) and sig_path(hub, info).is_file()
    stored = hub.path(info.ref)
    assert stored.is_dir() == (kind == "dir")
    proc = tool_verify(stored, sig_path(hub, info), signer)
    assert proc.returncode == 0, proc.stderr
    # ...and in the hub, once the key is trusted.
    with pytest.raises(SignatureError, match="no key is trusted"):
        hub.verify_signature(hub.resolve(info.ref))
    trust(cli, signer)
    assert hub.verify_signature(hub.resolve(info.ref)) == signer.kid


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_tool_signature_verifies_in_the_hub(kind: str, hub: Hub, versions: dict[str, VersionInfo],
                                            signer: Keys, cli: Cli) -> None:
    info = versions[kind]
    tool_sign(hub.path(info.ref), signer, sig_path(hub, info))
    with pytest.raises(SignatureError) as exc:
        hub.verify_signature(hub.resolve(info.ref))
    assert exc.value.found_keys == (signer.kid,) and exc.value.trusted_keys == ()
    trust(cli, signer)
    # Dropped beside the version, no `sign` event records it: not trusted, and fsck says so.
    with pytest.raises(SignatureError, match="no `sign` event"):
        hub.verify_signature(hub.resolve(info.ref))
    assert [p.kind for p in hub.fsck().problems] == ["signature"]
    # Adopted through the hub, it is recorded and trusted.
    assert hub.adopt_signature(info.ref, sig_path(hub, info).read_bytes())["key_id"] == signer.kid
    assert hub.verify_signature(hub.resolve(info.ref)) == signer.kid
    # Enforced reads accept it, and fsck does not call the tool's .sig an orphan.
    got = hub.read_files(info.ref, trust="enforce", roles=("weights", "config"))
    assert set(got) == {f.path for f in info.files}
    assert hub.fsck().ok, hub.fsck().problems


def _tamper(hub: Hub, info: VersionInfo, mutation: str) -> Path:
    """Change the stored bytes; returns their path (``hub.path`` refuses it from now on)."""
    stored = hub.path(info.ref)
    if mutation == "flip":
        target = stored if stored.is_file() else stored / "tok" / "vocab.txt"
        flip_byte(target, 7)
    elif mutation == "add":
        (stored / "tok" / "injected.py").write_text("import os; os.system('id')\n")
    elif mutation == "remove":
        (stored / "tok" / "vocab.txt").unlink()
    else:  # pragma: no cover
        raise AssertionError(mutation)
    return stored


TAMPERING = [("file", "flip"), ("dir", "flip"), ("dir", "add"), ("dir", "remove")]


@pytest.mark.parametrize(("kind", "mutation"), TAMPERING)
def test_tampering_after_a_hub_signature_fails_in_both(kind: str, mutation: str, hub: Hub,
                                                       versions: dict[str, VersionInfo],
                                                       signer: Keys, cli: Cli) -> None:
    """Signed by the hub, then the stored bytes change: the tool and the hub both refuse."""
    info = versions[kind]
    trust(cli, signer)
    hub.sign(info.ref, signer.priv)
    # Signed by a trusted key, but no metrics or provenance: production only by --force.
    ok(cli("alias", "set", info.ref, "production", "--force"))
    assert hub.read_files(info.ref)  # production, enforced, clean: fine
    stored = _tamper(hub, info, mutation)

    proc = tool_verify(stored, sig_path(hub, info), signer)
    assert proc.returncode != 0
    assert {"flip": "Hash mismatch", "add": "Extra files", "remove": "Missing files"}[mutation] \
        in proc.stderr + proc.stdout

    ref = f"{info.model}@production"
    if mutation == "add":
        # Loaders read only what the manifest (= the signed statement) lists; the stray
        # file is reported and never handed out.
        assert "tok/injected.py" not in "".join(hub.read_files(ref))
        rep = hub.verify(ref)
        assert [p.kind for p in rep.problems] == ["extra"]
        assert "injected.py" in rep.problems[0].message
    else:
        with pytest.raises(IntegrityError if mutation == "flip" else NotFound):
            hub.read_files(ref)
        assert not hub.verify(ref, deep=True).ok


@pytest.mark.parametrize(("kind", "mutation"), TAMPERING)
def test_tool_signature_of_tampered_bytes_fails_in_the_hub(kind: str, mutation: str, hub: Hub,
                                                           versions: dict[str, VersionInfo],
                                                           signer: Keys, cli: Cli) -> None:
    """Someone changes the stored bytes and signs them with the tool, even with a trusted key:
    the statement no longer matches the registered manifest, so the hub refuses it."""
    info = versions[kind]
    trust(cli, signer)
    stored = _tamper(hub, info, mutation)
    with pytest.raises(IntegrityError if mutation == "flip" else (IntegrityError, NotFound)):
        hub.path(info.ref)  # path() verifies like load() and never hands the changed bytes out
    tool_sign(stored, signer, sig_path(hub, info))
    with pytest.raises(SignatureError) as exc:
        hub.verify_signature(hub.resolve(info.ref))
    assert exc.value.version == info.ref
    assert exc.value.found_keys == (signer.kid,)
    # The signature gate refuses it, so production gets it only by --force.
    r = cli("alias", "set", info.ref, "production")
    assert r.exit_code == 12 and "signature" in r.stderr
    ok(cli("alias", "set", info.ref, "production", "--force"))
    with pytest.raises(SignatureError):
        hub.read_files(f"{info.model}@production")


@pytest.mark.parametrize("kind", ["file", "dir"])
def test_wrong_key_fails_in_both(kind: str, hub: Hub, versions: dict[str, VersionInfo],
                                 signer: Keys, stranger: Keys, cli: Cli) -> None:
    info = versions[kind]
    trust(cli, signer)
    # Ours, checked by the tool against the wrong public key.
    hub.sign(info.ref, signer.priv)
    proc = tool_verify(hub.path(info.ref), sig_path(hub, info), stranger)
    assert proc.returncode != 0
    # The tool's, made with a key the hub does not trust.
    tool_sign(hub.path(info.ref), stranger, sig_path(hub, info))
    with pytest.raises(SignatureError) as exc:
        hub.verify_signature(hub.resolve(info.ref))
    e = exc.value
    assert (e.version, e.found_keys, e.trusted_keys) == (info.ref, (stranger.kid,), (signer.kid,))
    assert stranger.kid[:12] in str(e) and signer.kid[:12] in str(e)


# -- the policy: enforce / warn / off ----------------------------------------------------------
@pytest.fixture
def production(hub: Hub, file_version: VersionInfo, cli: Cli) -> VersionInfo:
    """``distill@1.0.0`` is ``production`` (forced past its gates); nothing is signed or
    trusted yet."""
    ok(cli("alias", "set", file_version.ref, "production", "--force"))
    return file_version


def _stored_file(hub: Hub, info: VersionInfo) -> Path:
    """The stored weights file, straight from the hub folder: ``hub.path`` would apply the
    very policy these tests exercise."""
    return hub.root / info.model / info.files[0].path


def _stored_bytes(hub: Hub, info: VersionInfo) -> bytes:
    return _stored_file(hub, info).read_bytes()


def test_production_defaults_to_enforce(hub: Hub, production: VersionInfo, signer: Keys,
                                        cli: Cli) -> None:
    assert hub.trust_store().mode_for("distill", ["production"]) == ("enforce", "alias production")
    assert hub.trust_store().mode_for("distill", []) == ("off", "default")
    trust(cli, signer)
    for read in (lambda: hub.open_bytes("distill@production"),
                 lambda: hub.read_files("distill@production"),
                 lambda: hub.load("distill@production"),
                 lambda: hub.path("distill@production"),  # path() applies the policy too
                 lambda: hub.path("distill@1.0.0"),
                 lambda: hub.open_bytes("distill@1.0.0")):  # the alias, not the ref, decides
        with pytest.raises(SignatureError) as exc:
            read()
        e = exc.value
        assert e.version == "distill@1.0.0" and "distill@1.0.0" in str(e)
        assert e.found_keys == () and e.trusted_keys == (signer.kid,)
        assert "not signed" in str(e)
    # A version no alias of the policy names is not checked (default "off").
    other = hub.register("distill", _stored_file(hub, production), version="1.1.0",
                         name="other")
    assert hub.open_bytes(other.ref) == _stored_bytes(hub, other)
    assert hub.path(other.ref) == _stored_file(hub, other)
    # Once signed by a trusted key, production opens.
    hub.sign("distill@1.0.0", signer.priv)
    assert hub.open_bytes("distill@production") == _stored_bytes(hub, production)


def test_wrongly_signed_production_names_version_and_keys(hub: Hub, production: VersionInfo,
                                                          signer: Keys, stranger: Keys,
                                                          cli: Cli) -> None:
    trust(cli, signer)
    hub.sign(production.ref, stranger.priv)
    with pytest.raises(SignatureError) as exc:
        hub.open_bytes("distill@production")
    e = exc.value
    assert (e.version, e.found_keys, e.trusted_keys) == ("distill@1.0.0", (stranger.kid,),
                                                        (signer.kid,))
    for fact in ("distill@1.0.0", stranger.kid[:12], signer.kid[:12]):
        assert fact in str(e)


def test_warn_mode_logs_and_returns_the_bytes(hub: Hub, production: VersionInfo, signer: Keys,
                                              stranger: Keys, cli: Cli,
                                              caplog: pytest.LogCaptureFixture) -> None:
    trust(cli, signer)
    ok(cli("keys", "mode", "--alias", "production", "--mode", "warn", models=False))
    assert hub.trust_store().policy["aliases"]["production"] == "warn"
    with caplog.at_level(logging.WARNING, logger="sentenialx.trust"):
        data = hub.open_bytes("distill@production")
    assert data == _stored_bytes(hub, production)
    recs = [r for r in caplog.records if r.name == "sentenialx.trust"]
    assert len(recs) == 1 and recs[0].levelno == logging.WARNING
    assert "distill@1.0.0" in recs[0].getMessage() and "not signed" in recs[0].getMessage()
    assert "alias production" in recs[0].getMessage()
    # path() applies the same policy: in warn mode it hands the path out, with a warning.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sentenialx.trust"):
        assert hub.path("distill@production") == _stored_file(hub, production)
    assert [r.levelno for r in caplog.records if r.name == "sentenialx.trust"] == [logging.WARNING]
    # Wrongly signed: still a warning, naming both keys.
    hub.sign(production.ref, stranger.priv)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="sentenialx.trust"):
        assert hub.read_files("distill@production")
    msg = " ".join(r.getMessage() for r in caplog.records if r.name == "sentenialx.trust")
    assert stranger.kid[:12] in msg and signer.kid[:12] in msg
    # A caller can still insist.
    with pytest.raises(SignatureError):
        hub.open_bytes("distill@production", trust="enforce")


def test_off_mode_skips_the_check(hub: Hub, production: VersionInfo, cli: Cli,
                                  caplog: pytest.LogCaptureFixture) -> None:
    ok(cli("keys", "mode", "--alias", "production", "--mode", "off", models=False))
    with caplog.at_level(logging.DEBUG, logger="sentenialx.trust"):
        assert hub.open_bytes("distill@production") == _stored_bytes(hub, production)
    assert not [r for r in caplog.records if r.name == "sentenialx.trust"]
    # Back to enforce through the CLI.
    ok(cli("keys", "mode", "--alias", "production", "--mode", "enforce", models=False))
    with pytest.raises(SignatureError):
        hub.open_bytes("distill@production")


def test_mode_for_models_and_default(hub: Hub, versions: dict[str, VersionInfo], cli: Cli) -> None:
    lora = versions["dir"]
    assert hub.read_files(lora.ref)  # no alias, default off
    ok(cli("keys", "mode", "--model", "lora*", "--mode", "enforce", models=False))
    with pytest.raises(SignatureError, match="lora@1.0.0"):
        hub.read_files(lora.ref)
    assert hub.open_bytes(versions["file"].ref)  # distill is not lora*
    ok(cli("keys", "mode", "--default", "--mode", "enforce", models=False))
    with pytest.raises(SignatureError, match="distill@1.0.0"):
        hub.open_bytes(versions["file"].ref)
    r = cli("keys", "mode", "--mode", "warn", models=False)
    assert r.exit_code == 5 and "--alias, --model or --default" in r.stderr
    listed = ok(cli("keys", "list", "--json", models=False)).json()
    assert listed["models"] == {"lora*": "enforce"} and listed["default"] == "enforce"


def test_revoking_a_key_untrusts_what_only_it_signed(hub: Hub, sample_file: Callable[..., Path],
                                                     signer: Keys, stranger: Keys,
                                                     cli: Cli) -> None:
    a = hub.register("distill", sample_file(3000, seed=1))
    b = hub.register("lora", sample_file(3000, seed=2))
    for info in (a, b):  # no metrics or provenance: production only by force
        hub.set_alias(info.ref, "production", force=True)
    trust(cli, signer)
    trust(cli, stranger)
    hub.sign(a.ref, signer.priv)
    hub.sign(b.ref, stranger.priv)
    assert hub.open_bytes("distill@production") and hub.open_bytes("lora@production")

    r = ok(cli("keys", "revoke", "alice", models=False))  # by name
    assert signer.kid in r.stdout
    with pytest.raises(SignatureError) as exc:
        hub.open_bytes("distill@production")
    assert exc.value.found_keys == (signer.kid,) and signer.kid not in exc.value.trusted_keys
    assert hub.open_bytes("lora@production")  # signed by a key still trusted
    listed = ok(cli("keys", "list", "--json", models=False)).json()
    assert {k["key_id"]: k["revoked"] for k in listed["keys"]} == {signer.kid: True,
                                                                  stranger.kid: False}
    # Re-signing with a trusted key is the way back; the revoked key cannot sign its way in.
    hub.sign(a.ref, signer.priv)
    with pytest.raises(SignatureError):
        hub.open_bytes("distill@production")
    hub.sign(a.ref, stranger.priv)
    assert hub.open_bytes("distill@production")
    r = cli("keys", "revoke", "nobody", models=False)
    assert r.exit_code == 3 and "nobody" in r.stderr


def test_revoking_the_hub_key_beats_the_users_copy(hub: Hub, production: VersionInfo,
                                                   signer: Keys, cli: Cli, tmp_path: Path) -> None:
    """A key in the user's trust folder is trusted everywhere, unless the hub revoked it."""
    udir = tmp_path / "xdg" / "sentenialx" / "trust" / "keys"
    udir.mkdir(parents=True)
    shutil.copy(signer.pub, udir / "alice.pub")
    hub.sign(production.ref, signer.priv)
    assert hub.open_bytes("distill@production")
    trust(cli, signer)
    ok(cli("keys", "revoke", signer.kid[:16], models=False))  # by id prefix
    with pytest.raises(SignatureError):
        hub.open_bytes("distill@production")


def test_key_trusted_for_a_model_pattern_only(hub: Hub, sample_file: Callable[..., Path],
                                              signer: Keys, cli: Cli) -> None:
    trust(cli, signer, "lora*")
    infos = [hub.register(m, sample_file(2000, seed=i))
             for i, m in enumerate(["lora", "lora-big", "distill"])]
    for info in infos:
        hub.set_alias(info.ref, "production", force=True)
        hub.sign(info.ref, signer.priv)
    assert hub.open_bytes("lora@production") and hub.open_bytes("lora-big@production")
    with pytest.raises(SignatureError) as exc:
        hub.open_bytes("distill@production")
    e = exc.value
    assert e.version == "distill@1.0.0" and e.found_keys == (signer.kid,) and e.trusted_keys == ()
    assert "no key is trusted for model 'distill'" in str(e)
    assert hub.trust_store().policy["keys"][signer.kid]["models"] == ["lora*"]


# -- the policy file is part of the history -------------------------------------------------
@pytest.mark.parametrize("edit", ["mode", "reformat", "unrevoke", "delete"])
def test_policy_edited_outside_sentenialx_is_detected(edit: str, hub: Hub, production: VersionInfo,
                                                     signer: Keys, cli: Cli) -> None:
    trust(cli, signer)
    ok(cli("keys", "revoke", "alice", models=False))
    assert hub.fsck().ok
    policy = hub.root / "trust" / "policy.json"
    doc = json.loads(policy.read_text())
    if edit == "mode":
        doc["aliases"]["production"] = "off"
        policy.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    elif edit == "reformat":
        policy.write_text(json.dumps(doc))
    elif edit == "unrevoke":
        doc["keys"][signer.kid]["revoked"] = False
        policy.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
    else:
        # A missing policy is a missing view: it comes back from the history (the index
        # is the truth a whole team shares), exactly as recorded; revocations included.
        before = json.loads(policy.read_text())
        policy.unlink()
        with pytest.raises(SignatureError) as err:  # the restored policy is enforced again
            hub.open_bytes("distill@production")
        assert "outside sentenialx" not in str(err.value)
        assert json.loads(policy.read_text()) == before and hub.fsck().ok
        return

    with pytest.raises(SignatureError, match="outside sentenialx"):
        hub.open_bytes("distill@production")
    with pytest.raises(SignatureError, match="policy.json"):
        hub.open_bytes("distill@production", trust="off")  # a policy nobody can trust is no policy
    rep = hub.fsck()
    assert [p.kind for p in rep.problems] == ["trust"]
    assert rep.problems[0].path == "trust/policy.json"
    r = cli("fsck")
    assert r.exit_code == 1 and "TRUST" in r.stdout
    r = cli("keys", "mode", "--alias", "production", "--mode", "warn", models=False)
    assert r.exit_code == 7 and "outside sentenialx" in r.stderr


def test_swapped_trusted_key_file_is_detected(hub: Hub, production: VersionInfo, signer: Keys,
                                              stranger: Keys, cli: Cli) -> None:
    """trust/keys/<id>.pub replaced by another key must not make that key trusted."""
    trust(cli, signer)
    hub.sign(production.ref, stranger.priv)
    kfile = hub.root / "trust" / "keys" / f"{signer.kid}.pub"
    kfile.write_bytes(stranger.pub.read_bytes())
    with pytest.raises(SignatureError, match="replaced outside sentenialx"):
        hub.open_bytes("distill@production")
    assert [p.kind for p in hub.fsck().problems] == ["trust"]


def test_trust_changes_are_recorded(hub: Hub, signer: Keys, cli: Cli) -> None:
    trust(cli, signer, "lora*")
    ok(cli("keys", "mode", "--model", "lora*", "--mode", "warn", models=False))
    ok(cli("keys", "revoke", "alice", models=False))
    evs = [e for e in hub.events() if e.kind == "trust"]
    assert [e.payload["action"] for e in evs] == ["trust-key", "mode", "revoke-key"]
    assert evs[0].payload["key_id"] == signer.kid and evs[0].payload["models"] == ["lora*"]
    assert evs[-1].payload["policy_sha256"] == hub.trust_store().policy_sha256()
    assert all(e.actor == "tester@test" for e in evs)


def test_a_team_sharing_one_index_shares_the_policy(tmp_path: Path, signer: Keys) -> None:
    """Two machines (folders) on one index: a trust change on one applies on the other."""
    index = f"sqlite:///{tmp_path / 'shared.db'}"
    a = Hub(tmp_path / "a", index_url=index)
    b = Hub(tmp_path / "b", index_url=index)
    ts = a.trust_store()
    kid = ts.trust_key(signer.pub, name="alice")
    a.save_trust(ts, action="trust-key", detail={"key_id": kid})
    assert kid in {k.key_id for k in b.trust_store().keys()}
    assert (tmp_path / "b" / "trust" / "keys" / f"{kid}.pub").read_bytes() == signer.pub.read_bytes()
    ts = a.trust_store()
    ts.revoke_key(kid)
    a.save_trust(ts, action="revoke-key", detail={"key_id": kid})
    # b's copy is now stale (equal to an older recorded policy): refreshed, not refused.
    assert [k.revoked for k in b.trust_store().keys() if k.key_id == kid] == [True]
    # A local edit on b that matches no recorded policy is still refused.
    pol = tmp_path / "b" / "trust" / "policy.json"
    doc = json.loads(pol.read_text())
    doc["default"] = "off"
    doc["aliases"] = {}
    pol.write_text(json.dumps(doc))
    with pytest.raises(SignatureError, match="outside sentenialx"):
        b.trust_store()
