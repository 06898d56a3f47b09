"""Attacks on the guarded core: each is tried, refused, and leaves everything stored unchanged.

Covers, from the attack list of the guarded-core issue: gates bypassed through
alias set / register alias / rollback (API and CLI), ``path()`` handing out an
unsigned production file, rollback onto a revoked version, a hostile seed
``registry.json``, ``--link`` dedup tying a copy to an outside file, and weights
named like the hub's own sidecars.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from sentenialx.hub.errors import GateFailed, InvalidInput, InvalidName, SignatureError


def _two_versions(hub, sample_file):
    v1 = hub.register("distill", sample_file(seed=1), version="1.0.0")
    v2 = hub.register("distill", sample_file(seed=2), version="1.0.1")
    return v1, v2


# -- gates on every alias path ----------------------------------------------------------

def test_set_alias_on_production_goes_through_the_gates(hub, sample_file, snapshot) -> None:
    _two_versions(hub, sample_file)
    before = snapshot(hub)
    with pytest.raises(GateFailed) as ei:
        hub.set_alias("distill@1.0.0", "production")
    assert "signature" in ei.value.failed and "metric:accuracy" in ei.value.failed
    assert snapshot(hub) == before


def test_register_with_a_gated_alias_stores_nothing(hub, sample_file, snapshot) -> None:
    hub.register("distill", sample_file(seed=1), version="1.0.0")
    before = snapshot(hub)
    with pytest.raises(GateFailed, match="gated"):
        hub.register("distill", sample_file(seed=2), alias="production")
    assert snapshot(hub) == before


def test_rollback_of_production_goes_through_the_gates(hub, sample_file, snapshot) -> None:
    _two_versions(hub, sample_file)
    hub.set_alias("distill@1.0.0", "production", force=True)
    hub.set_alias("distill@1.0.1", "production", force=True)
    before = snapshot(hub)
    with pytest.raises(GateFailed):
        hub.rollback("distill", "production")
    assert snapshot(hub) == before
    assert hub.rollback("distill", "production", force=True) == "1.0.0"
    last = hub.events()[-1]
    assert last.kind == "promote" and last.payload["force"] is True
    assert last.payload["rollback"] is True
    assert any(not g["ok"] for g in last.payload["gates"])


def test_forced_move_is_recorded_with_failed_gates(hub, sample_file) -> None:
    _two_versions(hub, sample_file)
    hub.set_alias("distill@1.0.1", "production", force=True)
    ev = hub.events()[-1]
    assert ev.kind == "promote" and ev.payload["force"] is True
    assert {g["gate"] for g in ev.payload["gates"] if not g["ok"]} >= {"signature"}


def test_any_alias_with_gates_is_gated(hub, sample_file) -> None:
    _two_versions(hub, sample_file)
    hub.set_alias("distill@1.0.0", "canary")  # not gated: moves freely
    ts = hub.trust_store()
    ts.policy.setdefault("gates", {})["canary"] = {"min": {"accuracy": 0.9}}
    hub.save_trust(ts, action="gate", detail={"alias": "canary"})
    with pytest.raises(GateFailed, match="accuracy"):
        hub.set_alias("distill@1.0.1", "canary")
    assert hub.resolve("distill@canary").version == "1.0.0"


def test_cli_alias_set_and_rollback_need_the_gates_or_force(hub, sample_file, cli, snapshot) -> None:
    _two_versions(hub, sample_file)
    before = snapshot(hub)
    r = cli("alias", "set", "distill@1.0.0", "production")
    assert r.exit_code == 12 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1
    r = cli("register", "distill", sample_file(seed=3), "--alias", "production")
    assert r.exit_code == 12, r.stderr
    assert snapshot(hub) == before
    assert cli("alias", "set", "distill@1.0.0", "production", "--force").exit_code == 0
    assert cli("alias", "set", "distill@1.0.1", "production", "--force").exit_code == 0
    assert cli("alias", "rollback", "distill", "production").exit_code == 12
    assert hub.resolve("distill@production").version == "1.0.1"
    assert cli("alias", "rollback", "distill", "production", "--force").exit_code == 0
    assert hub.resolve("distill@production").version == "1.0.0"


def test_rollback_never_targets_a_revoked_version(hub, sample_file, snapshot) -> None:
    _two_versions(hub, sample_file)
    hub.set_alias("distill@1.0.0", "staging")
    hub.set_alias("distill@1.0.1", "staging")
    hub.revoke("distill@1.0.0", reason="leaks")
    before = snapshot(hub)
    with pytest.raises(InvalidInput, match="revoked"):
        hub.rollback("distill", "staging")
    assert snapshot(hub) == before


# -- path() applies the same rules as load() --------------------------------------------

def test_path_of_unsigned_production_is_refused(hub, sample_file, cli) -> None:
    _two_versions(hub, sample_file)
    hub.set_alias("distill@1.0.0", "production", force=True)
    with pytest.raises(SignatureError, match="not signed"):
        hub.path("distill@production")
    r = cli("path", "distill@production")
    assert r.exit_code == 7 and "not signed" in r.stderr
    # The cold fast path must not answer either: it falls through to the full checks.
    from sentenialx.hub._fastpath import fast_path

    assert fast_path(["distill@production", "--hub", str(hub.root)]) is None
    assert fast_path(["distill@1.0.1", "--hub", str(hub.root)]) == str(hub.path("distill@1.0.1"))


def test_path_refuses_a_tampered_file(hub, sample_file, cli) -> None:
    v1, _ = _two_versions(hub, sample_file)
    p = hub.path("distill@1.0.0")
    os.chmod(p, 0o644)
    data = bytearray(p.read_bytes())
    data[0] ^= 1
    p.write_bytes(bytes(data))
    from sentenialx.hub._fastpath import fast_path
    from sentenialx.hub.errors import IntegrityError

    assert fast_path(["distill@1.0.0", "--hub", str(hub.root)]) is None
    with pytest.raises(IntegrityError, match="sha256 mismatch"):
        hub.path("distill@1.0.0")
    assert cli("path", "distill@1.0.0").exit_code == 6


def test_path_refuses_a_file_planted_in_a_folder_version(hub, tmp_path) -> None:
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "adapter.safetensors").write_bytes(b"w" * 64)
    (folder / "config.json").write_text("{}")
    hub.register("lora", folder)
    p = hub.path("lora")
    os.chmod(p, 0o755)
    (p / "modeling_evil.py").write_text("import os\n")
    from sentenialx.hub._fastpath import fast_path
    from sentenialx.hub.errors import IntegrityError

    with pytest.raises(IntegrityError, match="not in the manifest"):
        hub.path("lora")
    assert fast_path(["lora", "--hub", str(hub.root)]) is None


# -- a hostile seed registry.json ----------------------------------------------------------

def _seed(tmp_path: Path, entries: dict) -> Path:
    seed = tmp_path / "seed"
    seed.mkdir(exist_ok=True)
    (seed / "registry.json").write_text(json.dumps(entries))
    return seed / "registry.json"


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink-out"])
def test_import_registry_refuses_paths_outside_the_seed_folder(hub, sample_file, tmp_path, snapshot,
                                                               kind) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"not yours")
    seed = tmp_path / "seed"
    seed.mkdir()
    if kind == "absolute":
        file = str(secret)
    elif kind == "dotdot":
        file = "../secret.bin"
    else:
        (seed / "link.bin").symlink_to(secret)
        file = "link.bin"
    reg = _seed(tmp_path, {"distill": {"file": file, "version": "1.0.0"}})
    hub.register("other", sample_file(seed=5))
    before = snapshot(hub)
    with pytest.raises(InvalidInput, match="absolute|outside the seed folder"):
        hub.import_registry(reg)
    assert snapshot(hub) == before


@pytest.mark.parametrize("target", ["registry.db", "weights", "trust"])
def test_import_registry_in_the_hub_never_touches_what_the_hub_owns(hub, sample_file, snapshot,
                                                                   target) -> None:
    v = hub.register("distill", sample_file(seed=1))
    ts = hub.trust_store()
    hub.save_trust(ts, action="noop", detail={})
    file = {"registry.db": "registry.db", "weights": f"distill/{v.files[0].path}",
            "trust": "trust/policy.json"}[target]
    (hub.root / "registry.json").write_text(json.dumps({"evil": {"file": file,
                                                                 "version": "1.0.0"}}))
    before_db = (hub.root / "registry.db").read_bytes()
    weights = hub.root / "distill" / v.files[0].path
    wstat = weights.stat()
    with pytest.raises(InvalidInput, match="already owns"):
        hub.import_registry(hub.root / "registry.json")
    assert (hub.root / "registry.db").read_bytes() == before_db
    assert weights.stat().st_ino == wstat.st_ino and weights.stat().st_nlink == wstat.st_nlink
    assert [m["model"] for m in hub.models()] == ["distill"]
    hub.write_registry_json()
    assert hub.fsck(deep=True).ok


def test_import_registry_adopts_a_seed_file_in_place_without_moving_it(make_hub, tmp_path) -> None:
    root = tmp_path / "models" / "artifacts"
    (root / "distill").mkdir(parents=True)
    w = root / "distill" / "threat_student_v1.2.0.onnx"
    w.write_bytes(b"seed weights")
    import hashlib

    digest = hashlib.sha256(b"seed weights").hexdigest()
    (root / "registry.json").write_text(json.dumps(
        {"distill": {"file": "distill/threat_student_v1.2.0.onnx", "version": "1.2.0",
                     "hash": digest}}))
    ino = w.stat().st_ino
    hub = make_hub(root)
    (v,) = hub.import_registry(root / "registry.json")
    assert v.ref == "distill@1.2.0" and hub.open("distill@1.2.0") == b"seed weights"
    assert w.stat().st_ino == ino  # the same file, adopted where it lay
    assert hub.fsck(deep=True).ok


# -- dedup and --link ------------------------------------------------------------------

def test_link_dedup_never_ties_a_copy_to_an_outside_file(hub, tmp_path) -> None:
    team_a = tmp_path / "team-a" / "model.onnx"
    team_a.parent.mkdir()
    team_a.write_bytes(b"shared bytes" * 100)
    team_b = tmp_path / "team-b" / "model.onnx"
    team_b.parent.mkdir()
    team_b.write_bytes(b"shared bytes" * 100)
    hub.register("a", team_a, link=True)
    vb = hub.register("b", team_b)  # a plain copy
    # Team A edits its own file (it owns it; --link made it read-only, not immutable).
    os.chmod(team_a, stat.S_IRUSR | stat.S_IWUSR)
    with open(team_a, "r+b") as f:
        f.write(b"EDITED")
    assert hub.open(vb.ref) == b"shared bytes" * 100
    rep = hub.verify(vb.ref, deep=True)
    assert rep.ok, rep.problems


def test_copies_still_deduplicate_with_each_other(hub, tmp_path) -> None:
    a = tmp_path / "a.onnx"
    a.write_bytes(b"same" * 1000)
    va = hub.register("a", a)
    vb = hub.register("b", a)
    pa, pb = hub.path(va.ref), hub.path(vb.ref)
    assert pa.stat().st_ino == pb.stat().st_ino


# -- names that collide with the hub's sidecars ----------------------------------------------

@pytest.mark.parametrize("name", ["model.sha256", "model.sig"])
def test_weights_named_like_a_sidecar_are_refused(hub, tmp_path, snapshot, name) -> None:
    p = tmp_path / name
    p.write_bytes(b"x" * 10)
    before = snapshot(hub)
    with pytest.raises(InvalidName, match="sidecar"):
        hub.register("distill", p)
    assert snapshot(hub) == before


def test_attachment_named_like_a_sidecar_is_refused(hub, sample_file, tmp_path, snapshot) -> None:
    att = tmp_path / "notes.sig"
    att.write_text("x")
    before = snapshot(hub)
    with pytest.raises(InvalidName, match="reserved|sidecar"):
        hub.register("distill", sample_file(), attachments=[("other", att)])
    assert snapshot(hub) == before
