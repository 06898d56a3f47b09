"""Promotion gates: ``sentenialx models promote REF --to production`` moves the alias only
when the version's metrics, signature and provenance meet the hub's policy, names every
gate that failed, and records a ``--force`` as such.

Default gates for ``production``: accuracy >= 0.95, latency_p95_ms <= 50,
false_positive_rate not above the current production's, a signature by a trusted key,
and a recorded training-data digest signed with it (provenance).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sentenialx.hub.errors import GateFailed, NotFound
from sentenialx.hub.hub import Hub
from sentenialx.hub.signing import generate_keypair
from sentenialx.hub.values import VersionInfo

DATA = hashlib.sha256(b"training data v1").hexdigest()
GOOD = {"accuracy": 0.97, "latency_p95_ms": 30.0, "false_positive_rate": 0.02}
ALL_GATES = {"metric:accuracy", "metric:latency_p95_ms", "metric:false_positive_rate",
             "signature", "provenance"}


class Keys:
    def __init__(self, folder: Path, name: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.name, self.priv, self.pub = name, folder / f"{name}.pem", folder / f"{name}.pub"
        self.kid = generate_keypair(self.priv, self.pub)


def ok(r: Any) -> Any:
    assert r.exit_code == 0, (r.stdout, r.stderr, r.exception)
    return r


@pytest.fixture(autouse=True)
def no_user_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))


@pytest.fixture
def signer(tmp_path: Path, cli: Callable[..., Any]) -> Keys:
    """A key the hub trusts (through ``sentenialx keys trust``)."""
    k = Keys(tmp_path / "keys", "release")
    ok(cli("keys", "trust", k.pub, "--name", k.name, models=False))
    return k


@pytest.fixture
def stranger(tmp_path: Path) -> Keys:
    return Keys(tmp_path / "keys", "stranger")


@pytest.fixture
def make(hub: Hub, sample_file: Callable[..., Path], signer: Keys) -> Callable[..., VersionInfo]:
    """``make(version, sign=signer, data_digest=DATA, **metric overrides)``: a candidate version."""
    seeds = iter(range(100, 200))

    def candidate(version: str, *, sign: Keys | None | str = "signer", data_digest: str | None = DATA,
                  **metrics: float | None) -> VersionInfo:
        m = {k: v for k, v in (GOOD | metrics).items() if v is not None}
        info = hub.register("distill", sample_file(3000, seed=next(seeds), name="student.onnx"),
                            version=version, metadata={"metrics": m}, data_digest=data_digest)
        key = signer if sign == "signer" else sign
        if isinstance(key, Keys):
            hub.sign(info.ref, key.priv)
        return info

    return candidate


def production_version(hub: Hub) -> str | None:
    try:
        return hub.resolve("distill@production").version
    except NotFound:
        return None


def tool_sign(model: Path, keys: Keys, signature: Path) -> None:
    """Sign with the real ``model_signing`` CLI: a good .sig, but no signed provenance."""
    exe = Path(sys.executable).with_name("model_signing")
    found = str(exe) if exe.exists() else shutil.which("model_signing")
    assert found, "the model_signing CLI is missing; install the dev extra"
    proc = subprocess.run([found, "sign", "key", str(model), "--private_key", str(keys.priv),
                           "--signature", str(signature)], capture_output=True, text=True,
                          timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr


# -- passing -------------------------------------------------------------------------------------
def test_promotion_passes_when_every_gate_passes(hub: Hub, make: Callable[..., VersionInfo],
                                                 cli: Callable[..., Any], signer: Keys) -> None:
    make("1.0.0")
    r = ok(cli("promote", "distill@1.0.0", "--to", "production"))
    assert production_version(hub) == "1.0.0"
    for gate in ALL_GATES:
        assert f"PASS  {gate}" in r.stdout
    assert "FAIL" not in r.stdout and "FORCED" not in r.stdout
    assert "production -> distill@1.0.0" in r.stdout
    ev = hub.events()[-1]
    assert (ev.kind, ev.model, ev.version) == ("promote", "distill", "1.0.0")
    assert ev.payload["alias"] == "production" and ev.payload["previous"] is None
    assert ev.payload["force"] is False
    assert {g["gate"] for g in ev.payload["gates"]} == ALL_GATES
    assert all(g["ok"] for g in ev.payload["gates"])
    # Production is signed by a trusted key, so the enforced read works.
    assert hub.open_bytes("distill@production")

    # A better candidate (fpr equal to production's is "not above") replaces it.
    make("1.1.0", accuracy=0.99, false_positive_rate=0.02)
    j = ok(cli("promote", "distill@1.1.0", "--json")).json()
    assert j["to"] == "production" and j["forced"] is False
    assert all(g["ok"] for g in j["gates"])
    assert production_version(hub) == "1.1.0"
    assert hub.events()[-1].payload["previous"] == "1.0.0"


def test_register_sign_with_then_promote_through_the_cli(hub: Hub, cli: Callable[..., Any],
                                                         signer: Keys,
                                                         sample_file: Callable[..., Path]) -> None:
    r = ok(cli("register", "distill", sample_file(2000, seed=7), "--sign-with", signer.priv,
               "--data-digest", DATA, "--meta", "metrics.accuracy=0.96",
               "--meta", "metrics.latency_p95_ms=12", "--meta", "metrics.false_positive_rate=0.01"))
    assert "distill@1.0.0" in r.stdout
    assert [e.kind for e in hub.events()][-2:] == ["register", "sign"]
    ok(cli("promote", "distill@1.0.0"))
    assert production_version(hub) == "1.0.0"


# -- each gate, failing -------------------------------------------------------------------------
def _current_production(make: Callable[..., VersionInfo], hub: Hub) -> None:
    make("1.0.0", false_positive_rate=0.03)
    hub.promote("distill@1.0.0", to="production")


SCENARIOS: dict[str, tuple[dict[str, Any], set[str], list[str]]] = {
    # name: (candidate overrides, failed gates, words the message must contain)
    "accuracy-below-threshold": ({"accuracy": 0.9}, {"metric:accuracy"},
                                 ["accuracy = 0.9", ">= 0.95"]),
    "accuracy-missing": ({"accuracy": None}, {"metric:accuracy"}, ["accuracy = None"]),
    "latency-above-threshold": ({"latency_p95_ms": 80.0}, {"metric:latency_p95_ms"},
                                ["latency_p95_ms = 80.0", "<= 50"]),
    "fpr-above-current-production": ({"false_positive_rate": 0.05},
                                     {"metric:false_positive_rate"},
                                     ["false_positive_rate = 0.05", "current production 1.0.0: 0.03"]),
    "unsigned": ({"sign": None}, {"signature", "provenance"}, ["is not signed"]),
    "untrusted-signer": ({"sign": "stranger"}, {"signature", "provenance"},
                         ["not among the trusted keys", "not signed by a trusted key"]),
    "no-data-digest": ({"data_digest": None}, {"provenance"},
                       ["no training-data digest recorded"]),
}


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_each_failing_gate_is_named(scenario: str, hub: Hub, make: Callable[..., VersionInfo],
                                    cli: Callable[..., Any], stranger: Keys, snapshot: Any) -> None:
    overrides, failed, words = SCENARIOS[scenario]
    _current_production(make, hub)
    if overrides.get("sign") == "stranger":
        overrides = dict(overrides, sign=stranger)
    make("2.0.0", **overrides)
    before = snapshot(hub)

    r = cli("promote", "distill@2.0.0", "--to", "production")
    assert r.exit_code == 12, (r.stdout, r.stderr)
    assert r.stderr.startswith("error: promotion of distill@2.0.0 to production refused: ")
    assert r.stderr.count("\n") == 1  # one line, no traceback
    for gate in failed:
        assert f"{gate}: " in r.stderr
    for gate in ALL_GATES - failed:
        assert f"{gate}: " not in r.stderr
    for w in words:
        assert w in r.stderr
    assert production_version(hub) == "1.0.0"
    assert snapshot(hub) == before  # a refused promotion changes nothing

    with pytest.raises(GateFailed) as exc:
        hub.promote("distill@2.0.0", to="production")
    assert set(exc.value.failed) == failed
    results = {g.gate: g.ok for g in hub.check_gates("distill@2.0.0", to="production")}
    assert results == {g: g not in failed for g in ALL_GATES}


def test_recorded_data_digest_without_provenance_signature(hub: Hub,
                                                           make: Callable[..., VersionInfo],
                                                           cli: Callable[..., Any],
                                                           signer: Keys) -> None:
    """Signed by the OpenSSF tool with a trusted key: the weights are signed, the data
    digest is recorded, but nobody signed the provenance statement."""
    info = make("1.0.0", sign=None)
    sig = hub.root / "distill" / f"{info.stem}.sig"
    tool_sign(hub.path(info.ref), signer, sig)
    hub.adopt_signature(info.ref, sig.read_bytes())
    r = cli("promote", info.ref)
    assert r.exit_code == 12
    assert "provenance: data digest" in r.stderr and "recorded but not signed" in r.stderr
    assert "signature: " not in r.stderr
    gates = {g.gate: g for g in hub.check_gates(info.ref, to="production")}
    assert gates["signature"].ok and signer.kid[:12] in gates["signature"].detail
    assert not gates["provenance"].ok
    # Signing through the hub adds the provenance signature; then it passes.
    hub.sign(info.ref, signer.priv)
    ok(cli("promote", info.ref))


def test_provenance_signature_must_match_the_metrics_and_a_trusted_key(
        hub: Hub, make: Callable[..., VersionInfo], cli: Callable[..., Any], signer: Keys) -> None:
    info = make("1.0.0")
    assert {g.gate: g.ok for g in hub.check_gates(info.ref, to="production")}["provenance"]
    ok(cli("keys", "revoke", signer.name, models=False))
    gates = {g.gate: g.ok for g in hub.check_gates(info.ref, to="production")}
    assert not gates["signature"] and not gates["provenance"]


def test_every_failure_is_named_at_once(hub: Hub, make: Callable[..., VersionInfo],
                                        cli: Callable[..., Any]) -> None:
    _current_production(make, hub)
    make("2.0.0", sign=None, data_digest=None, accuracy=0.5, latency_p95_ms=500.0,
         false_positive_rate=0.5)
    r = cli("promote", "distill@2.0.0")
    assert r.exit_code == 12
    for gate in ALL_GATES:
        assert f"{gate}: " in r.stderr
    with pytest.raises(GateFailed) as exc:
        hub.promote("distill@2.0.0")
    assert set(exc.value.failed) == ALL_GATES


def test_force_moves_anyway_and_is_recorded(hub: Hub, make: Callable[..., VersionInfo],
                                            cli: Callable[..., Any]) -> None:
    _current_production(make, hub)
    make("2.0.0", sign=None, accuracy=0.9)
    r = ok(cli("promote", "distill@2.0.0", "--to", "production", "--force"))
    assert "(FORCED)" in r.stdout
    assert "FAIL  metric:accuracy" in r.stdout and "FAIL  signature" in r.stdout
    assert production_version(hub) == "2.0.0"
    ev = hub.events()[-1]
    assert (ev.kind, ev.version, ev.actor) == ("promote", "2.0.0", "tester@test")
    assert ev.payload["force"] is True and ev.payload["previous"] == "1.0.0"
    failed = {g["gate"] for g in ev.payload["gates"] if not g["ok"]}
    assert failed == {"metric:accuracy", "signature", "provenance"}
    assert any("accuracy = 0.9" in g["detail"] for g in ev.payload["gates"])
    # The forced production is still unsigned: enforced reads refuse it.
    from sentenialx.hub.errors import SignatureError

    with pytest.raises(SignatureError):
        hub.open_bytes("distill@production")
    # And the history shows it.
    log = ok(cli("log", "--json")).json()
    assert log[-1]["kind"] == "promote" and log[-1]["payload"]["force"] is True
    ok(cli("log", "--verify"))


def test_expect_guards_a_concurrent_promotion(hub: Hub, make: Callable[..., VersionInfo],
                                              cli: Callable[..., Any]) -> None:
    _current_production(make, hub)
    make("2.0.0")
    r = cli("promote", "distill@2.0.0", "--expect", "0.9.0")
    assert r.exit_code == 9  # Conflict
    assert production_version(hub) == "1.0.0"
    ok(cli("promote", "distill@2.0.0", "--expect", "1.0.0"))
    assert production_version(hub) == "2.0.0"


# -- custom gates -------------------------------------------------------------------------------
def test_custom_gates_through_keys_gate(hub: Hub, make: Callable[..., VersionInfo],
                                        cli: Callable[..., Any]) -> None:
    ok(cli("keys", "gate", "production", "--min", "f1=0.9", "--max", "latency_p95_ms=100",
           "--no-provenance", models=False))
    ev = hub.events()[-1]
    assert ev.kind == "trust" and ev.payload["action"] == "gates"
    gates = ok(cli("keys", "list", "--json", models=False)).json()["gates"]["production"]
    assert gates == {"min": {"f1": 0.9}, "max": {"latency_p95_ms": 100.0},
                     "not_above_current": [], "signature": True, "provenance": False}

    # The old thresholds are gone: low accuracy, slow and no data digest are fine now.
    make("1.0.0", f1=0.8, accuracy=0.5, latency_p95_ms=80.0, data_digest=None)
    r = cli("promote", "distill@1.0.0")
    assert r.exit_code == 12
    assert "metric:f1: f1 = 0.8 (needs >= 0.9)" in r.stderr
    for gone in ("accuracy", "metric:latency", "provenance", "signature"):
        assert gone not in r.stderr
    make("1.1.0", f1=0.93, accuracy=0.5, latency_p95_ms=80.0, data_digest=None)
    r = ok(cli("promote", "distill@1.1.0"))
    assert {line.split()[1] for line in r.stdout.splitlines() if line.startswith("PASS")} == {
        "metric:f1", "metric:latency_p95_ms", "signature"}

    # Gates for another alias; an alias without gates needs none.
    ok(cli("keys", "gate", "staging", "--min", "accuracy=0.6", "--no-signature",
           "--no-provenance", models=False))
    make("1.2.0", sign=None, accuracy=0.55)
    assert cli("promote", "distill@1.2.0", "--to", "staging").exit_code == 12
    make("1.3.0", sign=None, accuracy=0.65)
    ok(cli("promote", "distill@1.3.0", "--to", "staging"))
    assert hub.resolve("distill@staging").version == "1.3.0"
    assert hub.check_gates("distill@1.2.0", to="canary") == []
    ok(cli("promote", "distill@1.2.0", "--to", "canary"))

    r = cli("keys", "gate", "production", "--min", "f1", models=False)
    assert r.exit_code == 5 and "METRIC=NUMBER" in r.stderr


def test_not_above_current_without_a_current_version(hub: Hub, make: Callable[..., VersionInfo],
                                                     cli: Callable[..., Any]) -> None:
    """The first production has nothing to compare with, but the metric must be there."""
    make("1.0.0", false_positive_rate=None)
    r = cli("promote", "distill@1.0.0")
    assert r.exit_code == 12 and "metric:false_positive_rate" in r.stderr
    assert "no current production" in r.stderr
    make("1.1.0", false_positive_rate=0.3)
    ok(cli("promote", "distill@1.1.0"))
